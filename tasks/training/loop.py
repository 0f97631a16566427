"""The training loop: one run (settings × seed) → checkpoints, metrics.parquet and run.json.

Determinism: a fresh graph with a graph-level seed, the epoch's data order drawn from (seed, epoch)
alone, fixed thread counts, and the last partial batch of each epoch dropped. A run stopped after any
epoch and resumed therefore ends with bit-identical weights (see tasks.training.checkpoints for kill safety).

Speed: train.arrow stays resident in the graph (local variables, fed once straight from its memory map,
never checkpointed); each epoch assigns its order of training rows once, and one Session call runs a
chunk of steps in an in-graph loop that is fed nothing. The loop stops at the first step whose loss is
NaN or inf: the run diverged.

run_dir layout: attempts.json, metrics.parquet, run.json (written last: it marks completion), checkpoints/, and
TensorBoard's event file, rebuilt from metrics.parquet when an attempt starts and at each epoch end
(tasks.training.events).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.core.errors import ConfigError, PluginFault, TrainingError
from tasks.core.faults import crash_point
from tasks.core.runfolder import FAILED, RunFolder, prefix_name
from tasks.core.runs import RunSettings
from tasks.core.storage import disk_errors_as_storage_errors, ensure_dir, write_json_atomic
from tasks.training import TF_MODULE, checkpoints
from tasks.training.events import sync_events
from tasks.training.progress import RunProgress
from tasks.training.record import run_record
from tasks.training.runstate import ResumeState, SplitArrays, finished_record, load_split, prepare_resume, write_metrics

if TYPE_CHECKING:
    from tasks.training.graph import TrainingGraph

VALIDATION_BATCH = 2000
log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


def train_run(
    settings: RunSettings | Mapping[str, Any],
    seed: int,
    train_arrow: Path,
    split_arrow: Path,
    run_dir: Path,
    *,
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    device: str = "auto",
    progress: Progress | None = None,
    until_epoch: int | None = None,
) -> dict:
    """Train, resume or repair one run and return its run.json record.

    `until_epoch` (successive halving, tasks.training.tuning): stop after that epoch's checkpoint, write no
    run.json, and return {"stopped_at_epoch": n}; a later call without it resumes there, bit for bit.

    `settings` are validated here once (a RunSettings, or its plain form). A finished run whose files are all
    there is returned as it is. Otherwise: read the data, check the device (`device` is the `[pipeline] device`
    setting: auto, cpu or gpu), prepare the folder for the last whole epoch (refusing a folder of another run
    before changing anything), build the graph, train the remaining epochs, and write run.json last.
    """
    started = time.perf_counter()
    tensorflow_inherited = TF_MODULE in sys.modules
    settings = settings if isinstance(settings, RunSettings) else RunSettings.parse(settings)
    folder = RunFolder(Path(run_dir), settings.run_hash, seed)
    finished, repair = finished_record(folder)
    if finished is not None:
        return dict(finished.data)
    split = load_split(Path(train_arrow), Path(split_arrow))
    batch_size = settings.training.batch_size
    train_rows, validation_rows = len(split.train_rows), len(split.val_rows)
    steps = train_rows // batch_size
    if steps == 0:
        raise ConfigError(
            f"training.batch_size: {batch_size} exceeds the {train_rows} training rows of "
            f"{train_arrow}; lower the batch size"
        )
    try:  # a schedule's steps must lie inside the budget, known only now that the rows are counted
        settings.optimizer.schedule.check_budget(settings.training.total_steps(steps))
    except ValueError as exc:
        raise ConfigError(
            f"optimizer {settings.optimizer.name!r} of {folder.path}: {exc} "
            f"({train_rows} training rows // batch {batch_size} = {steps} steps per epoch)"
        ) from None
    from tasks.training.devices import session_config  # TensorFlow loads here
    from tasks.training.graph import build_training_graph
    from tasks.training.tf1 import tf

    # Before the folder is touched: `gpu` on a host without one is refused here, having written nothing.
    config, used_device = session_config(device, intra_op_threads, inter_op_threads)
    ensure_dir(folder.path)
    state = prepare_resume(folder, settings.training.total_epochs(steps), repair)
    sync_events(folder, settings.as_dict())  # TensorBoard's file holds exactly the epochs this attempt keeps

    def finish(outcome: EpochsOutcome, variables: list[str], **extra: Any) -> dict:
        """Write run.json, last: the run's record, with `extra` keys over it (a failed run's status)."""
        record = (
            run_record(
                settings.as_dict(),
                settings.run_hash,
                seed,
                split_rows=(train_rows, validation_rows),
                steps_per_epoch=steps,
                rows=outcome.rows,
                latest=outcome.latest,
                diverged_at=outcome.diverged_at,
                model_variables=variables,
                attempts=state.attempts,
                attempt_wall_seconds=time.perf_counter() - started,
                threads=(intra_op_threads, inter_op_threads),
                device=used_device,
                tensorflow_version=tf.__version__,
                tensorflow_inherited=tensorflow_inherited,
            )
            | extra
        )
        write_json_atomic(folder.run_json, record)
        return record

    try:
        graph = build_training_graph(
            settings.model,
            settings.optimizer,
            seed,
            len(split.labels),
            steps,
            batch_size,
            total_steps=settings.training.total_steps(steps),
        )
    except PluginFault as fault:
        if state.start_epoch:  # it trained before: not the code's own failure; the task fails, a rerun retries
            raise
        log.error("%s: %s", folder.path, fault)
        return finish(EpochsOutcome([], None, None), [], status=FAILED, failure=str(fault))
    with tf.Session(graph=graph.graph, config=config) as session:
        outcome = _train_epochs(
            session, graph, state, split, settings, seed, progress or (lambda fraction, message: None), until_epoch
        )
    last_epoch = outcome.rows[-1]["epoch"] if outcome.rows else 0
    if outcome.diverged_at is None and last_epoch < settings.training.total_epochs(steps):
        return {"stopped_at_epoch": last_epoch}
    return finish(outcome, graph.variable_names)


@dataclass
class EpochsOutcome:
    """All metrics rows so far, the latest.json of the last checkpoint (None: none), where it diverged."""

    rows: list[dict]
    latest: dict | None
    diverged_at: dict | None


def _train_epochs(
    session: Any,
    graph: TrainingGraph,
    state: ResumeState,
    split: SplitArrays,
    settings: RunSettings,
    seed: int,
    report: Progress,
    until_epoch: int | None = None,
) -> EpochsOutcome:
    """Restore the resume point, then train, validate and checkpoint each remaining epoch (up to `until_epoch`)."""
    steps = graph.steps_per_epoch
    epochs, total_steps = settings.training.total_epochs(steps), settings.training.total_steps(steps)
    last = epochs if until_epoch is None else min(until_epoch, epochs)
    rows, latest, diverged_at = list(state.rows), state.latest, None
    first_step = _start_session(session, graph, state, split, settings)
    report(
        state.start_epoch / epochs,
        f"epoch {state.start_epoch + 1}/{epochs} starting" + (" (resumed)" if latest else "")
        if state.start_epoch < epochs
        else f"all {epochs} epochs already checkpointed; writing run.json",
    )
    run_chunk = session.make_callable(graph.run_chunk)
    run_chunk()  # no step yet (see train_graph): builds the executor outside the epoch's timing
    label = f"{state.run_dir.parent.name}/{state.run_dir.name}"
    with RunProgress(label, total_steps, min(state.start_epoch * steps, total_steps)) as bar:
        for epoch in range(state.start_epoch + 1, last + 1):
            row, diverged_at = _run_epoch(session, graph, run_chunk, bar, seed, epoch, settings, split)
            if diverged_at is not None:
                report(1.0, f"diverged: NaN or inf training loss at epoch {epoch}/{epochs}, step {diverged_at['step']}")
                break
            rows.append(row)
            latest = _checkpoint_epoch(session, graph, state, rows, epoch, seed)
            sync_events(state.folder, settings.as_dict())
            state.attempts.record_steps(int(session.run(graph.global_step)) - first_step)
            message = (
                f"epoch {epoch}/{epochs} · val_acc {row['val_accuracy']:.3f} · {row['examples_per_second']:,.0f} ex/s"
            )
            report(epoch / epochs, message)
            bar.epoch(message)
            crash_point("train.epoch-done")
    # Counted from the graph, so a diverged epoch's steps count too, and a resume shows the steps it skipped.
    state.attempts.record_steps(int(session.run(graph.global_step)) - first_step)
    return EpochsOutcome(rows, latest, diverged_at)


def _start_session(
    session: Any, graph: TrainingGraph, state: ResumeState, split: SplitArrays, settings: RunSettings
) -> int:
    """Initialise the graph (resident data fed once), restore the resume point; the global step it starts at."""
    session.run(graph.init, {graph.images_init: split.images, graph.labels_init: split.labels})
    split.images = split.labels = None  # the graph holds its own copy: drop our map
    latest = state.latest
    if latest is not None:
        graph.restore(session, state.checkpoint_dir / latest["prefix"], latest["weights_sha256"], settings.model)
    first_step = int(session.run(graph.global_step))
    expected = min(state.start_epoch * graph.steps_per_epoch, settings.training.total_steps(graph.steps_per_epoch))
    if latest is not None and first_step != expected:
        raise TrainingError(
            f"{state.checkpoint_dir / latest['prefix']}: restored global step {first_step}, expected "
            f"{state.start_epoch} epochs × {graph.steps_per_epoch} steps; the checkpoint is not this run's: delete "
            "the run folder and retrain"
        )
    return first_step


def _checkpoint_epoch(
    session: Any, graph: TrainingGraph, state: ResumeState, rows: list[dict], epoch: int, seed: int
) -> dict:
    """Write the epoch's metrics and checkpoint in the order kill safety needs: metrics, then the checkpoint's
    files, then latest.json, then pruning. Returns the new latest.json."""
    write_metrics(state.folder.metrics_path, rows)
    with disk_errors_as_storage_errors(state.checkpoint_dir / prefix_name(epoch)):
        latest = graph.save(session, state.checkpoint_dir, epoch, state.folder.run_hash, seed)
    checkpoints.clean_checkpoint_dir(state.checkpoint_dir, epoch)
    return latest


def _run_epoch(
    session: Any,
    graph: TrainingGraph,
    run_chunk: Callable,
    bar: Any,
    seed: int,
    epoch: int,
    settings: RunSettings,
    split: SplitArrays,
) -> tuple[dict | None, dict | None]:
    """Train one epoch in chunks, then validate: (metrics row, None), or (None, diverged_at) on NaN/inf."""
    started = time.perf_counter()
    batch_size, per_epoch = settings.training.batch_size, graph.steps_per_epoch
    # A step budget's last epoch is partial: it stops at the budget's step (the same order's first batches).
    steps = min(per_epoch, settings.training.total_steps(per_epoch) - (epoch - 1) * per_epoch)
    if steps < per_epoch:
        limit = graph.graph.get_tensor_by_name("train/epoch_limit:0")
        run_chunk = session.make_callable(graph.run_chunk, feed_list=[limit])
        run_chunk = functools.partial(run_chunk, steps)
    # The epoch's order of training rows, as positions among all rows of train.arrow.
    order = split.train_rows[epoch_order(seed, epoch, len(split.train_rows), batch_size)]
    session.run(graph.new_epoch, {graph.order_init: order})
    done = 0
    while done < steps:
        steps_after, bad_step = run_chunk()
        bar.advance(int(steps_after) - done)
        done = int(steps_after)
        crash_point("train.mid-epoch")
        if bad_step >= 0:
            step = int(bad_step) + 1
            return None, {"epoch": epoch, "step": step, "global_step": (epoch - 1) * per_epoch + step}
    train_seconds = time.perf_counter() - started
    loss_sum, correct_sum = session.run([graph.loss_sum, graph.correct_sum])
    val_loss, val_accuracy = _validate(session, graph.validation, split.val_rows, split.val_labels)
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


def _validate(session: Any, validation: dict, rows: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Example-weighted mean loss and exact accuracy on the validation rows, in large batches."""
    loss_total, correct = 0.0, 0
    for start in range(0, len(labels), VALIDATION_BATCH):
        batch_labels = labels[start : start + VALIDATION_BATCH]
        loss, predictions = session.run(
            [validation["loss"], validation["predictions"]],
            {validation["rows"]: rows[start : start + VALIDATION_BATCH]},
        )
        loss_total += float(loss) * len(batch_labels)
        correct += int(np.sum(predictions == batch_labels))
    return loss_total / len(labels), correct / len(labels)
