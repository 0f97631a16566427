"""The training graph of one run, and saving/restoring its state by checkpoint.

Built in a fresh `tf.Graph` with the run's graph-level seed, always in the same order (so a resumed run
builds the very same graph and initial values before restoring). What it holds:

- local variables, never checkpointed: every row of train.arrow (uint8 images, int32 labels), fed once
  per session straight from the memory map; the epoch's order of training rows [steps, batch], as
  positions in it; running sums of the epoch's batch losses and correct counts;
- global variables, all checkpointed: the model (under `model/`), the optimizer's slots, the global step;
- a chunk of training steps in a while loop, fed nothing (an in-graph counter picks each step's rows);
- validation on the same variables: fed positions of validation rows, gathered from the resident rows
  (so the validation images are never copied out of the map either);
- the named inference path (`images` → `loss`, ...) on the same variables, as evaluation builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.config import ModelConfig
from tasks.core.errors import TrainingError
from tasks.core.runfolder import LATEST_JSON, prefix_name
from tasks.core.runs import OptimizerSettings
from tasks.data.dataset import IMAGE_PIXELS
from tasks.training import CHUNK_STEPS, checkpoints
from tasks.training.models import MODEL_SCOPE, build_model, classification_head, inference_path, scale_images
from tasks.training.optimizers import make_optimizer
from tasks.training.schedules import ScheduledRate
from tasks.training.tf1 import tf


@dataclass
class TrainingGraph:
    """Handles on the graph's tensors and ops; see `build_training_graph`."""

    graph: Any
    init: Any
    images_init: Any
    labels_init: Any
    order_init: Any
    new_epoch: Any
    validation: dict  # `rows` (int32 positions, fed) → `loss`, `predictions`
    run_chunk: list  # fetch → [steps done in the epoch, 0-based step of a NaN/inf loss or -1]
    loss_sum: Any
    correct_sum: Any
    model_variables: list
    saver: Any
    global_step: Any  # steps run since the run began, restored with the checkpoint

    @property
    def steps_per_epoch(self) -> int:
        return int(self.order_init.shape[0])

    @property
    def variable_names(self) -> list[str]:
        return sorted(variable.op.name for variable in self.model_variables)

    def weights(self, session: Any) -> dict[str, Any]:
        values = session.run(self.model_variables)
        return {variable.op.name: value for variable, value in zip(self.model_variables, values)}

    def save(self, session: Any, checkpoint_dir: Path, epoch: int, run_hash: str, seed: int) -> dict:
        """Save the epoch's checkpoint; only after the save returned, point latest.json at it."""
        prefix = prefix_name(epoch)
        # write_state=False: TF's own `checkpoint` file is not kept; latest.json is the only pointer.
        self.saver.save(session, str(Path(checkpoint_dir) / prefix), write_meta_graph=False, write_state=False)
        record = {
            "epoch": epoch,
            "prefix": prefix,
            "weights_sha256": checkpoints.weights_sha256(self.weights(session)),
            "variables": self.variable_names,
            "run_hash": run_hash,
            "seed": seed,
        }
        checkpoints.write_latest(checkpoint_dir, record)
        return record

    def restore(self, session: Any, prefix: Path, expected_sha256: str, model: ModelConfig) -> None:
        """Restore model, optimizer state and global step; check the weights against latest.json."""
        checkpoints.restore_verified(
            session,
            self.saver,
            self.model_variables,
            prefix,
            expected_sha256,
            model=model,
            recorded_in=LATEST_JSON,
            error=TrainingError,
        )


@dataclass
class _Data:
    """The resident data and the epoch's bookkeeping: local variables, never checkpointed."""

    images_init: Any
    labels_init: Any
    order_init: Any
    images: Any
    labels: Any
    order: Any
    loss_sum: Any
    correct_sum: Any
    step_in_epoch: Any


def build_training_graph(
    model: ModelConfig,
    optimizer: OptimizerSettings,
    seed: int,
    data_rows: int,
    steps: int,
    batch_size: int,
    chunk_steps: int | None = None,
    total_steps: int | None = None,
) -> TrainingGraph:
    """The graph of one run. `data_rows` is the number of rows of train.arrow (training and validation rows).

    One call of `run_chunk` runs up to `chunk_steps` steps in an in-graph while loop; the result is
    bit-identical to one step per call (a test checks it), only faster. The pieces are built in a fixed
    order: the graph-level seed gives each random op its seed by creation order, so the order is the weights.
    `total_steps`, the run's budget in steps, is required with a schedule (a cosine one spans it).
    """
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        data = _data_variables(data_rows, steps, batch_size)
        global_step = tf.train.get_or_create_global_step()
        # The inference path creates the model variables; the training loop below reuses them, so that no
        # variable is created inside the while loop (the optimizer's slots are made outside it, too).
        inference_path(model, reuse=False)
        model_variables = tf.trainable_variables()
        validation = _validation(model, data)
        rate = None
        if not optimizer.schedule.is_constant:
            if total_steps is None:
                raise TrainingError("build_training_graph: a scheduled run needs total_steps, its budget in steps")
            rate = ScheduledRate(optimizer.schedule, optimizer.learning_rate, total_steps)
        tf_optimizer = make_optimizer(optimizer, rate)
        run_chunk = _chunk_loop(model, data, tf_optimizer, model_variables, global_step, steps, chunk_steps, rate)
        new_epoch = _epoch_reset(data)
        # Only global variables: model, optimizer slots and step. The resident data is rebuilt from the arrays.
        saver = tf.train.Saver(tf.global_variables(), max_to_keep=None, save_relative_paths=True)
        init = tf.group(tf.global_variables_initializer(), tf.local_variables_initializer())
    graph.finalize()
    return TrainingGraph(
        graph=graph,
        init=init,
        images_init=data.images_init,
        labels_init=data.labels_init,
        order_init=data.order_init,
        new_epoch=new_epoch,
        validation=validation,
        run_chunk=run_chunk,
        loss_sum=data.loss_sum,
        correct_sum=data.correct_sum,
        model_variables=model_variables,
        saver=saver,
        global_step=global_step,
    )


def _data_variables(data_rows: int, steps: int, batch_size: int) -> _Data:
    """Every row of train.arrow (fed once per session), the epoch's order of rows and its running sums."""
    local = [tf.GraphKeys.LOCAL_VARIABLES]
    with tf.name_scope("data"):
        images_init = tf.placeholder(tf.uint8, [data_rows, IMAGE_PIXELS], name="images_init")
        labels_init = tf.placeholder(tf.int32, [data_rows], name="labels_init")
        order_init = tf.placeholder(tf.int32, [steps, batch_size], name="order_init")
        images = tf.Variable(images_init, trainable=False, collections=local, name="train_images")
        labels = tf.Variable(labels_init, trainable=False, collections=local, name="train_labels")
        order = tf.Variable(tf.zeros([steps, batch_size], tf.int32), trainable=False, collections=local, name="order")
        loss_sum = tf.Variable(tf.zeros([], tf.float64), trainable=False, collections=local, name="loss_sum")
        correct_sum = tf.Variable(tf.zeros([], tf.int64), trainable=False, collections=local, name="correct_sum")
        # The step within the epoch lives in the graph, so a call feeds nothing.
        # Starts at `steps` ("no epoch in progress"), so a first call runs no step: a warm-up.
        step_in_epoch = tf.Variable(
            tf.constant(steps, tf.int32), trainable=False, collections=local, name="step_in_epoch"
        )
    return _Data(images_init, labels_init, order_init, images, labels, order, loss_sum, correct_sum, step_in_epoch)


def _validation(model: ModelConfig, data: _Data) -> dict:
    """Loss and predictions on validation rows given by position, gathered from the resident rows."""
    with tf.name_scope("validation"):
        rows = tf.placeholder(tf.int32, [None], name="rows")
        with tf.variable_scope(MODEL_SCOPE, reuse=True):
            logits = build_model(model, scale_images(tf.gather(data.images, rows)))
        labels = tf.cast(tf.gather(data.labels, rows), tf.int64)
        head = classification_head(logits, labels)
        return {"rows": rows, "loss": head["loss"], "predictions": head["predictions"]}


def _chunk_loop(
    model: ModelConfig,
    data: _Data,
    tf_optimizer: Any,
    model_variables: list,
    global_step: Any,
    steps: int,
    chunk_steps: int | None,
    rate: ScheduledRate | None = None,
) -> list:
    """Up to chunk_steps training steps in a while loop; it stops right after a step whose loss is NaN or inf.

    With a schedule, `rate` is told each step's global step (the chunk's first plus the steps run in it)
    before the update is built, so the optimizer's _prepare reads that step's rate inside the loop.
    """
    chunk_steps = chunk_steps or CHUNK_STEPS

    def one_step(step: Any, finite: Any) -> tuple[Any, Any]:
        if rate is not None:
            rate.at_step = chunk_first_step + tf.cast(step - start, tf.int64)
        rows = tf.gather(data.order, step)
        batch_images = scale_images(tf.gather(data.images, rows))
        batch_labels = tf.gather(data.labels, rows)
        with tf.variable_scope(MODEL_SCOPE, reuse=True):
            logits = build_model(model, batch_images)
        head = classification_head(logits, batch_labels)
        minimize = tf_optimizer.minimize(head["loss"], var_list=model_variables)
        accumulate = [
            tf.assign_add(data.loss_sum, tf.cast(head["loss"], tf.float64)),
            tf.assign_add(data.correct_sum, head["correct_count"]),
        ]
        # Every loop variable waits for this step's update, so the next iteration reads updated weights.
        with tf.control_dependencies([minimize] + accumulate):
            return step + 1, tf.is_finite(head["loss"])

    with tf.name_scope("train"):
        start = tf.identity(data.step_in_epoch)
        # Read before the loop, like `start`: the global step advances only after it.
        chunk_first_step = tf.cast(global_step, tf.int64) if rate is not None else None
        # A step budget's final partial epoch feeds its length here; unfed, an epoch runs all its steps.
        epoch_limit = tf.placeholder_with_default(tf.constant(steps, tf.int32), [], name="epoch_limit")
        stop = tf.minimum(start + chunk_steps, tf.minimum(epoch_limit, steps))
        step_after, finite = tf.while_loop(
            lambda step, finite: tf.logical_and(step < stop, finite),
            one_step,
            [start, tf.constant(True)],
            parallel_iterations=1,
            back_prop=False,
        )
        first_bad = tf.where_v2(finite, -1, step_after - 1)
        # The global step advances once per call, by the steps the call ran (the bad one included).
        # `start` aliases the ref variable step_in_epoch, so it is used up before that is overwritten.
        ran = step_after - start
        with tf.control_dependencies([ran]):
            advance = [
                tf.assign(data.step_in_epoch, step_after),
                tf.assign_add(global_step, tf.cast(ran, global_step.dtype)),
            ]
        with tf.control_dependencies(advance):
            return [tf.identity(step_after), tf.identity(first_bad)]


def _epoch_reset(data: _Data) -> Any:
    """Assign the epoch's order of rows and zero its step counter and running sums."""
    with tf.name_scope("epoch"):
        return tf.group(
            tf.assign(data.order, data.order_init),
            tf.assign(data.step_in_epoch, tf.zeros([], tf.int32)),
            tf.assign(data.loss_sum, tf.zeros([], tf.float64)),
            tf.assign(data.correct_sum, tf.zeros([], tf.int64)),
        )
