"""Kill anywhere: SIGKILL the real CLI at every dangerous moment, rerun, and get the same result.

The harness runs `luigi --module pipeline FullReport` (one worker, so every task runs in the killed process) on
synthetic data with a one-optimizer (M-SVAG, cosine schedule with warm-up), two-epoch config; the data stage's
failpoints kill and rerun `PrepareData` alone. One uninterrupted run is the reference. Each cycle starts in a
fresh artifacts root and dies by SIGKILL at a failpoint (`FMNIST_CRASH_AT`, tasks/core/faults.py) on a seeded
occurrence, or at a seeded wall-clock moment. Every finished target on disk must then be whole; a rerun must
finish with the reference's bytes and weights, leave no temp file, and resume: each killed run continues from
the epoch its latest.json named and runs only the remaining steps (a deterministic retrain would otherwise pass
unnoticed).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tasks.core import faults
from tasks.core.storage import sha256_file
from tests.clirun import SyntheticSource
from tests.conftest import REPO_ROOT
from tests.killcheck import (
    DATE,
    EPOCHS,
    OPTIMIZERS,
    assert_resumed_where_killed,
    assert_targets_are_whole,
    resume_points,
    summary_without_timing,
    temp_files,
    weights_by_run,
)

# Every kill moment derives from this seed (FMNIST_KILL_SEED overrides it, to soak other moments). This
# one kills training mid-epoch 2 and after epoch 2's save, so both resumes from a checkpoint are covered.
SEED = int(os.environ.get("FMNIST_KILL_SEED", "20260111"))
# How often each failpoint is reached in one uninterrupted run of the config above: the seeded
# occurrence is drawn from 1..hits, so every choice kills inside the run (which file, epoch, run).
HITS = {
    "fetch.part-written": 4,  # one per raw file
    "decode.arrays-written": 1,
    "train.mid-epoch": len(OPTIMIZERS) * EPOCHS,  # at least one chunk per epoch
    "train.checkpoint-saved": len(OPTIMIZERS) * EPOCHS,
    "evaluate.scored": len(OPTIMIZERS),
    "report.figures-written": 1,
    "storage.temp-written": 20,  # the run makes more atomic writes than this
}
WALL_CLOCK_KILLS = 2
# The data stage's failpoints need only the data stage: those cycles kill and rerun `PrepareData`.
DATA_POINTS = ("fetch.part-written", "decode.arrays-written")
PREPARE = ("PrepareData", "--validation-per-class", "100")


@dataclass
class Workspace:
    """Synthetic source data, the experiment config, the reference root, and a log of the kills."""

    base: Path
    data: SyntheticSource
    config: Path
    reference: Path
    reference_seconds: float
    kills: list[str]

    def start(
        self, root: Path, crash_at: str | None = None, task: tuple[str, ...] = ()
    ) -> tuple[subprocess.Popen, Path]:
        """Start FullReport (or `task`) into `root` as a subprocess; its output goes to a log file beside it."""
        args = list(task or ("FullReport", "--config", str(self.config), "--date", DATE))
        return self.data.start(root, args, {faults.ENV_VAR: crash_at} if crash_at else None)

    def run(self, root: Path, crash_at: str | None = None, task: tuple[str, ...] = ()) -> tuple[int, str]:
        process, log = self.start(root, crash_at, task)
        return process.wait(timeout=600), log.read_text(errors="replace")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request) -> Workspace:
    base = tmp_path_factory.mktemp("kill-anywhere")
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["experiment"] = "kill"
    raw["training"]["epochs"] = EPOCHS
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] in OPTIMIZERS]
    for entry in raw["optimizers"]:  # a schedule's position must survive every kill too (global step)
        entry["schedule"] = {"kind": "cosine", "warmup_steps": 3}
    config = base / "kill.yaml"
    config.write_text(yaml.safe_dump(raw))
    space = Workspace(base, SyntheticSource.write(base), config, base / "reference", 0.0, [])
    started = time.monotonic()
    returncode, output = space.run(space.reference)
    space.reference_seconds = time.monotonic() - started
    assert returncode == 0, output[-4000:]
    assert_targets_are_whole(space.reference)
    assert not temp_files(space.reference)
    (markdown,) = space.reference.rglob("report.md")
    assert "| cosine to 0×, after 3 warm-up steps |" in markdown.read_text()  # the report names the schedule
    yield space
    # Shown even under -q and output capture: how many kill points ran, and where each one struck.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nkill-anywhere: {len(space.kills)} kill points ran (reference run {space.reference_seconds:.1f} s)")
        for line in space.kills:
            print(f"  {line}")


def assert_rerun_matches_reference(space: Workspace, root: Path) -> None:
    points = resume_points(root)
    returncode, output = space.run(root)
    assert returncode == 0, output[-4000:]
    assert_targets_are_whole(root)
    assert_resumed_where_killed(root, points)
    assert weights_by_run(root) == weights_by_run(space.reference)
    assert len(weights_by_run(root)) == len(OPTIMIZERS)
    assert summary_without_timing(root) == summary_without_timing(space.reference)
    assert_nothing_half_done(root)


def assert_nothing_half_done(root: Path) -> None:
    assert not temp_files(root), "temp files of the killed run were not swept"
    assert not list((root / "data" / "raw").glob("*.part")), "a partial download was left behind"


def assert_data_rerun_matches_reference(space: Workspace, root: Path) -> None:
    """A rerun of the data stage finishes with the reference's bytes, and leaves nothing half-done."""
    returncode, output = space.run(root, task=PREPARE)
    assert returncode == 0, output[-4000:]
    assert_targets_are_whole(root)
    for name in ("data/arrays/train.arrow", "data/arrays/test.arrow", "data/arrays/split-v100-s0.arrow"):
        assert sha256_file(root / name) == sha256_file(space.reference / name), name
    assert_nothing_half_done(root)


# -- the kill cycles ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("point", list(HITS))
def test_a_kill_at_a_failpoint_then_a_rerun_gives_the_reference_result(workspace: Workspace, point: str):
    occurrence = random.Random(f"{SEED}:{point}").randint(1, HITS[point])
    root = workspace.base / f"kill-{point}"
    task = PREPARE if point in DATA_POINTS else ()
    returncode, output = workspace.run(root, crash_at=f"{point}:{occurrence}", task=task)
    assert returncode == -signal.SIGKILL, f"expected death by SIGKILL at {point}:{occurrence}\n{output[-3000:]}"
    assert_targets_are_whole(root)
    if point == "storage.temp-written":
        assert temp_files(root), "the kill after a temp file was written must leave it for the sweep to find"
    if task:
        assert_data_rerun_matches_reference(workspace, root)
    else:
        assert_rerun_matches_reference(workspace, root)
    workspace.kills.append(f"{point}:{occurrence} during {_last_task(output)}")


@pytest.mark.slow
@pytest.mark.parametrize("index", range(WALL_CLOCK_KILLS))
def test_a_kill_at_a_random_moment_then_a_rerun_gives_the_reference_result(workspace: Workspace, index: int):
    # Kill k of K strikes in the k-th slice of [2 s, 80 % of the reference run]: from the data stage to
    # the report, and early enough that the run never finishes first.
    earliest, latest = 2.0, 0.8 * workspace.reference_seconds
    width = (latest - earliest) / WALL_CLOCK_KILLS
    delay = random.Random(f"{SEED}:wall-clock:{index}").uniform(
        earliest + index * width, earliest + (index + 1) * width
    )
    # The machine is shared: a run can be faster than the reference was. One that ends before the kill
    # tested nothing, so it is run again (in a fresh root) with the kill halfway closer to the start.
    for attempt in range(3):
        if attempt:
            delay = earliest + (delay - earliest) / 2
        root = workspace.base / f"kill-wall-clock-{index}-{attempt}"
        process, log = workspace.start(root)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        returncode = process.wait(timeout=60)
        output = log.read_text(errors="replace")
        if returncode != 0:
            break
    assert returncode == -signal.SIGKILL, f"the run ended ({returncode}) before the kill at {delay:.2f} s"
    assert_targets_are_whole(root)
    assert_rerun_matches_reference(workspace, root)
    workspace.kills.append(f"wall clock {delay:.2f} s during {_last_task(output)}")


def _last_task(output: str) -> str:
    started = [line.split("running", 1)[1].strip() for line in output.splitlines() if ") running " in line]
    return started[-1][:60] if started else "start-up (no task yet)"
