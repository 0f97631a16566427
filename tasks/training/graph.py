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

from tasks.core.errors import TrainingError
from tasks.data.dataset import IMAGE_PIXELS
from tasks.training import CHUNK_STEPS, checkpoints
from tasks.training.models import MODEL_SCOPE, build_model, classification_head, inference_path, scale_images
from tasks.training.optimizers import make_optimizer
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
    def variable_names(self) -> list[str]:
        return sorted(variable.op.name for variable in self.model_variables)

    def weights(self, session: Any) -> dict[str, Any]:
        values = session.run(self.model_variables)
        return {variable.op.name: value for variable, value in zip(self.model_variables, values)}

    def save(self, session: Any, checkpoint_dir: Path, epoch: int, run_hash: str, seed: int) -> dict:
        """Save the epoch's checkpoint; only after the save returned, point latest.json at it."""
        prefix = checkpoints.prefix_name(epoch)
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

    def restore(self, session: Any, prefix: Path, expected_sha256: str) -> None:
        """Restore model, optimizer state and global step; check the weights against latest.json."""
        try:
            self.saver.restore(session, str(prefix))
        except (tf.errors.OpError, ValueError) as exc:
            message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0][:300]
            raise TrainingError(
                f"{prefix}: checkpoint named by latest.json does not restore ({message}); "
                "delete the run folder and retrain"
            ) from None
        found = checkpoints.weights_sha256(self.weights(session))
        if found != expected_sha256:
            raise TrainingError(
                f"{prefix}: restored weights have sha256 {found}, latest.json expects "
                f"{expected_sha256}; the checkpoint is corrupt: delete the run folder and retrain"
            )


def build_training_graph(
    model: dict,
    optimizer: dict,
    seed: int,
    data_rows: int,
    steps: int,
    batch_size: int,
    chunk_steps: int | None = None,
) -> TrainingGraph:
    """The graph of one run: `model` is {name, params}, `optimizer` is {name, learning_rate, params}.

    `data_rows` is the number of rows of train.arrow (training and validation rows together).

    One call of `run_chunk` runs up to `chunk_steps` steps in an in-graph while loop; the result is
    bit-identical to one step per call (a test checks it), only faster.
    """
    chunk_steps = chunk_steps or CHUNK_STEPS
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        local = [tf.GraphKeys.LOCAL_VARIABLES]
        with tf.name_scope("data"):
            images_init = tf.placeholder(tf.uint8, [data_rows, IMAGE_PIXELS], name="images_init")
            labels_init = tf.placeholder(tf.int32, [data_rows], name="labels_init")
            order_init = tf.placeholder(tf.int32, [steps, batch_size], name="order_init")
            train_images = tf.Variable(images_init, trainable=False, collections=local, name="train_images")
            train_labels = tf.Variable(labels_init, trainable=False, collections=local, name="train_labels")
            order = tf.Variable(
                tf.zeros([steps, batch_size], tf.int32), trainable=False, collections=local, name="order"
            )
            loss_sum = tf.Variable(tf.zeros([], tf.float64), trainable=False, collections=local, name="loss_sum")
            correct_sum = tf.Variable(tf.zeros([], tf.int64), trainable=False, collections=local, name="correct_sum")
            # The step within the epoch lives in the graph, so a call feeds nothing.
            # Starts at `steps` ("no epoch in progress"), so a first call runs no step: a warm-up.
            step_in_epoch = tf.Variable(
                tf.constant(steps, tf.int32), trainable=False, collections=local, name="step_in_epoch"
            )
        global_step = tf.train.get_or_create_global_step()
        # The inference path creates the model variables; the training loop below reuses them, so that no
        # variable is created inside the while loop (the optimizer's slots are made outside it, too).
        inference_path(model["name"], model["params"], reuse=False)
        model_variables = tf.trainable_variables()
        with tf.name_scope("validation"):
            validation_rows = tf.placeholder(tf.int32, [None], name="rows")
            with tf.variable_scope(MODEL_SCOPE, reuse=True):
                validation_logits = build_model(
                    model["name"], scale_images(tf.gather(train_images, validation_rows)), model["params"]
                )
            validation_labels = tf.cast(tf.gather(train_labels, validation_rows), tf.int64)
            validation_head = classification_head(validation_logits, validation_labels)
            validation = {
                "rows": validation_rows,
                "loss": validation_head["loss"],
                "predictions": validation_head["predictions"],
            }
        tf_optimizer = make_optimizer(optimizer["name"], optimizer["learning_rate"], optimizer["params"])

        def one_step(step: Any, finite: Any) -> tuple[Any, Any]:
            rows = tf.gather(order, step)
            batch_images = scale_images(tf.gather(train_images, rows))
            batch_labels = tf.gather(train_labels, rows)
            with tf.variable_scope(MODEL_SCOPE, reuse=True):
                logits = build_model(model["name"], batch_images, model["params"])
            head = classification_head(logits, batch_labels)
            minimize = tf_optimizer.minimize(head["loss"], var_list=model_variables)
            accumulate = [
                tf.assign_add(loss_sum, tf.cast(head["loss"], tf.float64)),
                tf.assign_add(correct_sum, head["correct_count"]),
            ]
            # Every loop variable waits for this step's update, so the next iteration reads updated weights.
            with tf.control_dependencies([minimize] + accumulate):
                return step + 1, tf.is_finite(head["loss"])

        with tf.name_scope("train"):
            start = tf.identity(step_in_epoch)
            stop = tf.minimum(start + chunk_steps, steps)
            # Run up to chunk_steps steps; stop right after a step whose loss is NaN or inf.
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
                    tf.assign(step_in_epoch, step_after),
                    tf.assign_add(global_step, tf.cast(ran, global_step.dtype)),
                ]
            with tf.control_dependencies(advance):
                run_chunk = [tf.identity(step_after), tf.identity(first_bad)]
        with tf.name_scope("epoch"):
            new_epoch = tf.group(
                tf.assign(order, order_init),
                tf.assign(step_in_epoch, tf.zeros([], tf.int32)),
                tf.assign(loss_sum, tf.zeros([], tf.float64)),
                tf.assign(correct_sum, tf.zeros([], tf.int64)),
            )
        # Only global variables: model, optimizer slots and step. The resident data is rebuilt from the arrays.
        saver = tf.train.Saver(tf.global_variables(), max_to_keep=None, save_relative_paths=True)
        init = tf.group(tf.global_variables_initializer(), tf.local_variables_initializer())
    graph.finalize()
    return TrainingGraph(
        graph=graph,
        init=init,
        images_init=images_init,
        labels_init=labels_init,
        order_init=order_init,
        new_epoch=new_epoch,
        validation=validation,
        run_chunk=run_chunk,
        loss_sum=loss_sum,
        correct_sum=correct_sum,
        model_variables=model_variables,
        saver=saver,
        global_step=global_step,
    )
