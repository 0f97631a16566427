"""Score one trained run on the test set, and summarise its per-epoch metrics.

A run folder is data, never code: the inference graph is built from the project's model code for the
settings the caller names (no stored graph is imported), and the final checkpoint is restored only when
run.json belongs to the expected run, its files are regular files inside the run folder, and the
restored weights have the sha256 that training recorded. TensorFlow is imported only when a run is
scored, so the metrics helpers here stay cheap for the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.errors import DataError, EvaluationError
from tasks.core.faults import crash_point
from tasks.core.runfiles import (
    EVALUATION_JSON,
    METRICS_PARQUET,
    RUN_JSON,
    RUN_STATUSES,
    checkpoint_problem,
    read_metrics,
)
from tasks.core.runs import RunSettings, settings_hash
from tasks.core.storage import write_json_atomic
from tasks.data.arrays import load_arrays
from tasks.data.dataset import NUM_CLASSES
from tasks.training.runstate import read_settings

EVALUATION_SCHEMA_VERSION = 1


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def summarize_metrics(metrics: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Best (by val_accuracy, ties → earliest) and final epoch of a run's metrics; None without rows."""
    epochs = metrics["epoch"]
    if len(epochs) == 0:
        return None
    val_accuracy = np.asarray(metrics["val_accuracy"], dtype=np.float64)
    # NaN never wins; np.argmax returns the first maximum, which gives "ties → earliest".
    ranked = np.where(np.isfinite(val_accuracy), val_accuracy, -np.inf)
    best = int(np.argmax(ranked))
    return {
        "epochs": int(len(epochs)),
        "best": {
            "epoch": int(epochs[best]),
            "val_accuracy": _finite(val_accuracy[best]),
            "val_loss": _finite(metrics["val_loss"][best]),
        },
        "final": {
            "epoch": int(epochs[-1]),
            "val_accuracy": _finite(val_accuracy[-1]),
            "val_loss": _finite(metrics["val_loss"][-1]),
            "train_loss": _finite(metrics["train_loss"][-1]),
            "train_accuracy": _finite(metrics["train_accuracy"][-1]),
        },
        "seconds_per_epoch": _finite(np.mean(metrics["wall_seconds"])),
    }


def read_run_json(run_dir: Path, run_hash: str, seed: int) -> dict[str, Any]:
    """run.json of a finished run, checked to be the run (run_hash, seed) the caller expects."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise EvaluationError(f"{path}: run record not found; rerun TrainRun for this run")
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: not readable JSON ({exc}); delete the run folder and retrain") from None
    if not isinstance(run, dict) or (run.get("run_hash"), run.get("seed")) != (run_hash, seed):
        found = (run.get("run_hash"), run.get("seed")) if isinstance(run, dict) else type(run).__name__
        raise EvaluationError(
            f"{path}: expected the record of run {run_hash} seed {seed}, found {found}; the folder holds another "
            "run's files: delete the run folder and retrain"
        )
    status = run.get("status")
    if status not in RUN_STATUSES:
        raise EvaluationError(
            f"{path}: expected status one of {list(RUN_STATUSES)}, found {status!r}; "
            "the run did not finish: rerun TrainRun"
        )
    return run


def score_run(
    run_dir: Path,
    test_arrow: Path,
    *,
    settings: RunSettings | Mapping[str, Any],
    run_hash: str,
    seed: int,
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    device: str = "auto",
    batch_size: int = 2000,
    max_misclassified: int = 100,
) -> dict[str, Any]:
    """The evaluation record of run (run_hash, seed): metrics summary plus test-set scores (None when diverged).

    `settings` are the run's settings (tasks.core.config.run_settings); the model is built from them.
    `device` is the `[pipeline] device` setting; the record's `device` is the one scoring used (None: no
    scoring, the run diverged).
    """
    run_dir = Path(run_dir)
    if settings_hash(settings) != run_hash:
        raise EvaluationError(
            f"score_run({run_dir}): the settings given hash to {settings_hash(settings)}, not to the run hash "
            f"{run_hash}; pass the settings of this very run"
        )
    run = read_run_json(run_dir, run_hash, seed)
    result: dict[str, Any] = {
        "schema_version": EVALUATION_SCHEMA_VERSION,
        "run_hash": run_hash,
        "seed": seed,
        "status": run["status"],
        "diverged_at": run.get("diverged_at"),
        "epochs_completed": run.get("epochs_completed"),
        "checkpoint": run.get("final_checkpoint"),
        "metrics": None,
        "test": None,
        "device": None,
    }
    metrics_path = run_dir / METRICS_PARQUET
    # A run that diverged in its first epoch may have no metrics file: nothing to summarise, not an error.
    if metrics_path.exists() or run["status"] != "diverged":
        result["metrics"] = summarize_metrics(read_metrics(metrics_path))
    if run["status"] == "diverged":
        return result  # a diverged run has no trustworthy weights: no test numbers are made up
    final, expected_sha256 = run.get("final_checkpoint"), run.get("weights_sha256")
    if not isinstance(final, str) or not final or not isinstance(expected_sha256, str):
        raise EvaluationError(
            f"{run_dir / RUN_JSON}: status is 'completed' but final_checkpoint ({final!r}) or weights_sha256 "
            f"({expected_sha256!r}) is missing; delete the run folder and retrain"
        )
    problem = checkpoint_problem(run_dir, final)
    if problem is not None:
        # run.json and the checkpoints folder are data: only files the run wrote in place are read.
        raise EvaluationError(
            f"{run_dir / RUN_JSON}: final_checkpoint {problem}; refusing to restore it. Delete the run folder "
            "and retrain"
        )
    if batch_size < 1:
        raise EvaluationError(f"evaluation batch_size must be >= 1, found {batch_size}")
    try:
        images, labels = load_arrays(test_arrow)
    except DataError as exc:
        raise EvaluationError(f"cannot read the test set: {exc}") from None
    if len(labels) == 0:
        raise EvaluationError(f"{test_arrow}: the test set has no rows; rebuild it with PrepareData")
    predictions, loss, result["device"] = _predict(
        read_settings(settings).model,
        run_dir / final,
        expected_sha256,
        images,
        labels,
        batch_size=batch_size,
        threads=(intra_op_threads, inter_op_threads),
        device=device,
    )
    result["test"] = score_predictions(labels, predictions, loss, max_misclassified=max_misclassified)
    return result


def score_predictions(
    labels: np.ndarray, predictions: np.ndarray, loss: float, *, max_misclassified: int
) -> dict[str, Any]:
    """Accuracy, confusion matrix (rows true, columns predicted), per-class accuracy, misclassified rows."""
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if predictions.min(initial=0) < 0 or predictions.max(initial=0) >= NUM_CLASSES:
        raise EvaluationError(
            f"the model predicted classes outside 0-{NUM_CLASSES - 1}; its `predictions:0` tensor is not an argmax "
            "over 10 logits: check the model's output layer"
        )
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    class_counts = confusion.sum(axis=1)
    per_class = [int(confusion[c, c]) / int(class_counts[c]) if class_counts[c] else None for c in range(NUM_CLASSES)]
    wrong = np.flatnonzero(labels != predictions)
    shown = wrong[: max(0, max_misclassified)]
    return {
        "examples": int(len(labels)),
        "loss": _finite(loss),  # JSON has no NaN: a non-finite loss is recorded as null
        "accuracy": float(np.trace(confusion)) / len(labels),
        "class_counts": class_counts.tolist(),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "misclassified_total": int(len(wrong)),
        "misclassified": [
            {"index": int(row), "true": int(labels[row]), "predicted": int(predictions[row])} for row in shown
        ],
    }


def evaluate_run(run_dir: Path, test_arrow: Path, **scoring: Any) -> dict[str, Any]:
    """Score the run (score_run's arguments), then write its evaluation.json last, atomically."""
    result = score_run(run_dir, test_arrow, **scoring)
    crash_point("evaluate.scored")
    write_json_atomic(Path(run_dir) / EVALUATION_JSON, result)
    return result


def _tf_v1():
    from tasks.training.tf1 import tf  # deferred: scheduling and reporting never load TF

    return tf


_TF_BOILERPLATE = ("Graph execution error", "Detected at node", "Node:", "[[", "(most recent call last)")


def _short(exc: BaseException) -> str:
    """The one informative line of a TF error, without its node dump, for our own message."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not any(marker in line for marker in _TF_BOILERPLATE)]
    return f"{type(exc).__name__}: {useful[0][:300] if useful else 'no detail'}"


def _predict(
    model: dict,
    checkpoint: Path,
    expected_sha256: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    threads: tuple[int, int],
    device: str,
) -> tuple[np.ndarray, float, str]:
    """Predictions for every row, the example-weighted mean loss, and the device used, from the model built by code."""
    from tasks.training.checkpoints import weights_sha256
    from tasks.training.devices import session_config
    from tasks.training.models import inference_path

    tf = _tf_v1()
    config, used_device = session_config(device, *threads)  # `gpu` without one: refused before the graph is built
    graph = tf.Graph()
    with graph.as_default():
        # The initial weights are never used (the checkpoint replaces them), but under op determinism (GPU
        # sessions) TensorFlow refuses to build an unseeded random initializer at all.
        tf.set_random_seed(0)
        inference = inference_path(model["name"], model["params"], reuse=False)
        variables = tf.global_variables()
        saver = tf.train.Saver(variables)  # reads only the model's variables from a training checkpoint
    graph.finalize()
    predictions = np.empty(len(labels), dtype=np.int64)
    loss_sum = 0.0
    with tf.Session(graph=graph, config=config) as session:
        try:
            saver.restore(session, str(checkpoint))
        except (tf.errors.OpError, ValueError) as exc:
            raise EvaluationError(
                f"{checkpoint}: checkpoint does not restore into the {model['name']!r} model of the run's settings "
                f"({_short(exc)}); it is corrupt or from another model: delete the run folder and retrain"
            ) from None
        found = weights_sha256(dict(zip((variable.op.name for variable in variables), session.run(variables))))
        if found != expected_sha256:
            raise EvaluationError(
                f"{checkpoint}: restored weights have sha256 {found}, run.json records {expected_sha256}; the "
                "checkpoint is not the one this run saved (copied from another run, or corrupt): delete the run "
                "folder and retrain"
            )
        for start in range(0, len(labels), batch_size):
            stop = min(start + batch_size, len(labels))
            feed = {
                inference["images"]: np.asarray(images[start:stop]),
                inference["labels"]: np.asarray(labels[start:stop], dtype=np.int64),
            }
            batch_predictions, batch_loss = session.run([inference["predictions"], inference["loss"]], feed)
            predictions[start:stop] = np.asarray(batch_predictions).reshape(-1)
            # `loss` is a batch mean; weighting by batch size makes the total an exact per-example mean.
            loss_sum += float(batch_loss) * (stop - start)
    return predictions, loss_sum / len(labels), used_device
