"""The two Parquet tables of a run folder, in one place: metrics.parquet's schema, its rows as arrays and
their digest (run.json's metrics_sha256), and predictions.parquet's bytes. No TensorFlow here."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import RunFolderError

# One row per completed epoch.
METRICS_SCHEMA = pa.schema(
    [("epoch", pa.int32())]
    + [
        (name, pa.float64())
        for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "wall_seconds", "examples_per_second")
    ]
)
METRIC_COLUMNS = tuple(METRICS_SCHEMA.names)
# One row per test image, in the test file's row order: the class the model predicted.
PREDICTIONS_SCHEMA = pa.schema([("prediction", pa.uint8())])


def metric_arrays(rows: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Metrics rows as {column: numpy array}, sorted by epoch."""
    columns = {
        name: np.asarray([row[name] for row in rows], dtype=np.int32 if name == "epoch" else np.float64)
        for name in METRIC_COLUMNS
    }
    order = np.argsort(columns["epoch"], kind="stable")
    return {name: values[order] for name, values in columns.items()}


def metrics_digest(rows: list[Mapping[str, Any]]) -> str:
    """The sha256 of metrics rows' values (float64/int32 little-endian, by epoch, column by column): the same
    for the rows training holds and for the same rows read back from metrics.parquet, whatever the Parquet
    writer's version."""
    arrays = metric_arrays(rows)
    digest = hashlib.sha256()
    for name in METRIC_COLUMNS:
        digest.update(arrays[name].astype(arrays[name].dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def encode_predictions(predictions: np.ndarray) -> bytes:
    """The predictions.parquet bytes of per-example predictions (classes, checked by evaluation), in memory:
    hashed, then written."""
    values = np.asarray(predictions)
    sink = io.BytesIO()
    pq.write_table(pa.table({"prediction": values.astype(np.uint8)}, schema=PREDICTIONS_SCHEMA), sink)
    return sink.getvalue()


def decode_predictions(data: bytes, source: Path) -> np.ndarray:
    """Per-example predictions from predictions.parquet bytes; RunFolderError naming `source` when unusable."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise RunFolderError(f"{source}: not a readable Parquet file ({exc})") from None
    if not table.schema.equals(PREDICTIONS_SCHEMA):
        raise RunFolderError(f"{source}: expected the column 'prediction' (uint8), found {table.schema}")
    return table.column("prediction").to_numpy(zero_copy_only=False).astype(np.uint8)
