"""What "no partial file is visible as a finished target" means, file by file, for the kill harness."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from tasks.core.runfolder import LATEST_JSON
from tasks.core.storage import QUARANTINE_DIR, TEMP_MARKER, sha256_file
from tasks.data.arrays import load_arrays, load_indices
from tasks.data.fetch import verify_raw_file
from tests.conftest import SYNTHETIC_TEST_ROWS

DATE = "2026-01-05"
OPTIMIZERS = ("msvag",)  # one optimizer proves the training failpoints; M-SVAG has slots to restore
EPOCHS = 2
TIMING_COLUMNS = ("seconds_per_epoch", "wall_seconds")


def temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{TEMP_MARKER}*"))


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
