"""luigid's Prometheus metrics (LUIGID_METRICS=prometheus in scripts/luigid.sh), scraped over HTTP from a real
luigid on a free loopback port after a smoke FullReport whose evaluations are killed once, then resumed.

The counts by status and family must equal what luigid's own JSON API and its task-history SQLite say.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import test_scheduler
from tests.test_scheduler import SCRIPT, SMOKE, _api, _luigi, _worker_env

luigid = test_scheduler.luigid  # the fixture: a real luigid started by scripts/luigid.sh on a free loopback port

RUNS = 5  # smoke.yaml: five optimizers, one seed


@pytest.fixture
def collector() -> str:
    """LUIGID_METRICS for this test's luigid; a test parametrizes it to change it."""
    return "prometheus"


@pytest.fixture(autouse=True)
def _luigid_metrics(monkeypatch, collector):
    """Autouse fixtures run first, so the `luigid` fixture starts luigid with this setting."""
    monkeypatch.setenv("LUIGID_METRICS", collector)


def _scrape(port: int) -> tuple[str, dict[tuple[str, str], float]]:
    """(Content-Type, {(sample name, task family): value}) of luigid's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        content_type, text = response.headers["Content-Type"], response.read().decode()
    samples = {
        (sample.name, sample.labels["family"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("luigi_task_")
    }
    return content_type, samples


def _by_status(samples: dict, status: str) -> dict[str, float]:
    return {family: value for (name, family), value in samples.items() if name == f"luigi_task_{status}_total"}


def _run(args: list[str], env: dict) -> tuple[int, str]:
    worker = _luigi(args, env)
    output, _ = worker.communicate(timeout=600)
    return worker.returncode, output


def test_metrics_count_tasks_by_status_after_a_killed_and_resumed_full_report(tmp_path, luigid, synthetic_raw):
    env = _worker_env(tmp_path, luigid, synthetic_raw)
    args = ["FullReport", "--config", str(SMOKE), "--date", "2026-03-01", "--workers", "2"]
    # First pass: every evaluation's process is killed once it has scored (a real SIGKILL), and this worker
    # does not wait for retries, so it ends with the five evaluations FAILED.
    cfg = tmp_path / "worker.cfg"
    impatient = tmp_path / "impatient.cfg"
    impatient.write_text(cfg.read_text().replace("keep_alive = true", "keep_alive = false"))
    assert "keep_alive = false" in impatient.read_text()
    code, output = _run(args, {**env, "LUIGI_CONFIG_PATH": str(impatient), "FMNIST_CRASH_AT": "evaluate.scored"})
    assert code == 30, output[-3000:]
    content_type, first = _scrape(luigid["port"])
    assert content_type.startswith("text/plain; version=")
    assert _by_status(first, "failed") == {"EvaluateRun": RUNS}
    assert _by_status(first, "done")["TrainRun"] == RUNS and "EvaluateRun" not in _by_status(first, "done")

    code, output = _run(args, env)  # the resume, on the shipped luigid.cfg
    assert code == 0, output[-3000:]
    _, final = _scrape(luigid["port"])

    done = _api(luigid["port"], "task_list", status="DONE", upstream_status="", search="")
    assert _by_status(final, "done") == Counter(task["name"] for task in done.values())
    assert _by_status(final, "done") == {
        "FetchFile": 4, "DecodeData": 1, "PrepareData": 1, "TrainRun": RUNS, "EvaluateRun": RUNS,
        "ExperimentReport": 1, "FullReport": 1,
    }  # fmt: skip
    assert _by_status(final, "failed") == {"EvaluateRun": RUNS}
    assert _by_status(final, "started")["EvaluateRun"] == 2 * RUNS  # killed once, then done
    assert _by_status(final, "started")["TrainRun"] == RUNS  # trained once: the resume reused every run
    assert _by_status(final, "disabled") == {}
    with sqlite3.connect(luigid["scheduler"] / "task-history.sqlite") as db:
        history = Counter(
            dict(db.execute("select event_name, count(*) from task_events group by event_name").fetchall())
        )
    assert history["FAILED"] == sum(_by_status(final, "failed").values())
    assert all(final[("luigi_task_execution_time_seconds", family)] > 0 for family in ("TrainRun", "EvaluateRun"))


@pytest.mark.parametrize("collector", ["none"])
def test_metrics_are_opt_in(luigid):
    with urllib.request.urlopen(f"http://127.0.0.1:{luigid['port']}/metrics", timeout=10) as response:
        assert response.status == 200 and response.read() == b""


@pytest.mark.parametrize(
    ("collector", "interpreter_flags", "message"),
    [
        ("statsd", "", "LUIGID_METRICS=statsd: expected none or prometheus"),
        # -S: no site-packages, so no prometheus_client, as in a venv installed without the extra.
        ("prometheus", " -S", "LUIGID_METRICS=prometheus needs prometheus-client beside luigid"),
    ],
)
def test_a_setting_luigid_cannot_honour_stops_the_start_with_a_message(tmp_path, interpreter_flags, message):
    fake = tmp_path / "luigid"  # never started: the script checks first
    fake.write_text(f"#!{sys.executable}{interpreter_flags}\nraise SystemExit('started')\n")
    fake.chmod(0o755)
    env = dict(os.environ, ARTIFACTS_ROOT=str(tmp_path / "a"), LUIGID_STATE_DIR=str(tmp_path / "s"), LUIGID=str(fake))
    started = subprocess.run([str(SCRIPT), "start", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 1 and message in started.stderr, started.stdout + started.stderr
    assert "started" not in started.stdout + started.stderr
