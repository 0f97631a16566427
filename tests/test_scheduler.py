"""A real luigid on a free loopback port: FullReport with 2 workers, progress in the UI's API, task
history in SQLite, and two worker processes that share the runs without running any twice."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import NEEDS_CHROMIUM, REPO_ROOT
from tests.visualiser import check_the_visualiser_shows_short_distinct_runs

SMOKE = REPO_ROOT / "configs" / "smoke.yaml"
LUIGID = shutil.which("luigid", path=str(Path(sys.executable).parent)) or shutil.which("luigid")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_luigid(tmp_path: Path, script: Path = REPO_ROOT / "scripts" / "luigid.sh", **settings: str):
    """`script start` on a free port, in a temp artifacts root, with `settings` in its environment; stopped
    by its pidfile afterwards. The dict's "stop" stops it earlier (luigid sends its batched mails then)."""
    assert LUIGID, "luigid is not installed beside this Python"
    port = _free_port()
    root = tmp_path / "artifacts"
    state = tmp_path / "luigid-state"
    env = dict(os.environ, ARTIFACTS_ROOT=str(root), LUIGID=LUIGID, LUIGID_STATE_DIR=str(state), **settings)
    started = subprocess.run([str(script), "start", str(port)], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stdout + started.stderr

    def stop() -> None:
        stopped = subprocess.run([str(script), "stop"], env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not (state / "luigid.pid").exists()

    try:
        yield {"port": port, "root": root, "scheduler": root / "scheduler", "state": state, "env": env, "stop": stop}
    finally:
        stop()


@pytest.fixture
def luigid(tmp_path: Path):
    """luigid started with scripts/luigid.sh in a temp artifacts root, two training slots."""
    with running_luigid(tmp_path, TRAINING_SLOTS="2") as started:
        yield started


def _worker_env(tmp_path: Path, luigid: dict, synthetic_raw) -> dict:
    raw, checksums = synthetic_raw
    cfg = tmp_path / "worker.cfg"
    # The shipped luigid.cfg, on this test's port, plus a [pipeline] section for the temp artifacts root.
    shipped = (
        (REPO_ROOT / "luigid.cfg").read_text().replace("scheduler_port = 8082", f"scheduler_port = {luigid['port']}")
    )
    assert f"scheduler_port = {luigid['port']}" in shipped
    cfg.write_text(
        shipped + f"\n[pipeline]\nartifacts_root = {luigid['root']}\nsources = {json.dumps([str(raw)])}\n"
        f"checksums_file = {checksums}\nintra_op_threads = 1\n"
    )
    return dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), TF_CPP_MIN_LOG_LEVEL="2")


def _api(port: int, method: str, **data) -> dict:
    query = urllib.parse.urlencode({"data": json.dumps(data)})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{method}?{query}", timeout=10) as response:
        return json.load(response)["response"]


def _luigi(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "luigi", "--module", "pipeline", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _grid_config(tmp_path: Path) -> Path:
    """smoke.yaml with two learning rates of one optimizer (their rows must read apart) and adam: 3 runs."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["optimizers"] = [{"name": "sgd", "learning_rate": [0.03, 0.1]}, {"name": "adam", "learning_rate": 0.001}]
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_full_report_with_two_workers_on_a_real_luigid(tmp_path, luigid, synthetic_raw, chromium):
    env = _worker_env(tmp_path, luigid, synthetic_raw)
    config = _grid_config(tmp_path)
    worker = _luigi(["FullReport", "--config", str(config), "--date", "2026-02-01", "--workers", "2"], env)
    output, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, output[-4000:]

    done = _api(luigid["port"], "task_list", status="DONE", upstream_status="", search="")
    families = sorted(task["name"] for task in done.values())
    assert families.count("TrainRun") == 3 and families.count("EvaluateRun") == 3
    assert {"FetchFile", "DecodeData", "PrepareData", "ExperimentReport", "FullReport"} <= set(families)
    for status in ("PENDING", "RUNNING", "FAILED"):
        assert _api(luigid["port"], "task_list", status=status, upstream_status="", search="") == {}, status
    for task in done.values():
        if task["name"] == "TrainRun":
            assert task["progress_percentage"] == 100
            assert task["status_message"].startswith("epoch 2/2")
            assert task["tracking_url"].startswith("file://")

    with sqlite3.connect(luigid["scheduler"] / "task-history.sqlite") as db:
        (rows,) = db.execute("select count(*) from tasks").fetchone()
        (events,) = db.execute("select count(*) from task_events where event_name = 'DONE'").fetchone()
    assert rows >= 12 and events >= 12
    # The worker imported TensorFlow once, before forking: every run's process inherited it.
    records = [json.loads(path.read_text()) for path in Path(luigid["root"]).glob("runs/**/run.json")]
    assert len(records) == 3 and all(record["tensorflow_inherited"] is True for record in records)
    check_the_visualiser_shows_short_distinct_runs(chromium, luigid["port"], tmp_path)


def test_two_worker_processes_share_the_runs_without_running_any_twice(tmp_path, luigid, synthetic_raw):
    env = _worker_env(tmp_path, luigid, synthetic_raw)
    config = tmp_path / "shared.yaml"
    raw = yaml.safe_load(SMOKE.read_text())
    raw["seeds"] = [0, 1]
    raw["optimizers"] = raw["optimizers"][:2]  # 4 runs: enough for two workers to share
    config.write_text(yaml.safe_dump(raw))
    workers = [_luigi(["FullReport", "--config", str(config), "--date", "2026-02-02"], env) for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    for index, out in enumerate(outputs):
        (tmp_path / f"worker-{index}.log").write_text(out)
    assert all(worker.returncode == 0 for worker in workers), [out[-3000:] for out in outputs]

    run_files = sorted((luigid["root"] / "runs").glob("*/seed-*/run.json"))
    assert len(run_files) == 4
    assert [json.loads(path.read_text())["attempts"] for path in run_files] == [1] * 4
    with sqlite3.connect(luigid["scheduler"] / "task-history.sqlite") as db:
        started = db.execute(
            "select t.task_id, count(*) from task_events e join tasks t on e.task_id = t.id "
            "where t.name = 'TrainRun' and e.event_name = 'RUNNING' group by t.task_id"
        ).fetchall()
    assert len(started) == 4 and all(count == 1 for _, count in started), started
    # Each worker either ran tasks or found them done by the other; neither failed or waited forever.
    assert all("Luigi Execution Summary" in out for out in outputs)


SCRIPT = REPO_ROOT / "scripts" / "luigid.sh"


def _script(command: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=60)


def test_luigid_keeps_its_pickled_state_private_and_out_of_the_artifacts_root(tmp_path):
    assert LUIGID, "luigid is not installed beside this Python"
    root, state = tmp_path / "artifacts", tmp_path / "private" / "luigid"
    env = dict(os.environ, ARTIFACTS_ROOT=str(root), LUIGID=LUIGID, LUIGID_STATE_DIR=str(state))
    old_log = root / "scheduler" / "logs" / "luigi-server.log"  # left world-writable by an older start
    old_log.parent.mkdir(parents=True)
    old_log.write_text("an older start's log\n")
    old_log.chmod(0o666)
    started = subprocess.run(
        [str(SCRIPT), "start", str(_free_port())], env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stdout + started.stderr
    stopped = _script("stop", env)  # luigid pickles its state when it stops
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr

    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "state.pickle").stat().st_mode) == 0o600
    assert not list(root.rglob("*.pickle")), "a pickle in the (possibly shared) artifacts root"
    assert (root / "scheduler" / "task-history.sqlite").exists()  # the history stays with the artifacts
    # The daemon runs under umask 0: nothing it leaves in the artifacts root may be writable by others.
    written = [path for path in (root / "scheduler").rglob("*") if path.is_file()]
    assert {path.name for path in written} >= {"task-history.sqlite", "luigi-server.log"}
    assert [path for path in written if stat.S_IMODE(path.stat().st_mode) & 0o022] == []


def test_stop_never_signals_a_process_that_merely_reuses_a_stale_pid(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    env = dict(os.environ, ARTIFACTS_ROOT=str(tmp_path / "artifacts"), LUIGID_STATE_DIR=str(state))
    bystander = subprocess.Popen(["sleep", "30"])  # an unrelated process that got luigid's old pid
    try:
        (state / "luigid.pid").write_text(f"{bystander.pid}\n")

        stopped = _script("stop", env)

        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert bystander.poll() is None, "stop killed an unrelated process"
        assert (
            f"removing stale pidfile {state / 'luigid.pid'}: pid {bystander.pid} is now another process"
            in stopped.stdout
        )
        assert not (state / "luigid.pid").exists()
        (state / "luigid.pid").write_text(f"{bystander.pid}\n")
        status = _script("status", env)
        assert status.returncode == 3 and "luigid not running" in status.stdout
    finally:
        bystander.kill()
        bystander.wait()
