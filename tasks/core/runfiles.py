"""The files of one run folder: the contract between training (writer) and evaluation/report (readers).

No TensorFlow here: `run_is_complete` is asked at scheduling time, for every run of a config.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import EvaluationError

RUN_JSON = "run.json"
METRICS_PARQUET = "metrics.parquet"
EVALUATION_JSON = "evaluation.json"
CHECKPOINT_DIR = "checkpoints"
# What training writes into run.json's status; anything else is not a finished run.
RUN_STATUSES = ("completed", "diverged")

# One row per completed epoch.
METRICS_SCHEMA = pa.schema(
    [("epoch", pa.int32())]
    + [
        (name, pa.float64())
        for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "wall_seconds", "examples_per_second")
    ]
)

METRIC_COLUMNS = tuple(METRICS_SCHEMA.names)

_DATA_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """metrics.parquet as {column: numpy array}, sorted by epoch; EvaluationError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: metrics file not found; rerun TrainRun for this run to write it")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise EvaluationError(
            f"{path}: not a readable Parquet file ({exc}); delete the run folder and retrain"
        ) from None
    missing = [name for name in METRIC_COLUMNS if name not in table.column_names]
    if missing:
        raise EvaluationError(
            f"{path}: expected columns {list(METRIC_COLUMNS)}, missing {missing}; the run was written by "
            "other training code: delete the run folder and retrain"
        )
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in METRIC_COLUMNS}
    order = np.argsort(columns["epoch"], kind="stable")
    return {name: np.asarray(values)[order] for name, values in columns.items()}


def checkpoint_problem(run_dir: Path, prefix: str) -> str | None:
    """Why checkpoint `prefix` (relative to run_dir, e.g. `checkpoints/epoch-0003`) must not be restored, or
    None when its `.index` and every `.data` shard are regular files, no symlinks, inside the run folder.

    A run folder is data: a file it names is read only where the run itself could have written it.
    """
    root = Path(run_dir).resolve()
    base = Path(run_dir) / prefix
    if Path(prefix).is_absolute() or not base.resolve().is_relative_to(root / CHECKPOINT_DIR):
        return f"names {prefix!r}, which is outside {root / CHECKPOINT_DIR}"
    index = base.with_name(f"{base.name}.index")
    shards = sorted(base.parent.glob(f"{base.name}.data-*")) if base.parent.is_dir() else []
    totals = {match.group(2) for match in (_DATA_SHARD.search(shard.name) for shard in shards) if match}
    if len(totals) != 1:
        return (
            f"expected {base.name}.data-NNNNN-of-NNNNN files of one save in {base.parent}, "
            f"found {[shard.name for shard in shards]}"
        )
    total = totals.pop()
    expected = [base.with_name(f"{base.name}.data-{number:05d}-of-{total}") for number in range(int(total))]
    for path in [index, *expected]:
        try:
            info = path.lstat()
        except OSError:
            return f"{path} not found"
        if not stat.S_ISREG(info.st_mode):
            return f"{path} is not a regular file (a symlink or a folder); only files written in place are restored"
        if not path.resolve().is_relative_to(root):
            return f"{path} resolves to {path.resolve()}, outside the run folder {root}"
    return None


def read_run_record(run_dir: Path) -> Any:
    """run.json's content; OSError or ValueError when it is missing or not JSON."""
    return json.loads((Path(run_dir) / RUN_JSON).read_text(encoding="utf-8"))


def run_record_problem(run_dir: Path, run_hash: str, seed: int) -> str | None:
    """Why run_dir does not hold a finished run (run_hash, seed) with all its files, or None when it does.

    Finished means: run.json readable, of this run, with a final status; metrics.parquet present when an
    epoch completed; the final checkpoint's files present as regular files inside the run folder.
    """
    path = Path(run_dir) / RUN_JSON
    try:
        record = read_run_record(run_dir)
    except FileNotFoundError:
        return f"{path} not found"
    except (OSError, ValueError) as exc:
        return f"{path} is not readable JSON ({exc})"
    if not isinstance(record, dict) or (record.get("run_hash"), record.get("seed")) != (run_hash, seed):
        found = (record.get("run_hash"), record.get("seed")) if isinstance(record, dict) else type(record).__name__
        return f"{path} records run {found}, not ({run_hash!r}, {seed})"
    if record.get("status") not in RUN_STATUSES:
        return f"{path} has status {record.get('status')!r}, not one of {list(RUN_STATUSES)}"
    epochs = record.get("epochs_completed")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        return f"{path} has epochs_completed {epochs!r}, not a count"
    if epochs > 0 and not (Path(run_dir) / METRICS_PARQUET).is_file():
        return f"{Path(run_dir) / METRICS_PARQUET} not found"
    final = record.get("final_checkpoint")
    if final is None:
        return f"{path} has status 'completed' but no final_checkpoint" if record["status"] == "completed" else None
    if not isinstance(final, str):
        return f"{path} has final_checkpoint {final!r}, not a path"
    problem = checkpoint_problem(run_dir, final)
    return f"final checkpoint {problem}" if problem else None


def run_is_complete(run_dir: Path, run_hash: str, seed: int) -> bool:
    """True when run_dir holds the finished run (run_hash, seed) with every file evaluation needs."""
    return run_record_problem(run_dir, run_hash, seed) is None
