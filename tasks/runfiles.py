"""The files of one run folder: the contract between training (writer) and evaluation/report (readers)."""

from __future__ import annotations

import pyarrow as pa

RUN_JSON = "run.json"
METRICS_PARQUET = "metrics.parquet"
EVALUATION_JSON = "evaluation.json"
INFERENCE_META = "checkpoints/inference.meta"

# One row per completed epoch.
METRICS_SCHEMA = pa.schema(
    [("epoch", pa.int32())]
    + [(name, pa.float64()) for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                         "wall_seconds", "examples_per_second")]
)
