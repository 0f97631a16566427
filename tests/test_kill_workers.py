"""What a kill costs with `--workers N`: at most N runs lose their partial epoch; nothing else is redone.

The real CLI runs FullReport with two workers on three runs. Each worker process is held at a failpoint in
the middle of its run's second epoch (FMNIST_HOLD_AT: it writes a `.held` file and waits), so both workers
are mid-epoch after their first checkpoint at the same moment; the test waits for both files, then
SIGKILLs the whole command (every process in its group), as a power cut would. The rerun must resume each
held run from its epoch-1 checkpoint and run only the remaining steps, start the third run from scratch
(it never began), and end with the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tasks.core import faults
from tests.clirun import SyntheticSource
from tests.conftest import REPO_ROOT

WORKERS, EPOCHS, DATE = 2, 3, "2026-01-07"
OPTIMIZERS = ("sgd", "momentum", "adam")


@pytest.fixture(scope="module")
def setting(tmp_path_factory) -> tuple[SyntheticSource, Path]:
    base = tmp_path_factory.mktemp("kill-workers")
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["experiment"] = "kill-workers"
    raw["training"]["epochs"] = EPOCHS
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] in OPTIMIZERS]
    config = base / "kill-workers.yaml"
    config.write_text(yaml.safe_dump(raw))
    return SyntheticSource.write(base), config


def start(setting, root: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    source, config = setting
    return source.start(root, ["FullReport", "--config", str(config), "--date", DATE], env_extra, workers=WORKERS)


def finish(setting, root: Path) -> None:
    process, log = start(setting, root, {})
    assert process.wait(timeout=600) == 0, log.read_text(errors="replace")[-4000:]


def records(root: Path) -> dict[str, dict]:
    return {path.parent.parent.name.split("-")[1]: json.loads(path.read_text()) for path in root.rglob("run.json")}


def checkpointed_epochs(root: Path) -> dict[str, int]:
    """Per optimizer whose run folder exists: the epoch its latest.json names (0 without one)."""
    found = {}
    for run_dir in root.glob("runs/*/seed-*"):
        latest = run_dir / "checkpoints" / "latest.json"
        found[run_dir.parent.name.split("-")[1]] = json.loads(latest.read_text())["epoch"] if latest.is_file() else 0
    return found


def test_a_kill_with_n_workers_costs_at_most_n_partial_epochs(setting, tmp_path):
    reference = tmp_path / "reference"
    finish(setting, reference)
    expected = records(reference)
    assert sorted(expected) == sorted(OPTIMIZERS)

    held = tmp_path / "held"
    held.mkdir()
    root = tmp_path / "killed"
    # One chunk per epoch here (fewer steps than CHUNK_STEPS): the second hit is epoch 2's steps, run after
    # epoch 1's checkpoint and before epoch 2's.
    process, log = start(setting, root, {faults.HOLD_VAR: "train.mid-epoch:2", faults.HOLD_DIR_VAR: str(held)})
    deadline = time.monotonic() + 300
    while len(list(held.glob("*.held"))) < WORKERS:
        assert process.poll() is None, log.read_text(errors="replace")[-4000:]
        assert time.monotonic() < deadline, (
            f"fewer than {WORKERS} workers reached mid-epoch 2: {log.read_text()[-4000:]}"
        )
        time.sleep(0.05)  # polling for the files the held processes write
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    at_kill = checkpointed_epochs(root)
    assert not list(root.rglob("run.json")), "no run may have finished: both workers were held"
    in_flight = sorted(name for name, epoch in at_kill.items() if epoch >= 1)
    assert len(in_flight) == WORKERS and all(at_kill[name] == 1 for name in in_flight), at_kill

    finish(setting, root)
    resumed = records(root)
    steps = expected["sgd"]["steps_per_epoch"]
    lost_steps = 0
    for name, record in resumed.items():
        assert record["weights_sha256"] == expected[name]["weights_sha256"], name
        history = record["attempt_history"]
        if name in in_flight:
            # The killed attempt ran epoch 1 and all of epoch 2's steps; the rerun redid epoch 2 only.
            assert [entry["from_epoch"] for entry in history] == [0, 1], (name, history)
            assert history[-1]["steps_run"] == (EPOCHS - 1) * steps, (name, history)
            lost_steps += steps  # epoch 2's steps, run before the kill and again after it
        else:
            assert [entry["from_epoch"] for entry in history] == [0] and history[0]["steps_run"] == EPOCHS * steps
    # The bound the README states: at most N runs, each at most one epoch of work.
    assert lost_steps <= WORKERS * steps
    assert (root / "reports" / "kill-workers" / DATE / "report.json").is_file()
