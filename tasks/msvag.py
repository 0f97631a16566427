"""M-SVAG and SVAG: variance-adapted SGD with and without momentum, as TF1 optimizers.

Balles & Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic Gradients",
ICML 2018, arXiv:1705.07774. Written here from the paper's equations; every operation is
elementwise, per coordinate i of the parameters θ, and t = 1, 2, ... counts the steps taken:

    g_t            stochastic gradient at θ_{t-1}
    m_t  = β m_{t-1} + (1-β) g_t          v_t = β v_{t-1} + (1-β) g_t²          (m_0 = v_0 = 0)
    m̂_t  = m_t / (1-β^t)                  v̂_t = v_t / (1-β^t)                  (bias correction)
    ρ_t  = (1-β)² (1-β^{2t}) / ((1-β^t)² (1-β²))   variance of m̂_t relative to that of g_t; ρ_1 = 1
    s_t  = (v̂_t - m̂_t²) / (1-ρ_t)       estimate of the gradient variance σ²

    M-SVAG:  γ_t = m̂_t² / (m̂_t² + ρ_t s_t)      θ_t = θ_{t-1} - α γ_t m̂_t
    SVAG:    γ_t = m̂_t² / (m̂_t² + s_t)          θ_t = θ_{t-1} - α γ_t g_t

α is the learning rate. Numerical choices, each a no-op in exact arithmetic:

- ρ_t is capped at `RHO_CAP` < 1, since ρ_1 = 1 would divide by zero.
- s_1 = 0. At t = 1, v̂ - m̂² is exactly 0 in exact arithmetic, but its float32 rounding noise divided
  by 1 - RHO_CAP (about 1e-7) would make γ_1 a random number; with s_1 = 0 the first step is a plain
  (bias-corrected) SGD step, as the equations give.
- s_t >= 0: v̂ - m̂² is a weighted variance, so only cancellation can make it negative.
- γ is clipped to [0, 1] and a NaN (0/0: m̂ = 0 with no variance, e.g. a constant-zero gradient) is 0.

State: slots "m" and "v" per variable, and one non-slot counter "<name>_step" (steps taken so far), all
global variables, so a `tf.train.Saver` checkpoints them and a resumed run continues bit-identically.
"""

from __future__ import annotations

import tensorflow.compat.v1 as tf

from tasks.errors import ConfigError

RHO_CAP = 1.0 - 1e-7


def variance_adapted_step(grad, m, v, t, beta, uses_momentum: bool):
    """The equations of the module docstring for step t: returns (m_t, v_t, γ_t, direction).

    `m`, `v` are m_{t-1}, v_{t-1}; `t` and `beta` are scalars of the gradient's dtype. The step is
    θ_t = θ_{t-1} - α γ_t direction, where direction is m̂_t (M-SVAG) or g_t (SVAG).
    """
    dtype = grad.dtype.base_dtype
    one = tf.constant(1.0, dtype)
    m_t = beta * m + (one - beta) * grad
    v_t = beta * v + (one - beta) * tf.square(grad)
    bias_correction = one - tf.pow(beta, t)
    m_hat = m_t / bias_correction
    v_hat = v_t / bias_correction

    rho = (tf.square(one - beta) * (one - tf.pow(beta, 2.0 * t))) / (
        tf.square(bias_correction) * (one - tf.square(beta))
    )
    rho = tf.minimum(rho, tf.constant(RHO_CAP, dtype))
    zeros = tf.zeros_like(m_hat)
    variance = tf.maximum(v_hat - tf.square(m_hat), zeros) / (one - rho)
    variance = tf.where_v2(t > one, variance, zeros)  # s_1 = 0: see the module docstring

    m_hat_sq = tf.square(m_hat)
    if uses_momentum:
        direction, variance_weight = m_hat, rho
    else:
        direction, variance_weight = grad, one
    gamma = m_hat_sq / (m_hat_sq + variance_weight * variance)
    gamma = tf.clip_by_value(tf.where(tf.is_nan(gamma), zeros, gamma), 0.0, 1.0)
    return m_t, v_t, gamma, direction


class _VarianceAdaptedOptimizer(tf.train.Optimizer):
    """The shared state and math of M-SVAG and SVAG; subclasses only pick the update direction."""

    # True: step along m̂ and weigh the variance by ρ (M-SVAG); False: step along g (SVAG).
    _USES_MOMENTUM: bool

    def __init__(self, learning_rate, beta: float = 0.9, use_locking: bool = False, name: str = "VarianceAdapted"):
        if isinstance(beta, (int, float)) and not 0.0 < beta < 1.0:
            raise ConfigError(f"{name} beta: expected a number in (0, 1), found {beta!r}; pick e.g. 0.9")
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._beta = beta
        self._lr_t = None
        self._beta_t = None

    def _create_slots(self, var_list):
        # Put the counter with the variable that sorts first, as Adam does, so its device is stable.
        first_var = min(var_list, key=lambda var: var.name)
        self._create_non_slot_variable(initial_value=0.0, name=self._step_name(), colocate_with=first_var)
        for var in var_list:
            self._zeros_slot(var, "m", self._name)
            self._zeros_slot(var, "v", self._name)

    def _prepare(self):
        self._lr_t = tf.convert_to_tensor(self._call_if_callable(self._lr), name="learning_rate")
        self._beta_t = tf.convert_to_tensor(self._call_if_callable(self._beta), name="beta")

    def _step_name(self) -> str:
        return f"{self._name}_step"

    def step_counter(self):
        """The float32 count of steps taken, in the default graph (exact up to 2**24 steps)."""
        with tf.init_scope():
            graph = None if tf.executing_eagerly() else tf.get_default_graph()
        return self._get_non_slot_variable(self._step_name(), graph=graph)

    def _apply_variance_adapted(self, grad, var):
        """Update one variable (ref or resource) from its dense gradient; returns the op."""
        dtype = var.dtype.base_dtype
        m = self.get_slot(var, "m")
        v = self.get_slot(var, "v")
        t = tf.cast(self.step_counter(), dtype) + tf.constant(1.0, dtype)
        m_t, v_t, gamma, direction = variance_adapted_step(
            grad, m, v, t, tf.cast(self._beta_t, dtype), uses_momentum=self._USES_MOMENTUM
        )
        return tf.group(
            m.assign(m_t, use_locking=self._use_locking, read_value=False),
            v.assign(v_t, use_locking=self._use_locking, read_value=False),
            var.assign_sub(
                tf.cast(self._lr_t, dtype) * gamma * direction, use_locking=self._use_locking, read_value=False
            ),
        )

    def _apply_dense(self, grad, var):
        return self._apply_variance_adapted(grad, var)

    def _resource_apply_dense(self, grad, handle):
        return self._apply_variance_adapted(grad, handle)

    # Sparse gradients are made dense: the equations decay m and v of every row at every step
    # (a row without a gradient has g = 0), which a rows-only update would not do.
    def _apply_sparse(self, grad, var):
        return self._apply_variance_adapted(_densify(grad.values, grad.indices, var), var)

    def _resource_apply_sparse(self, grad, handle, indices):
        return self._apply_variance_adapted(_densify(grad, indices, handle), handle)

    def _finish(self, update_ops, name_scope):
        step = self.step_counter()
        # Count the step only after every variable has read the old count.
        with tf.control_dependencies(update_ops):
            with tf.colocate_with(step):
                advance = step.assign_add(1.0, use_locking=self._use_locking, read_value=False)
        return tf.group(*update_ops, advance, name=name_scope)


def _densify(values, indices, var):
    """The dense gradient of `var` from de-duplicated sparse rows."""
    return tf.scatter_nd(tf.expand_dims(indices, -1), values, tf.shape(var, out_type=indices.dtype))


class MSVAGOptimizer(_VarianceAdaptedOptimizer):
    """M-SVAG: momentum SGD with variance-adapted step, θ ← θ - α γ m̂ (arXiv:1705.07774)."""

    _USES_MOMENTUM = True

    def __init__(self, learning_rate, beta: float = 0.9, use_locking: bool = False, name: str = "MSVAG"):
        super().__init__(learning_rate, beta=beta, use_locking=use_locking, name=name)


class SVAGOptimizer(_VarianceAdaptedOptimizer):
    """SVAG: SGD with variance-adapted step, θ ← θ - α γ g (arXiv:1705.07774)."""

    _USES_MOMENTUM = False

    def __init__(self, learning_rate, beta: float = 0.9, use_locking: bool = False, name: str = "SVAG"):
        super().__init__(learning_rate, beta=beta, use_locking=use_locking, name=name)
