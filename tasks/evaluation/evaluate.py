"""Score one trained run on the test set, and summarise its per-epoch metrics.

A run folder is data, never code: the inference graph is built from the project's model code for the
settings the caller names (no stored graph is imported), and the final checkpoint is restored only when
run.json belongs to the expected run, its files are regular files inside the run folder, and the
restored weights have the sha256 that training recorded. TensorFlow is imported only when a run is
scored, so the metrics helpers here stay cheap for the report.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.config import ModelConfig
from tasks.core.errors import DataError, EvaluationError, RunFolderError
from tasks.core.faults import crash_point
from tasks.core.runfolder import EVALUATION_SCHEMA_VERSION, PREDICTIONS_PARQUET, RunFolder, RunRecord
from tasks.core.runs import RunSettings
from tasks.core.runtables import encode_predictions
from tasks.core.storage import write_bytes_atomic, write_json_atomic
from tasks.data.arrays import load_arrays
from tasks.data.dataset import NUM_CLASSES
from tasks.training.events import sync_events


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


def score_run(run_dir: Path, test_arrow: Path, **scoring: Any) -> dict[str, Any]:
    """The evaluation record of one run, without writing anything (arguments: see `_score`)."""
    return _score(run_dir, test_arrow, **scoring)[0]


def _score(
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
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The evaluation record of run (run_hash, seed) — metrics summary plus test-set scores (None when
    diverged) — and its per-example predictions (None for a diverged run).

    `settings` are the run's settings (tasks.core.runs.run_settings); the model is built from them.
    `device` is the `[pipeline] device` setting; the record's `device` is the one scoring used (None: no
    scoring, the run diverged).
    """
    settings = settings if isinstance(settings, RunSettings) else RunSettings.parse(settings)
    if settings.run_hash != run_hash:
        raise EvaluationError(
            f"score_run({run_dir}): the settings given hash to {settings.run_hash}, not to the run hash "
            f"{run_hash}; pass the settings of this very run"
        )
    if batch_size < 1:
        raise EvaluationError(f"evaluation batch_size must be >= 1, found {batch_size}")
    folder = RunFolder(Path(run_dir), run_hash, seed)
    run = _finished_run(folder)
    result: dict[str, Any] = {
        "schema_version": EVALUATION_SCHEMA_VERSION,
        "run_hash": run_hash,
        "seed": seed,
        "status": run.status,
        "diverged_at": run.get("diverged_at"),
        "epochs_completed": run.epochs_completed,
        "checkpoint": run.final_checkpoint,
        "metrics": None,
        "test": None,
        "device": None,
    }
    if run.get("failure") is not None:
        result["failure"] = run.get("failure")
    # A run that diverged in its first epoch, or failed, may have no metrics file: nothing to summarise.
    if folder.metrics_path.exists() or run.has_result:
        result["metrics"] = summarize_metrics(folder.metrics())
    if not run.has_result:
        return result, None  # no trustworthy weights (diverged) or none at all (failed): no test numbers
    images, labels = _test_set(Path(test_arrow))
    predictions, loss, result["device"] = _predict(
        settings.model,
        folder.path / run.final_checkpoint,
        run.weights_sha256,
        images,
        labels,
        batch_size=batch_size,
        threads=(intra_op_threads, inter_op_threads),
        device=device,
    )
    result["test"] = score_predictions(labels, predictions, loss, max_misclassified=max_misclassified)
    return result, predictions


def _finished_run(folder: RunFolder) -> RunRecord:
    """run.json of the finished run the folder must hold; only files the run wrote in place are restored."""
    try:
        return folder.record()
    except RunFolderError as exc:
        raise EvaluationError(
            f"{exc}; refusing to restore or score it: rerun TrainRun, or delete the run folder and retrain"
        ) from None


def _test_set(test_arrow: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        images, labels = load_arrays(test_arrow)
    except DataError as exc:
        raise EvaluationError(f"cannot read the test set: {exc}") from None
    if len(labels) == 0:
        raise EvaluationError(f"{test_arrow}: the test set has no rows; rebuild it with PrepareData")
    return images, labels


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
    """Score the run (score_run's arguments), write its per-example predictions and TensorBoard's test numbers,
    then its evaluation.json last, atomically; evaluation.json records the predictions' sha256, so a changed file
    is never believed."""
    result, predictions = _score(run_dir, test_arrow, **scoring)
    crash_point("evaluate.scored")
    folder = RunFolder(Path(run_dir), scoring["run_hash"], scoring["seed"])
    if predictions is not None:
        encoded = encode_predictions(predictions)
        write_bytes_atomic(folder.predictions_path, encoded)
        result["predictions"] = {
            "file": PREDICTIONS_PARQUET,
            "rows": int(len(predictions)),
            "sha256": hashlib.sha256(encoded).hexdigest(),
        }
    settings = scoring["settings"]
    # TensorBoard's file gains the test numbers before evaluation.json is written: a kill in between leaves the
    # run unevaluated, so the rerun sweeps the folder and writes both again.
    sync_events(folder, settings.as_dict() if isinstance(settings, RunSettings) else settings, test=result["test"])
    write_json_atomic(folder.evaluation_json, result)
    return result


def _predict(
    model: ModelConfig,
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
    from tasks.training.checkpoints import restore_verified
    from tasks.training.devices import session_config
    from tasks.training.models import inference_path
    from tasks.training.tf1 import tf  # deferred: scheduling and reporting never load TF

    config, used_device = session_config(device, *threads)  # `gpu` without one: refused before the graph is built
    graph = tf.Graph()
    with graph.as_default():
        # The initial weights are never used (the checkpoint replaces them), but under op determinism (GPU
        # sessions) TensorFlow refuses to build an unseeded random initializer at all.
        tf.set_random_seed(0)
        inference = inference_path(model, reuse=False)
        variables = tf.global_variables()
        saver = tf.train.Saver(variables)  # reads only the model's variables from a training checkpoint
    graph.finalize()
    predictions = np.empty(len(labels), dtype=np.int64)
    loss_sum = 0.0
    with tf.Session(graph=graph, config=config) as session:
        restore_verified(
            session,
            saver,
            variables,
            checkpoint,
            expected_sha256,
            model=model,
            recorded_in="run.json",
            error=EvaluationError,
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
