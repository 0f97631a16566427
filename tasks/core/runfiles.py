"""The files of one run folder: the contract between training (writer) and evaluation/report (readers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import EvaluationError

RUN_JSON = "run.json"
METRICS_PARQUET = "metrics.parquet"
EVALUATION_JSON = "evaluation.json"
INFERENCE_META = "checkpoints/inference.meta"

# One row per completed epoch.
METRICS_SCHEMA = pa.schema(
    [("epoch", pa.int32())]
    + [
        (name, pa.float64())
        for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "wall_seconds", "examples_per_second")
    ]
)

METRIC_COLUMNS = tuple(METRICS_SCHEMA.names)


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
