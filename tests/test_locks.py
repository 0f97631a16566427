"""Per-target locks: real processes contend for real flock(2) locks, and two real `luigi` commands that
differ only in spelling build the data stage at the same moment without treading on each other."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tasks.core.layout import Layout
from tasks.core.locks import LockTimeout, lock_path, target_lock
from tasks.core.storage import QUARANTINE_DIR, sha256_file
from tasks.data.dataset import RAW_FILE_NAMES
from tasks.data.fetch import verify_raw_file
from tests.conftest import REPO_ROOT
from tests.httpserver import serve
from tests.test_scheduler import _luigi as luigi_command

server = pytest.fixture(serve)

HANG_LIMIT = 120  # only bounds a hang: no assertion depends on how long anything takes

# Takes the lock, says so, and holds it until told on stdin (or killed); it marks the release before it.
HOLDER = """
import sys
from pathlib import Path
from tasks.core.locks import target_lock
with target_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text("released")
"""


def hold_lock(target: Path, released: Path | None = None) -> subprocess.Popen:
    """Another process that takes `target`'s lock and keeps it until `release(holder)`; `released` is
    written just before it lets go."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target), *([str(released)] if released else [])],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen) -> None:
    holder.communicate("release\n", timeout=HANG_LIMIT)
    assert holder.returncode == 0


class SaysWhenWaiting(io.StringIO):
    """A stderr that sets `waiting` when a lock waiter announces its wait."""

    def __init__(self):
        super().__init__()
        self.waiting = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "waiting for" in self.getvalue():
            self.waiting.set()
        return written


def test_a_waiter_gives_up_naming_the_holder(tmp_path):
    target = tmp_path / "data" / "manifest.json"
    holder = hold_lock(target)
    try:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as timed_out:
            with target_lock(target, timeout=0.3):
                pytest.fail("the lock was granted while another process held it")
        assert time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()
    message = str(timed_out.value)
    assert str(target) in message and str(lock_path(target)) in message
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message


def test_a_waiter_gets_the_lock_when_the_holder_finishes(tmp_path, monkeypatch):
    # Synchronised by events, not by sleeping: the waiter's own "waiting for" line says it is blocked, the
    # holder lets go only when told, and marks that it let go before the lock is free.
    target, released = tmp_path / "split.arrow", tmp_path / "holder-released"
    holder = hold_lock(target, released)
    stderr = SaysWhenWaiting()
    monkeypatch.setattr(sys, "stderr", stderr)
    granted: list[bool] = []

    def wait_for_the_lock():
        with target_lock(target, timeout=HANG_LIMIT):
            granted.append(released.exists())
        stderr.waiting.set()  # a lock granted at once must fail the test now, not after HANG_LIMIT

    waiter = threading.Thread(target=wait_for_the_lock)
    waiter.start()
    try:
        assert stderr.waiting.wait(HANG_LIMIT), "the waiter neither waited nor got the lock"
        assert granted == [] and waiter.is_alive()  # the holder holds it until told: not granted meanwhile
    finally:
        release(holder)
        waiter.join(HANG_LIMIT)
    assert granted == [True]  # granted, and only after the holder had let go
    # The wait is said on the console, naming who holds the target.
    assert (
        f"waiting for {target}: another process is building it (held by pid {holder.pid} on host" in stderr.getvalue()
    )


def test_a_killed_holder_frees_the_lock(tmp_path):
    target = tmp_path / "x.gz"
    holder = hold_lock(target)
    holder.kill()
    holder.wait()
    with target_lock(target, timeout=1):
        assert "pid" in lock_path(target).read_text()  # we wrote our own name
    assert lock_path(target).read_text() == ""


def test_a_symlinked_lock_file_is_moved_aside_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "raw"
    folder.mkdir()
    lock_path(folder / "x.gz").symlink_to(outside)

    with target_lock(folder / "x.gz", timeout=1):
        pass

    assert outside.read_text() == "precious"
    assert not lock_path(folder / "x.gz").is_symlink()
    [moved] = [p for p in (folder / QUARANTINE_DIR).iterdir() if not p.name.endswith(".reason.txt")]
    assert moved.is_symlink()


def test_two_differently_spelled_commands_build_the_data_stage_together(tmp_path, server, synthetic_raw):
    """`PrepareData` and `PrepareData --split-seed 0` pass luigi's per-command lock; both succeed, once."""
    raw, checksums = synthetic_raw
    for name in RAW_FILE_NAMES:  # slow enough that both commands are inside the same download at once
        server.add(f"mirror/{name}", (raw / name).read_bytes(), delay=0.4)
    root = tmp_path / "artifacts"
    cfg = tmp_path / "site.cfg"
    cfg.write_text(
        f"[pipeline]\nartifacts_root = {root}\nsources = {json.dumps([server.url('mirror')])}\n"
        f"checksums_file = {checksums}\nfetch_retries = 0\n"
    )
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg), TF_CPP_MIN_LOG_LEVEL="2")
    commands = [
        ["PrepareData", "--validation-per-class", "5"],
        ["PrepareData", "--validation-per-class", "5", "--split-seed", "0"],
    ]
    processes = [luigi_command(args, env) for args in commands]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [out[-3000:] for out in outputs]

    paths = Layout(root)
    for name in RAW_FILE_NAMES:
        verify_raw_file(paths.raw_file(name), json.loads(paths.raw_record(name).read_text()))
        assert paths.raw_file(name).read_bytes() == (raw / name).read_bytes()
    manifest = json.loads(paths.manifest.read_text())
    for entry in manifest["arrays"].values():
        assert sha256_file(root / entry["path"]) == entry["sha256"], entry
    assert paths.split_arrow(5, 0).is_file()
    assert not (paths.raw_dir / QUARANTINE_DIR).exists(), list((paths.raw_dir / QUARANTINE_DIR).iterdir())
    assert not list(paths.raw_dir.glob("*.part"))
    # each file was downloaded once: the second command waited for the lock, then found it done
    assert sorted(request.path for request in server.requests) == sorted(f"/mirror/{name}" for name in RAW_FILE_NAMES)


def test_a_report_and_a_training_command_at_once_train_every_run_once(tmp_path, synthetic_raw):
    """`FullReport` and `TrainExperiment` of one config, started together on an empty root, as a cron
    job overlapping a manual run: both succeed and no run trains twice (TrainRun holds its run's lock)."""
    raw, checksums = synthetic_raw
    smoke = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    smoke["training"]["epochs"] = 1
    smoke["optimizers"] = [entry for entry in smoke["optimizers"] if entry["name"] in ("sgd", "adam")]
    config = tmp_path / "both.yaml"
    config.write_text(yaml.safe_dump(smoke))
    root = tmp_path / "artifacts"
    cfg = tmp_path / "site.cfg"
    cfg.write_text(
        f"[pipeline]\nartifacts_root = {root}\nsources = {json.dumps([str(raw)])}\nchecksums_file = {checksums}\n"
    )
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(cfg))
    processes = [luigi_command([task, "--config", str(config)], env) for task in ("FullReport", "TrainExperiment")]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [out[-3000:] for out in outputs]
    records = [json.loads(path.read_text()) for path in sorted(root.glob("runs/*/seed-*/run.json"))]
    assert len(records) == 2 and [record["attempts"] for record in records] == [1, 1]
    assert len(list(root.glob("reports/smoke/*/report.json"))) == 1
