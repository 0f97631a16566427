"""Learning-rate schedules in the graph: the rate of optimizer step t is a tensor of the global step.

The schedule (tasks.core.schedule.ScheduleConfig) is read by the optimizer's `_prepare`, which runs inside the
chunk loop's body (tasks.training.graph), so each step of the in-graph while loop gets its own rate with no
per-step Python. TensorFlow's compat.v1 optimizers, the project's own and the example plugin accept a
zero-argument callable for `learning_rate` and resolve it there (`Optimizer._call_if_callable`).

The step t is the global step at the start of the chunk plus the steps run in the chunk so far; the global
step is in every checkpoint, so a resume restores the schedule's position exactly. The factor is computed
in float64 and the rate rounded once to float32, the variables' dtype.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.core.errors import TrainingError
from tasks.core.schedule import ScheduleConfig
from tasks.training.tf1 import tf


class ScheduledRate:
    """The learning rate an optimizer factory receives for a non-constant schedule: call it for the tensor.

    `at_step` is set by the chunk loop's body to the current step's tensor before the optimizer's update is
    built. Called before that (an optimizer that turns its rate into a tensor in `__init__`), it refuses,
    because a rate read outside the loop would stay fixed for a whole chunk.
    """

    def __init__(self, schedule: ScheduleConfig, base_rate: float, total_steps: int):
        self.schedule = schedule
        self.base_rate = base_rate
        self.total_steps = total_steps
        self.at_step: Any = None

    def __call__(self) -> Any:
        if self.at_step is None:
            raise TrainingError(
                "the learning rate of a scheduled run was read outside the training step; the optimizer must "
                "resolve a callable learning_rate in _prepare (self._call_if_callable), as TF's own optimizers do"
            )
        return rate_tensor(self.schedule, self.base_rate, self.at_step, self.total_steps)


def rate_tensor(schedule: ScheduleConfig, base_rate: float, step: Any, total_steps: int) -> Any:
    """The float32 learning rate at integer step tensor `step` (0 for the first update)."""
    with tf.name_scope("learning_rate"):
        t = tf.cast(step, tf.float64)
        factor = tf.constant(1.0, tf.float64)
        warmup = schedule.warmup_steps
        if warmup:
            factor = tf.minimum(factor, (t + 1.0) / float(warmup))
        if schedule.kind == "step":
            boundaries = tf.constant(schedule.boundaries, tf.float64)
            drops = tf.reduce_sum(tf.cast(t >= boundaries, tf.float64))
            factor = factor * tf.pow(tf.constant(schedule.factor, tf.float64), drops)
        elif schedule.kind == "cosine":
            span = float(total_steps - warmup)
            progress = tf.clip_by_value((t - float(warmup)) / span, 0.0, 1.0)
            final = schedule.final_fraction
            factor = factor * (final + (1.0 - final) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
        return tf.cast(base_rate * factor, tf.float32)
