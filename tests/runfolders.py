"""Run folders written by hand, independently of training and evaluation, for the run-folder contract's tests
(tests/test_runfolder.py, tests/test_runfolder_evaluation.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.runfolder import RunFolder
from tasks.core.runtables import encode_predictions

RUN_HASH, SEED = "a1b2c3d4e5f6", 3
COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "wall_seconds", "examples_per_second"]
# Written out of epoch order on purpose: readers sort by epoch.
ROWS = [
    {
        "epoch": 2,
        "train_loss": 0.5,
        "train_accuracy": 0.8,
        "val_loss": 0.6,
        "val_accuracy": 0.78,
        "wall_seconds": 2.0,
        "examples_per_second": 50.0,
    },
    {
        "epoch": 1,
        "train_loss": 0.9,
        "train_accuracy": 0.6,
        "val_loss": 0.7,
        "val_accuracy": 0.70,
        "wall_seconds": 2.5,
        "examples_per_second": 40.0,
    },
]
PREDICTIONS = np.array([0, 9, 3, 3, 7], np.uint8)


def digest_by_hand(rows: list[dict]) -> str:
    """metrics_digest's definition, written out: little-endian values by epoch, column after column."""
    ordered = sorted(rows, key=lambda row: row["epoch"])
    digest = hashlib.sha256()
    digest.update(np.array([row["epoch"] for row in ordered], "<i4").tobytes())
    for name in COLUMNS[1:]:
        digest.update(np.array([row[name] for row in ordered], "<f8").tobytes())
    return digest.hexdigest()


def write_metrics(path: Path, rows: list[dict]) -> None:
    columns = {name: [row[name] for row in rows] for name in COLUMNS}
    table = pa.table({"epoch": pa.array(columns.pop("epoch"), pa.int32()), **columns})
    pq.write_table(table, path)


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def make_run(
    tmp_path: Path,
    *,
    folder: Path | None = None,
    run_hash: str = RUN_HASH,
    seed: int = SEED,
    record: dict | None = None,
) -> RunFolder:
    """A finished, scored run of two epochs, as training and evaluation lay it out: at `folder` (default: under
    `tmp_path`), of run (`run_hash`, `seed`), with `record`'s keys added to its run.json."""
    folder = folder or tmp_path / "runs" / "mlp-adam-a1b2c3d4e5f6" / "seed-3"
    (folder / "checkpoints").mkdir(parents=True)
    for name in ("epoch-0002.index", "epoch-0002.data-00000-of-00002", "epoch-0002.data-00001-of-00002"):
        (folder / "checkpoints" / name).write_bytes(b"w")
    write_metrics(folder / "metrics.parquet", ROWS)
    write_json(
        folder / "run.json",
        {
            "run_hash": run_hash,
            "seed": seed,
            "status": "completed",
            "epochs_completed": 2,
            "final_checkpoint": "checkpoints/epoch-0002",
            "weights_sha256": "f" * 64,
            "metrics_sha256": digest_by_hand(ROWS),
            **(record or {}),
        },
    )
    encoded = encode_predictions(PREDICTIONS)
    (folder / "predictions.parquet").write_bytes(encoded)
    write_json(
        folder / "evaluation.json",
        {
            "schema_version": 2,
            "run_hash": run_hash,
            "seed": seed,
            "status": "completed",
            "metrics": {"best": 1},
            "test": {"examples": 5, "accuracy": 0.6},
            "predictions": {"sha256": hashlib.sha256(encoded).hexdigest()},
        },
    )
    write_json(
        folder / "checkpoints" / "latest.json",
        {
            "epoch": 2,
            "prefix": "epoch-0002",
            "weights_sha256": "f" * 64,
            "variables": [],
            "run_hash": run_hash,
            "seed": seed,
        },
    )
    return RunFolder(str(folder), run_hash, seed)


def edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    write_json(path, data)


def read_record(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
