"""run.json: the record of one finished training run, written last (it marks the run complete)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import numpy as np
import pyarrow as pa

from tasks.core.runfolder import CHECKPOINT_DIR, METRICS_SHA256
from tasks.core.runtables import metrics_digest
from tasks.training.runstate import AttemptLog


def run_record(
    settings: dict,
    run_hash: str,
    seed: int,
    *,
    split_rows: tuple[int, int],
    steps_per_epoch: int,
    rows: list[dict],
    latest: dict | None,
    diverged_at: dict | None,
    model_variables: list[str],
    attempts: AttemptLog,
    attempt_wall_seconds: float,
    threads: tuple[int, int],
    device: str,
    tensorflow_version: str,
    tensorflow_inherited: bool = False,
) -> dict[str, Any]:
    """The run.json record; `latest` is the final checkpoint's latest.json (None: no epoch completed).

    `device` is the one this attempt's session used: "cpu" or TensorFlow's name of the GPU.
    """
    return {
        "settings": settings,
        "run_hash": run_hash,
        "seed": seed,
        "status": "diverged" if diverged_at else "completed",
        "diverged_at": diverged_at,
        "epochs_completed": len(rows),
        # metrics.parquet holds exactly these rows (written at the last checkpoint): RunFolder checks it.
        METRICS_SHA256: metrics_digest(rows) if rows else None,
        "final_checkpoint": f"{CHECKPOINT_DIR}/{latest['prefix']}" if latest else None,
        # The weights final_checkpoint holds (None when no epoch completed before a divergence).
        "weights_sha256": latest["weights_sha256"] if latest else None,
        "model_variables": model_variables,
        "train_rows": split_rows[0],
        "validation_rows": split_rows[1],
        "steps_per_epoch": steps_per_epoch,
        # Training + validation time of the completed epochs, whichever attempt ran them; this call's total
        # (TF import, data load, graph build and restore included) is attempt_wall_seconds.
        "wall_seconds": float(sum(row["wall_seconds"] for row in rows)),
        "attempt_wall_seconds": attempt_wall_seconds,
        # True when TensorFlow was already loaded in this process as the run began (a Luigi worker that
        # preloaded it before forking, pipeline/warm.py), so attempt_wall_seconds holds no import.
        "tensorflow_inherited": tensorflow_inherited,
        "examples_per_second": float(np.mean([row["examples_per_second"] for row in rows])) if rows else None,
        "versions": _versions(tensorflow_version),
        "hardware": _hardware() | {"device": device},
        "threads": {"intra_op": threads[0], "inter_op": threads[1]},
        "attempts": attempts.attempt,
        # Every start of training in this folder: the epoch it started from and the steps it ran.
        "attempt_history": attempts.entries,
        "resumes": attempts.resumes,
    }


def _versions(tensorflow_version: str) -> dict[str, str | None]:
    def installed(distribution: str) -> str | None:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow_version,
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "luigi": installed("luigi"),
    }


def _hardware() -> dict[str, Any]:
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass  # not Linux: keep platform's answer
    return {"cpu_model": cpu_model, "logical_cores": os.cpu_count(), "machine": platform.machine()}
