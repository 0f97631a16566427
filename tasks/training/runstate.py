"""What one training run starts from: its settings, its data split, and the state a resume continues.

Every check that can refuse a run folder runs before anything in it is changed, so a refused folder is
left exactly as it was. A damaged folder of this very run (a deleted metrics.parquet, a missing
checkpoint file) is not an error: what cannot be trusted is moved to a `quarantine/` folder beside it and
the run trains again from the last point that is whole, or from scratch; determinism makes the result
the same weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import DataError, RunFolderError, TrainingError
from tasks.core.quarantine import quarantine
from tasks.core.runfolder import CHECKPOINT_DIR, LATEST_JSON, RunFolder, RunRecord
from tasks.core.runtables import METRICS_SCHEMA
from tasks.core.storage import atomic_path, ensure_dir, read_json, write_json_atomic
from tasks.data.arrays import load_arrays, load_indices
from tasks.training import checkpoints

log = logging.getLogger(__name__)

ATTEMPTS_JSON = "attempts.json"


@dataclass
class SplitArrays:
    """train.arrow as memory-mapped (never copied), and which of its rows train and which validate.

    The graph holds every row once (fed straight from the map); training batches and validation
    batches are both gathered from it in the graph by position, so loading copies no image at all.
    """

    images: np.ndarray | None  # all N rows, uint8 [N, 784], read-only map; None once fed to the graph
    labels: np.ndarray | None  # all N labels, int32
    train_rows: np.ndarray  # positions of the training rows, ascending, int32
    val_rows: np.ndarray  # positions of the validation rows, in the split file's order, int32
    val_labels: np.ndarray  # their labels, int64


def load_split(train_arrow: Path, split_arrow: Path) -> SplitArrays:
    """Training rows are every row of train.arrow not listed in the split file, in ascending order."""
    images, labels = load_arrays(train_arrow)
    validation_rows = load_indices(split_arrow)
    if len(validation_rows) == 0:
        raise DataError(f"{split_arrow}: expected at least one validation row index, found none; rebuild the split")
    low, high = int(validation_rows.min()), int(validation_rows.max())
    if low < 0 or high >= len(labels):
        raise DataError(
            f"{split_arrow}: expected row indices in [0, {len(labels) - 1}] of {train_arrow}, found "
            f"[{low}, {high}]; the split belongs to another dataset: rebuild it with PrepareData"
        )
    is_training = np.ones(len(labels), dtype=bool)
    is_training[validation_rows] = False
    train_rows = np.flatnonzero(is_training).astype(np.int32)
    # All indices are in range, so they are distinct exactly when they mark as many rows as they are.
    if len(train_rows) != len(labels) - len(validation_rows):
        raise DataError(f"{split_arrow}: expected distinct row indices, found duplicates; rebuild the split")
    return SplitArrays(
        images,
        labels.astype(np.int32),
        train_rows,
        validation_rows.astype(np.int32),
        labels[validation_rows].astype(np.int64),
    )


def finished_record(folder: RunFolder) -> tuple[RunRecord | None, str | None]:
    """(run.json, None) when this run finished and every file it names is whole: nothing to do.

    Otherwise (None, why it must train again): a run.json that is unreadable, or whose metrics or final
    checkpoint are missing, is moved to quarantine first. A run.json of another run is refused.
    """
    if not folder.has_record():
        return None, None
    foreign = folder.foreign_record()
    if foreign is not None:
        raise TrainingError(foreign)
    problem = folder.problem()
    if problem is None:
        return folder.record(), None
    if folder.metrics_path.is_file() and folder.metrics_mismatch() is not None:
        # Edited metrics must not be resumed from (a resume keeps the rows of checkpointed epochs): without
        # them the checkpoint cannot be resumed either, so the run trains again from scratch.
        quarantine(folder.metrics_path, f"{problem}; the run trains again from scratch")
    moved = quarantine(folder.run_json, f"{problem}; the run trains again to rebuild what is missing")
    log.warning("%s: %s; moved it to %s and training again", folder.run_json, problem, moved)
    return None, f"{problem}; run.json moved to {moved}"


@dataclass
class AttemptLog:
    """attempts.json: one entry per start of training in this folder, kept across kills.

    `steps_run` counts the training steps this attempt ran (from the graph's global step) as of its last
    recorded epoch, so a resume shows the epochs it skipped.
    """

    path: Path
    entries: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, run_dir: Path, from_epoch: int, repair: str | None) -> AttemptLog:
        path = Path(run_dir) / ATTEMPTS_JSON
        entries: list[dict] = []
        if path.exists():
            try:
                entries = read_json(path)
                if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
                    raise ValueError(f"expected a list of objects, found {type(entries).__name__}")
            except (OSError, ValueError) as exc:
                moved = quarantine(path, f"not an attempts log ({exc}); a new log was started")
                log.warning("%s: not an attempts log (%s); moved it to %s", path, exc, moved)
                entries = []
        entry: dict[str, Any] = {"attempt": len(entries) + 1, "from_epoch": from_epoch, "steps_run": 0}
        if repair:
            entry["repair"] = repair
        attempts = cls(path, [*entries, entry])
        attempts.save()
        return attempts

    @property
    def attempt(self) -> int:
        return len(self.entries)

    @property
    def resumes(self) -> list[dict]:
        return [entry for entry in self.entries if entry["from_epoch"] > 0]

    def record_steps(self, steps_run: int) -> None:
        self.entries[-1]["steps_run"] = steps_run
        self.save()

    def save(self) -> None:
        # Bookkeeping, written every epoch: atomic, but not flushed to disk (no fsync), so a run pays no
        # disk wait for it. After a power cut it may show an earlier epoch's count; no result depends on it.
        write_json_atomic(self.path, self.entries, durable=False)


@dataclass
class ResumeState:
    """Where this attempt starts: the checkpoint it restores (None: from scratch) and the metrics so far."""

    folder: RunFolder
    start_epoch: int
    latest: dict | None
    rows: list[dict]
    attempts: AttemptLog

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def checkpoint_dir(self) -> Path:
        return self.folder.checkpoint_dir


def prepare_resume(folder: RunFolder, epochs: int, repair: str | None) -> ResumeState:
    """Check latest.json and metrics.parquet, then (only then) clean the folder for a start at the last
    whole epoch; record this attempt."""
    latest = _checked_latest(folder, epochs)
    rows, metrics_problem = _read_metric_rows(folder)
    damage = _resume_damage(folder, latest, rows, metrics_problem) if latest is not None else None
    metrics_path = folder.metrics_path
    if damage is not None:
        # The checkpoint cannot be resumed from: start over, keeping what was there for inspection.
        latest_path = folder.checkpoint_dir / LATEST_JSON
        moved = quarantine(latest_path, f"{damage}; the run trains again from scratch")
        log.warning("%s; moved %s to %s and training from scratch", damage, latest_path, moved)
        repair = "; ".join(filter(None, [repair, f"{damage}: trained again from scratch"]))
        latest, rows = None, []
        if metrics_path.exists():
            quarantine(metrics_path, f"{damage}; the run trains again from scratch")
    elif metrics_problem is not None and metrics_path.exists():  # unusable, and no checkpoint needs its rows
        quarantine(metrics_path, f"{metrics_problem}; the run trains again from scratch")
    start_epoch = latest["epoch"] if latest else 0
    kept = [row for row in rows if row["epoch"] <= start_epoch]
    if len(kept) != len(rows):  # rows of an epoch killed before its checkpoint: it runs again
        if kept:
            write_metrics(metrics_path, kept)
        else:
            metrics_path.unlink()
    checkpoints.clean_checkpoint_dir(ensure_dir(folder.checkpoint_dir), start_epoch)
    return ResumeState(folder, start_epoch, latest, kept, AttemptLog.start(folder.path, start_epoch, repair))


def _checked_latest(folder: RunFolder, epochs: int) -> dict | None:
    """latest.json, refused (before anything is changed) when it is not a checkpoint of this run."""
    try:
        latest = folder.latest()
    except RunFolderError as exc:
        raise TrainingError(str(exc)) from None
    if latest is not None and latest["epoch"] > epochs:
        raise TrainingError(
            f"{folder.checkpoint_dir / LATEST_JSON}: names epoch {latest['epoch']}, but run {folder.run_hash} "
            f"trains {epochs} epochs; this folder was not written by this run's training. Nothing was changed: "
            "move the run folder aside or delete it, and rerun"
        )
    return latest


def _resume_damage(folder: RunFolder, latest: dict, rows: list[dict], metrics_problem: str | None) -> str | None:
    """Why the checkpoint latest.json names cannot be resumed from, or None when it can.

    It needs its files (regular files inside the run folder) and the metrics rows of epochs 1..its epoch.
    """
    problem = folder.checkpoint_problem(f"{CHECKPOINT_DIR}/{latest['prefix']}")
    if problem is not None:
        return f"checkpoint {problem}"
    if metrics_problem is not None:
        return metrics_problem
    epochs = [row["epoch"] for row in rows]
    if epochs[: latest["epoch"]] != list(range(1, latest["epoch"] + 1)):
        return f"{folder.metrics_path}: rows for epochs {epochs}, expected 1..{latest['epoch']} (the last checkpoint)"
    return None


def write_metrics(path: Path, rows: list[dict]) -> None:
    with atomic_path(path, suffix=".parquet") as temp:
        pq.write_table(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), temp)


def _read_metric_rows(folder: RunFolder) -> tuple[list[dict], str | None]:
    """(rows, None), or ([], why the file is unusable); no file is no rows."""
    try:
        return folder.metric_rows(), None
    except RunFolderError as exc:
        return [], str(exc)
