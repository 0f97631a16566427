"""The plumbing our optimizers share: one update rule serves ref and resource variables, dense and sparse.

A subclass implements `_update(grad, var, apply_step)`: it computes the step and calls
`apply_step(step_size, delta)`, which applies θ ← θ − step_size·delta in one kernel (the one plain SGD uses).
Sparse gradients are made dense, because our update rules decay their state on every row at every step
(a row without a gradient has g = 0), which a rows-only update would not do.
"""

from __future__ import annotations

from tasks.core.errors import ConfigError
from tasks.training.tf1 import tf


def densify_sparse_gradient(values, indices, var):
    """The dense gradient of `var` from de-duplicated sparse rows."""
    return tf.scatter_nd(tf.expand_dims(indices, -1), values, tf.shape(var, out_type=indices.dtype))


def is_ref_variable(state) -> bool:
    """True for a ref variable (graph mode under disable_v2_behavior), whose dtype is a ref type."""
    return state.dtype != state.dtype.base_dtype


def decrement_in_place(state, alpha, delta, use_locking: bool):
    """state ← state − delta·alpha in one pass (the SGD kernel, on a slot); returns the updated value.

    One kernel instead of a multiply and an assign_sub, with the same rounding: the kernel too rounds
    delta·alpha to the dtype first, then subtracts.
    """
    if not is_ref_variable(state):
        update = tf.raw_ops.ResourceApplyGradientDescent(
            var=state.handle, alpha=alpha, delta=delta, use_locking=use_locking
        )
        with tf.control_dependencies([update]):
            return state.read_value()
    # A ref variable: the op's output is the variable itself, read by each consumer after the update.
    return tf.raw_ops.ApplyGradientDescent(var=state, alpha=alpha, delta=delta, use_locking=use_locking)


class DenseStepOptimizer(tf.train.Optimizer):
    """A tf.compat.v1 Optimizer whose update rule is written once, in `_update`, with an optional β."""

    def __init__(self, learning_rate, beta: float | None, use_locking: bool, name: str):
        if isinstance(beta, (int, float)) and not 0.0 < beta < 1.0:  # NaN fails too
            raise ConfigError(f"{name} beta: expected a number in (0, 1), found {beta!r}; pick e.g. 0.9")
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._beta = beta
        self._scalars = None
        self._scalars_by_dtype = {}

    def _update(self, grad, var, apply_step):
        raise NotImplementedError

    def _apply_dense(self, grad, var):
        def apply_step(step_size, delta):
            return tf.raw_ops.ApplyGradientDescent(
                var=var, alpha=step_size, delta=delta, use_locking=self._use_locking
            ).op

        return self._update(grad, var, apply_step)

    def _resource_apply_dense(self, grad, handle):
        def apply_step(step_size, delta):
            return tf.raw_ops.ResourceApplyGradientDescent(
                var=handle.handle, alpha=step_size, delta=delta, use_locking=self._use_locking
            )

        return self._update(grad, handle, apply_step)

    def _apply_sparse(self, grad, var):
        return self._apply_dense(densify_sparse_gradient(grad.values, grad.indices, var), var)

    def _resource_apply_sparse(self, grad, handle, indices):
        return self._resource_apply_dense(densify_sparse_gradient(grad, indices, handle), handle)
