"""The training loop: one run (settings × seed) → checkpoints, metrics.parquet and run.json.

Determinism: a fresh graph with a graph-level seed, the epoch's data order drawn from (seed, epoch)
alone, fixed thread counts, and the last partial batch of each epoch dropped. A run stopped after any
epoch and resumed therefore ends with bit-identical weights (see tasks.training.checkpoints for kill safety).

Speed: the training split stays resident in the graph (local variables, fed once, never checkpointed);
each epoch assigns its order of rows once, and one Session call runs a chunk of steps in an in-graph
loop that is fed nothing. The loop stops at the first step whose loss is NaN or inf: the run diverged.

run_dir layout: attempts, metrics.parquet, run.json (written last: it marks completion), checkpoints/.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import ConfigError, DataError, TrainingError
from tasks.core.faults import crash_point
from tasks.core.runfiles import METRICS_PARQUET, METRICS_SCHEMA, RUN_JSON
from tasks.core.runs import settings_hash
from tasks.core.storage import (
    atomic_open,
    atomic_path,
    disk_errors_as_storage_errors,
    ensure_dir,
    read_json,
    write_json_atomic,
)
from tasks.data.arrays import load_arrays, load_indices
from tasks.training import checkpoints

ATTEMPTS_FILE = "attempts"
VALIDATION_BATCH = 2000

Progress = Callable[[float, str], None]


def train_run(
    settings: dict,
    seed: int,
    train_arrow: Path,
    split_arrow: Path,
    run_dir: Path,
    *,
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    progress: Progress | None = None,
    stop_after_epochs: int | None = None,
) -> dict:
    """Train (or resume) one run and return its run.json record.

    `stop_after_epochs` is a test hook: return {"status": "stopped", ...} once that many epochs are
    checkpointed, without writing run.json, as a kill after that epoch would.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_hash = settings_hash(settings)
    finished = _finished_record(run_dir, run_hash, seed)
    if finished is not None:
        return finished
    model, epochs, batch_size, optimizer = _read_settings(settings)
    train_images, train_labels, val_images, val_labels = _load_split(Path(train_arrow), Path(split_arrow))
    train_rows = len(train_labels)
    steps = train_rows // batch_size
    if steps == 0:
        raise ConfigError(
            f"training.batch_size: {batch_size} exceeds the {len(train_labels)} training rows of "
            f"{train_arrow}; lower the batch size"
        )
    attempts = _count_attempt(ensure_dir(run_dir))
    checkpoint_dir = ensure_dir(run_dir / checkpoints.CHECKPOINT_DIR)
    latest = checkpoints.read_latest(checkpoint_dir)
    if latest is not None and (latest["run_hash"], latest["seed"]) != (run_hash, seed):
        raise TrainingError(
            f"{checkpoint_dir / checkpoints.LATEST_JSON}: belongs to run {latest['run_hash']} seed "
            f"{latest['seed']}, not {run_hash} seed {seed}; use another run folder or delete this one"
        )
    start_epoch = latest["epoch"] if latest else 0
    checkpoints.clean_checkpoint_dir(checkpoint_dir, start_epoch)
    rows = _reconcile_metrics(run_dir / METRICS_PARQUET, start_epoch)

    from tasks.training.graph import build_training_graph
    from tasks.training.models import export_inference_graph, tf

    meta_path = checkpoint_dir / checkpoints.INFERENCE_META
    with disk_errors_as_storage_errors(meta_path), atomic_path(meta_path, suffix=".meta") as temp:
        inference_variables = export_inference_graph(str(temp), model["name"], model["params"])
    graph = build_training_graph(model, optimizer, seed, train_rows, steps, batch_size)
    if graph.variable_names != inference_variables:
        raise TrainingError(
            f"the inference graph's variables {inference_variables} differ from training's "
            f"{graph.variable_names}; the model builder is not deterministic in its names"
        )
    session_config = tf.ConfigProto(
        intra_op_parallelism_threads=intra_op_threads, inter_op_parallelism_threads=inter_op_threads
    )
    report = progress or (lambda fraction, message: None)
    diverged_at = None
    with tf.Session(graph=graph.graph, config=session_config) as session:
        session.run(graph.init, {graph.images_init: train_images, graph.labels_init: train_labels})
        del train_images, train_labels  # the graph holds its own copy
        if latest is not None:
            graph.restore(session, checkpoint_dir / latest["prefix"], latest["weights_sha256"])
        report(
            start_epoch / epochs,
            f"epoch {start_epoch + 1}/{epochs} starting" + (" (resumed)" if latest else "")
            if start_epoch < epochs
            else f"all {epochs} epochs already checkpointed; writing run.json",
        )
        run_chunk = session.make_callable(graph.run_chunk)
        run_chunk()  # no step yet (see train_graph): builds the executor outside the epoch's timing
        bar = _progress_bar(epochs * steps, start_epoch * steps, run_dir.name)
        for epoch in range(start_epoch + 1, epochs + 1):
            if stop_after_epochs is not None and epoch > stop_after_epochs:
                bar.close()
                return {"status": "stopped", "epochs_completed": epoch - 1, "attempts": attempts}
            row, diverged_at = _run_epoch(
                session, graph, run_chunk, bar, seed, epoch, batch_size, (val_images, val_labels)
            )
            if diverged_at is not None:
                report(1.0, f"diverged: NaN or inf training loss at epoch {epoch}/{epochs}, step {diverged_at['step']}")
                break
            rows.append(row)
            # Order matters for kill safety: metrics, then checkpoint files, then latest.json, then pruning.
            _write_metrics(run_dir / METRICS_PARQUET, rows)
            with disk_errors_as_storage_errors(checkpoint_dir / checkpoints.prefix_name(epoch)):
                latest = graph.save(session, checkpoint_dir, epoch, run_hash, seed)
            checkpoints.clean_checkpoint_dir(checkpoint_dir, epoch)
            report(
                epoch / epochs,
                f"epoch {epoch}/{epochs} · val_acc {row['val_accuracy']:.3f} · {row['examples_per_second']:.0f} ex/s",
            )
        bar.close()
    record = {
        "settings": settings,
        "run_hash": run_hash,
        "seed": seed,
        "status": "diverged" if diverged_at else "completed",
        "diverged_at": diverged_at,
        "epochs_completed": len(rows),
        "final_checkpoint": f"{checkpoints.CHECKPOINT_DIR}/{latest['prefix']}" if latest else None,
        # The weights final_checkpoint holds (None when no epoch completed before a divergence).
        "weights_sha256": latest["weights_sha256"] if latest else None,
        "model_variables": graph.variable_names,
        "train_rows": train_rows,
        "validation_rows": int(len(val_labels)),
        "steps_per_epoch": steps,
        # Training + validation time of the completed epochs, whichever attempt ran them; this call's total
        # (TF import, data load, graph build and restore included) is attempt_wall_seconds.
        "wall_seconds": float(sum(row["wall_seconds"] for row in rows)),
        "attempt_wall_seconds": time.perf_counter() - started,
        "examples_per_second": float(np.mean([row["examples_per_second"] for row in rows])) if rows else None,
        "versions": _versions(tf.__version__),
        "hardware": _hardware(),
        "threads": {"intra_op": intra_op_threads, "inter_op": inter_op_threads},
        "attempts": attempts,
    }
    write_json_atomic(run_dir / RUN_JSON, record)
    return record


def _run_epoch(
    session: Any,
    graph: Any,
    run_chunk: Callable,
    bar: Any,
    seed: int,
    epoch: int,
    batch_size: int,
    validation: tuple[np.ndarray, np.ndarray],
) -> tuple[dict | None, dict | None]:
    """Train one epoch in chunks, then validate: (metrics row, None), or (None, diverged_at) on NaN/inf."""
    started = time.perf_counter()
    steps = int(graph.order_init.shape[0])
    train_rows = int(graph.images_init.shape[0])
    session.run(graph.new_epoch, {graph.order_init: epoch_order(seed, epoch, train_rows, batch_size)})
    done = 0
    while done < steps:
        steps_after, bad_step = run_chunk()
        bar.update(int(steps_after) - done)
        done = int(steps_after)
        crash_point("train.mid-epoch")
        if bad_step >= 0:
            step = int(bad_step) + 1
            return None, {"epoch": epoch, "step": step, "global_step": (epoch - 1) * steps + step}
    train_seconds = time.perf_counter() - started
    loss_sum, correct_sum = session.run([graph.loss_sum, graph.correct_sum])
    val_loss, val_accuracy = _validate(session, graph.inference, *validation)
    return {
        "epoch": epoch,
        "train_loss": float(loss_sum) / steps,  # mean of the batch means (all batches are full)
        "train_accuracy": float(correct_sum) / (steps * batch_size),
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "wall_seconds": time.perf_counter() - started,  # training and validation of this epoch
        "examples_per_second": steps * batch_size / train_seconds,  # training only
    }, None


def epoch_order(seed: int, epoch: int, train_rows: int, batch_size: int) -> np.ndarray:
    """The epoch's batches as [steps, batch_size] row positions: a function of (seed, epoch) alone.

    The last partial batch is dropped, so every step sees a full batch (a fixed shape, and a
    different few rows left out each epoch).
    """
    steps = train_rows // batch_size
    order = np.random.default_rng([seed, epoch]).permutation(train_rows)
    return order[: steps * batch_size].astype(np.int32).reshape(steps, batch_size)


def _finished_record(run_dir: Path, run_hash: str, seed: int) -> dict | None:
    """run.json of this very run if it already finished (then there is nothing to do), else None."""
    path = run_dir / RUN_JSON
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: not readable JSON ({exc}); delete the run folder and rerun TrainRun") from None
    if (record.get("run_hash"), record.get("seed")) != (run_hash, seed):
        raise TrainingError(
            f"{path}: records run {record.get('run_hash')} seed {record.get('seed')}, not "
            f"{run_hash} seed {seed}; use another run folder or delete this one"
        )
    return record


def _read_settings(settings: dict) -> tuple[dict, int, int, dict]:
    """(model {name, params}, epochs, batch_size, optimizer {name, learning_rate, params}) from settings."""

    def field(path: str) -> Any:
        value: Any = settings
        for key in path.split("."):
            if not isinstance(value, dict) or key not in value:
                raise ConfigError(
                    f"run settings: required key {path!r} is missing; build settings with "
                    "tasks.core.config.run_settings"
                )
            value = value[key]
        return value

    model = {"name": field("model.name"), "params": dict(field("model.params"))}
    optimizer = {
        "name": field("optimizer.name"),
        "learning_rate": field("optimizer.learning_rate"),
        "params": dict(field("optimizer.params")),
    }
    epochs, batch_size = field("training.epochs"), field("training.batch_size")
    for key, value in (("training.epochs", epochs), ("training.batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"run settings: {key} must be an integer >= 1, found {value!r}")
    return model, epochs, batch_size, optimizer


def _load_split(train_arrow: Path, split_arrow: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels int32, validation images, validation labels int64).

    Training rows are every row of train.arrow not listed in the split file, in ascending order.
    """
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
    if len(np.unique(validation_rows)) != len(validation_rows):
        raise DataError(f"{split_arrow}: expected distinct row indices, found duplicates; rebuild the split")
    is_training = np.ones(len(labels), dtype=bool)
    is_training[validation_rows] = False
    train_rows = np.flatnonzero(is_training)
    return (
        np.ascontiguousarray(images[train_rows]),
        labels[train_rows].astype(np.int32),
        np.ascontiguousarray(images[validation_rows]),
        labels[validation_rows].astype(np.int64),
    )


def _validate(session: Any, inference: dict, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Example-weighted mean loss and exact accuracy on the validation rows, in large batches."""
    loss_total, correct = 0.0, 0
    for start in range(0, len(labels), VALIDATION_BATCH):
        batch_labels = labels[start : start + VALIDATION_BATCH]
        loss, predictions = session.run(
            [inference["loss"], inference["predictions"]],
            {inference["images"]: images[start : start + VALIDATION_BATCH], inference["labels"]: batch_labels},
        )
        loss_total += float(loss) * len(batch_labels)
        correct += int(np.sum(predictions == batch_labels))
    return loss_total / len(labels), correct / len(labels)


def _write_metrics(path: Path, rows: list[dict]) -> None:
    with atomic_path(path, suffix=".parquet") as temp:
        pq.write_table(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), temp)


def _reconcile_metrics(path: Path, checkpoint_epoch: int) -> list[dict]:
    """The metrics rows of epochs 1..checkpoint_epoch; later rows (a kill before latest.json) are dropped."""
    if not path.exists():
        rows: list[dict] = []
    else:
        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise TrainingError(
                f"{path}: not a readable Parquet file ({exc}); delete the run folder and retrain"
            ) from None
    kept = [row for row in rows if row["epoch"] <= checkpoint_epoch]
    if [row["epoch"] for row in kept] != list(range(1, checkpoint_epoch + 1)):
        raise TrainingError(
            f"{path}: expected rows for epochs 1..{checkpoint_epoch} (the last checkpoint), found "
            f"{[row['epoch'] for row in rows]}; delete the run folder and retrain"
        )
    if len(kept) != len(rows):
        if kept:
            _write_metrics(path, kept)
        else:
            path.unlink()
    return kept


def _count_attempt(run_dir: Path) -> int:
    """Count one more start of train_run in run_dir/attempts; return the new count."""
    path = run_dir / ATTEMPTS_FILE
    try:
        previous = int(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        previous = 0
    except ValueError:
        raise TrainingError(f"{path}: expected an integer count of attempts; delete the file and rerun") from None
    with atomic_open(path, "w") as handle:
        handle.write(f"{previous + 1}\n")
    return previous + 1


def _progress_bar(total: int, initial: int, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        unit="step",
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )


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
