"""Kill anywhere: SIGKILL the real CLI at every dangerous moment, rerun, and get the same result.

The harness runs `luigi --module pipeline FullReport` (one worker, so every task runs in the killed
process) on synthetic data with a two-optimizer, two-epoch config. One uninterrupted run is the
reference. Each kill cycle starts in a fresh artifacts root and dies by SIGKILL, either at a failpoint
(`FMNIST_CRASH_AT`, see tasks/core/faults.py) on a seeded occurrence or at a seeded wall-clock moment. After
the kill, every finished target on disk must be complete and valid; a rerun must finish, produce the
reference's weights and summary, and leave no temp file behind. A rerun must also resume: each run
that was killed continues from the epoch its latest.json named, running only the remaining steps
(training is deterministic, so a retrain from scratch would give the same weights and pass unnoticed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from tasks.core import faults
from tasks.core.storage import QUARANTINE_DIR, TEMP_MARKER, sha256_file
from tasks.data.arrays import load_arrays, load_indices
from tasks.data.fetch import verify_raw_file
from tasks.training.checkpoints import LATEST_JSON
from tests import synthetic
from tests.conftest import REPO_ROOT, SYNTHETIC_TEST_ROWS, SYNTHETIC_TRAIN_ROWS

# Every kill moment derives from this seed (FMNIST_KILL_SEED overrides it, to soak other moments). This
# one kills training mid-epoch 2 and after epoch 2's save, so both resumes from a checkpoint are covered.
SEED = int(os.environ.get("FMNIST_KILL_SEED", "20260111"))
DATE = "2026-01-05"
OPTIMIZERS = ("sgd", "msvag")
EPOCHS = 2
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
TIMING_COLUMNS = ("seconds_per_epoch", "wall_seconds")


@dataclass
class Workspace:
    """Synthetic source data, the experiment config, the reference root, and a log of the kills."""

    base: Path
    source: Path
    checksums: Path
    config: Path
    reference: Path
    reference_seconds: float
    kills: list[str]

    def site_cfg(self, root: Path) -> Path:
        path = root.with_name(f"{root.name}.cfg")
        path.write_text(
            f"[pipeline]\nartifacts_root = {root}\nsources = {json.dumps([str(self.source)])}\n"
            f"checksums_file = {self.checksums}\nfetch_retries = 0\n"
        )
        return path

    def start(self, root: Path, crash_at: str | None = None) -> tuple[subprocess.Popen, Path]:
        """Start FullReport into `root` as a subprocess; its output goes to a log file beside the root."""
        env = dict(os.environ, LUIGI_CONFIG_PATH=str(self.site_cfg(root)), TF_CPP_MIN_LOG_LEVEL="2")
        env.pop(faults.ENV_VAR, None)
        if crash_at:
            env[faults.ENV_VAR] = crash_at
        log = root.with_name(f"{root.name}-{time.monotonic_ns()}.log")
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "luigi",
                    "--module",
                    "pipeline",
                    "FullReport",
                    "--config",
                    str(self.config),
                    "--date",
                    DATE,
                    "--workers",
                    "1",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return process, log

    def run(self, root: Path, crash_at: str | None = None) -> tuple[int, str]:
        process, log = self.start(root, crash_at)
        return process.wait(timeout=600), log.read_text(errors="replace")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request) -> Workspace:
    base = tmp_path_factory.mktemp("kill-anywhere")
    source = base / "source"
    checksums = synthetic.write_checksums_file(
        base / "checksums.json",
        synthetic.write_raw_dir(source, train_count=SYNTHETIC_TRAIN_ROWS, test_count=SYNTHETIC_TEST_ROWS),
    )
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["experiment"] = "kill"
    raw["training"]["epochs"] = EPOCHS
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] in OPTIMIZERS]
    config = base / "kill.yaml"
    config.write_text(yaml.safe_dump(raw))
    space = Workspace(base, source, checksums, config, base / "reference", 0.0, [])
    started = time.monotonic()
    returncode, output = space.run(space.reference)
    space.reference_seconds = time.monotonic() - started
    assert returncode == 0, output[-4000:]
    assert_targets_are_whole(space.reference)
    assert not temp_files(space.reference)
    yield space
    # Shown even under -q and output capture: how many kill points ran, and where each one struck.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nkill-anywhere: {len(space.kills)} kill points ran (reference run {space.reference_seconds:.1f} s)")
        for line in space.kills:
            print(f"  {line}")


# -- what "no partial file is visible as a finished target" means, file by file ------------------


def temp_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob(f"*{TEMP_MARKER}*"))


def _finished(root: Path, pattern: str) -> list[Path]:
    """Files named like targets (temp files start with a dot and are never targets)."""
    return sorted(
        path for path in root.rglob(pattern) if not path.name.startswith(".") and QUARANTINE_DIR not in path.parts
    )


def assert_targets_are_whole(root: Path) -> None:
    """Every finished target that exists under `root` is complete and valid, and what it names exists."""
    raw_dir = root / "data" / "raw"
    for gz in _finished(root, "*.gz"):
        record = json.loads((raw_dir / f"{gz.name}.json").read_text())  # the record lands before the .gz
        verify_raw_file(gz, record)
    json_files = {path: json.loads(path.read_text()) for path in _finished(root, "*.json")}
    manifest = json_files.get(root / "data" / "manifest.json")
    if manifest is not None:
        for entry in manifest["arrays"].values():
            assert sha256_file(root / entry["path"]) == entry["sha256"], entry
    for arrow in _finished(root, "*.arrow"):
        if arrow.name.startswith("split-"):
            assert len(load_indices(arrow)) > 0, arrow
        else:
            images, labels = load_arrays(arrow)
            assert len(images) == len(labels) > 0, arrow
    for metrics in _finished(root, "metrics.parquet"):
        epochs = pq.read_table(metrics).column("epoch").to_pylist()
        assert epochs == list(range(1, len(epochs) + 1)), metrics
    for path, content in json_files.items():
        if path.name == LATEST_JSON:
            assert (path.parent / f"{content['prefix']}.index").is_file(), path
            assert list(path.parent.glob(f"{content['prefix']}.data-*")), path
        elif path.name == "run.json":
            assert content["status"] == "completed", path
            latest = json.loads((path.parent / "checkpoints" / LATEST_JSON).read_text())
            assert content["weights_sha256"] == latest["weights_sha256"], path
            assert (path.parent / f"{content['final_checkpoint']}.index").is_file(), path
            assert pq.read_table(path.parent / "metrics.parquet").num_rows == content["epochs_completed"] == EPOCHS
        elif path.name == "evaluation.json":
            run = json_files[path.parent / "run.json"]
            assert content["status"] == run["status"] and content["test"]["examples"] == SYNTHETIC_TEST_ROWS, path
        elif path.name == "report.json":
            assert Path(content["html"]).is_file() and (path.parent / "report.md").is_file(), path
            assert (path.parent / "summary.parquet").is_file(), path
    for summary in _finished(root, "summary.parquet"):
        assert pq.read_table(summary).num_rows == len(OPTIMIZERS), summary
    for png in _finished(root, "*.png"):
        with Image.open(png) as image:
            image.verify()


def weights_by_run(root: Path) -> dict[str, str]:
    return {
        str(path.parent.relative_to(root)): json.loads(path.read_text())["weights_sha256"]
        for path in (root / "runs").rglob("run.json")
    }


def summary_without_timing(root: Path) -> list[dict]:
    table = pq.read_table(root / "reports" / "kill" / DATE / "summary.parquet")
    timing = [name for name in table.column_names if name in TIMING_COLUMNS or name.startswith("seconds_to_")]
    return table.drop_columns(timing).to_pylist()


def resume_points(root: Path) -> dict[str, int | None]:
    """Per run folder after a kill: the epoch a rerun must resume from, or None when the run had finished."""
    points: dict[str, int | None] = {}
    for run_dir in sorted(root.glob("runs/*/seed-*")):
        latest = run_dir / "checkpoints" / LATEST_JSON
        epoch = json.loads(latest.read_text())["epoch"] if latest.is_file() else 0
        points[str(run_dir.relative_to(root))] = None if (run_dir / "run.json").is_file() else epoch
    return points


def assert_resumed_where_killed(root: Path, points: dict[str, int | None]) -> None:
    """Each run the kill interrupted skipped its checkpointed epochs and ran exactly the remaining steps."""
    for run_json in sorted((root / "runs").rglob("run.json")):
        record = json.loads(run_json.read_text())
        start = points.get(str(run_json.parent.relative_to(root)), 0)
        if start is None:
            assert record["attempts"] == 1, run_json  # finished before the kill: returned, not retrained
            continue
        last = record["attempt_history"][-1]
        assert last["from_epoch"] == start, (run_json, record["attempt_history"])
        assert last["steps_run"] == (EPOCHS - start) * record["steps_per_epoch"], (run_json, last)
        assert record["resumes"] == ([last] if start else []), run_json


def assert_rerun_matches_reference(space: Workspace, root: Path) -> None:
    points = resume_points(root)
    returncode, output = space.run(root)
    assert returncode == 0, output[-4000:]
    assert_targets_are_whole(root)
    assert_resumed_where_killed(root, points)
    assert weights_by_run(root) == weights_by_run(space.reference)
    assert len(weights_by_run(root)) == len(OPTIMIZERS)
    assert summary_without_timing(root) == summary_without_timing(space.reference)
    assert not temp_files(root), "temp files of the killed run were not swept"
    assert not list((root / "data" / "raw").glob("*.part")), "a partial download was left behind"


# -- the kill cycles ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("point", list(HITS))
def test_a_kill_at_a_failpoint_then_a_rerun_gives_the_reference_result(workspace: Workspace, point: str):
    occurrence = random.Random(f"{SEED}:{point}").randint(1, HITS[point])
    root = workspace.base / f"kill-{point}"
    returncode, output = workspace.run(root, crash_at=f"{point}:{occurrence}")
    assert returncode == -signal.SIGKILL, f"expected death by SIGKILL at {point}:{occurrence}\n{output[-3000:]}"
    assert_targets_are_whole(root)
    if point == "storage.temp-written":
        assert temp_files(root), "the kill after a temp file was written must leave it for the sweep to find"
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
