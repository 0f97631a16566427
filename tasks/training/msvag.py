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

α is the learning rate. How it is computed, each step a no-op in exact arithmetic:

- Every quantity that depends on t alone (β^t, ρ_t, the bias corrections) is a scalar, computed once
  per step for all variables (`StepScalars`), in float64, then cast.
- The bias corrections cancel out of γ: with c = 1-β^t, m̂² = m_t²/c² and v̂ - m̂² = (c v_t - m_t²)/c², so
      γ_t = m_t² / (m_t² + w_t max(c v_t - m_t², 0)),   w_t = ρ_t/(1-ρ_t) (M-SVAG) or 1/(1-ρ_t) (SVAG),
  and the step is θ_t = θ_{t-1} - (α/c) γ_t m_t (M-SVAG) or θ_{t-1} - α γ_t g_t (SVAG), applied by the
  fused kernel plain SGD uses.
- m and v are updated in place, as m_t = m_{t-1} - (1-β)(m_{t-1} - g_t) (likewise v), by that same kernel:
  no copy into the slot, and the product with 1-β is rounded exactly as a separate multiply would be.
- s_1 = 0, i.e. w_1 = 0: at t = 1, ρ_1 = 1 and v̂ - m̂² is 0 in exact arithmetic (one gradient has no
  variance), so s_1 is 0/0; its float32 rounding noise over 1 - ρ_1 would make γ_1 a random number. With
  s_1 = 0 the first step is a plain (bias-corrected) SGD step.
- ρ_t is capped at `RHO_CAP` = 1 - 1e-7, so w_t stays finite (at most about 1e7). For t >= 2,
  ρ_t = (1-β)(1+β^t) / ((1+β)(1-β^t)) falls with t, so ρ_2 = (1+β²)/(1+β)² is its largest value, and the cap
  binds only where β < 5e-8 (ρ_2 ≈ 1 - 2β); at β = 0.9, ρ_2 = 0.501. Below β ≈ 5e-17, ρ_t rounds to exactly
  1 in float64: without the cap w_t = inf, inf·0 = NaN wherever c v_t - m_t² is 0, and every weight turns
  NaN (the schema allows any β in (0, 1)). At such β, m_t is g_t to float32 precision and the variance
  estimate is rounding noise whatever the cap; the cap only keeps it finite.
- s_t >= 0: v̂ - m̂² is a weighted variance, so only cancellation can make it negative. Then γ is in
  [0, 1] by construction (w_t >= 0), also after rounding.
- Overflow yields no NaN, without a NaN test (a NaN mask and a select cost about as much as five of the
  other ops): with F the largest finite float and μ = min(m_t², F),
      γ_t = μ / (m_t² + w_t·max(c v_t - μ, 0)),   where w_t·x is 0 if w_t = 0, even for x = inf.
  Where m_t² and v_t are finite, μ = m_t² and this is γ_t above, bit for bit. Where m_t² overflows,
  γ = F/inf = 0, as where the denominator alone overflows; where v_t overflows (|g| above about 1e19),
  γ = 0 for t > 1 and 1 at t = 1 (the plain first step). 0/0 (m_t = 0 with no variance, e.g. a
  constant-zero gradient) gives γ = 0.

Together: 15 elementwise ops per variable and step, the θ update included, where the equations read
literally take about 30. That is the pure-TF path. On ref variables (the product's case) with the op
library built (`make kernels`; tasks/training/kernels), one custom op, VarianceAdaptedStep, does the first
14 of them in a single pass over memory, with the same float operations in the same order, so the weights
are bit-identical; the θ update stays ApplyGradientDescent. Resource variables, dtypes other than float32
and float64, a library that is missing or fails to load, and FMNIST_PURE_TF=1 take the pure-TF path.

Either way the ops run once per variable. A flat layout (every variable's m, v and g in one vector each, so
each op runs once per step) measured no faster on the MLP: an op costs ~0.2 µs to dispatch, and the time
goes to the passes over the large variables, which concatenating the gradients only adds to.

State: slots "m" and "v" per variable, and one non-slot counter "<name>_step" (steps taken so far), all
global variables, so a `tf.train.Saver` checkpoints them and a resumed run continues bit-identically.
"""

from __future__ import annotations

from typing import NamedTuple

from tasks.training import kernels
from tasks.training.stepping import DenseStepOptimizer, decrement_in_place, is_ref_variable
from tasks.training.tf1 import tf

RHO_CAP = 1.0 - 1e-7
KERNEL_DTYPES = (tf.float32, tf.float64)  # those VarianceAdaptedStep is registered for


class StepScalars(NamedTuple):
    """What step t needs beyond the per-coordinate state: scalars of one dtype, shared by all variables."""

    one_minus_beta: tf.Tensor  # 1-β
    bias_correction: tf.Tensor  # c = 1-β^t
    variance_weight: tf.Tensor  # w_t (0 at t = 1)
    direction_scale: tf.Tensor  # 1/c for M-SVAG (the direction is m̂ = m_t/c), 1 for SVAG (g)

    def cast(self, dtype) -> StepScalars:
        return StepScalars(*(tf.cast(value, dtype) for value in self))


def step_scalars(t, beta, uses_momentum: bool) -> StepScalars:
    """The per-step scalars of the module docstring for step t = 1, 2, ..., in float64."""
    t = tf.cast(t, tf.float64)
    beta = tf.cast(beta, tf.float64)
    one = tf.constant(1.0, tf.float64)
    bias_correction = one - tf.pow(beta, t)
    rho = (tf.square(one - beta) * (one - tf.pow(beta, 2.0 * t))) / (
        tf.square(bias_correction) * (one - tf.square(beta))
    )
    rho = tf.minimum(rho, tf.constant(RHO_CAP, tf.float64))
    weight = (rho if uses_momentum else one) / (one - rho)
    weight = tf.where_v2(t > one, weight, tf.zeros_like(weight))  # s_1 = 0: see the module docstring
    direction_scale = one / bias_correction if uses_momentum else one
    return StepScalars(one - beta, bias_correction, weight, direction_scale)


def moment_differences(grad, m, v):
    """(m_{t-1} - g_t, v_{t-1} - g_t²); then m_t = m_{t-1} - (1-β)(m_{t-1} - g_t), and likewise v_t."""
    return m - grad, v - tf.square(grad)


def variance_adaptation(m_t, v_t, scalars: StepScalars):
    """γ_t from m_t and v_t (not bias-corrected: the corrections cancel), `scalars` of their dtype."""
    m_sq = tf.square(m_t)
    m_sq_finite = tf.minimum(m_sq, m_sq.dtype.max)  # μ of the module docstring: m_t² unless it overflowed
    # c²(v̂ - m̂²) clipped at 0; times w_t it is c² ρ_t s_t (M-SVAG) or c² s_t (SVAG).
    excess = tf.maximum(scalars.bias_correction * v_t - m_sq_finite, tf.zeros([], m_sq.dtype))
    return tf.math.divide_no_nan(m_sq_finite, m_sq + tf.math.multiply_no_nan(excess, scalars.variance_weight))


def variance_adapted_step(grad, m, v, t, beta, uses_momentum: bool):
    """The equations of the module docstring for step t: returns (m_t, v_t, γ_t, direction).

    `m`, `v` are m_{t-1}, v_{t-1}; `t` and `beta` are scalars. The step is θ_t = θ_{t-1} - α γ_t direction,
    where direction is m̂_t (M-SVAG) or g_t (SVAG). The optimizers compute the same, with m and v in place.
    """
    scalars = step_scalars(t, beta, uses_momentum).cast(grad.dtype.base_dtype)
    m_difference, v_difference = moment_differences(grad, m, v)
    m_t = m - m_difference * scalars.one_minus_beta
    v_t = v - v_difference * scalars.one_minus_beta
    gamma = variance_adaptation(m_t, v_t, scalars)
    return m_t, v_t, gamma, (m_t * scalars.direction_scale if uses_momentum else grad)


class _VarianceAdaptedOptimizer(DenseStepOptimizer):
    """The shared state and math of M-SVAG and SVAG; subclasses only pick the update direction."""

    # True: step along m̂ and weigh the variance by ρ (M-SVAG); False: step along g (SVAG).
    _USES_MOMENTUM: bool

    def __init__(
        self,
        learning_rate,
        beta: float = 0.9,
        use_locking: bool = False,
        name: str = "VarianceAdapted",
        use_kernel: bool = True,
    ):
        super().__init__(learning_rate, beta, use_locking, name)
        # False: always the pure-TF ops (as FMNIST_PURE_TF=1 does); the tests compare the two paths.
        self._use_kernel = use_kernel
        self._kernel = None

    def _create_slots(self, var_list):
        # Put the counter with the variable that sorts first, as Adam does, so its device is stable.
        first_var = min(var_list, key=lambda var: var.name)
        self._create_non_slot_variable(initial_value=0.0, name=self._step_name(), colocate_with=first_var)
        for var in var_list:
            self._zeros_slot(var, "m", self._name)
            self._zeros_slot(var, "v", self._name)

    def _prepare(self):
        # Once per apply, not per variable: the step's scalars and the step size α·direction_scale.
        learning_rate = tf.convert_to_tensor(self._call_if_callable(self._lr), name="learning_rate")
        beta = tf.convert_to_tensor(self._call_if_callable(self._beta), name="beta")
        t = self.step_counter() + 1.0
        with tf.name_scope("step_scalars"):
            scalars = step_scalars(t, beta, self._USES_MOMENTUM)
            self._scalars = (scalars, tf.cast(learning_rate, tf.float64) * scalars.direction_scale)
        self._scalars_by_dtype = {}
        # Loaded here, in the process that builds the graph, never at import (a Luigi worker forks after it).
        self._kernel = kernels.variance_adapted_step_op() if self._use_kernel else None

    def _scalars_for(self, dtype):
        """(StepScalars, step size) cast to `dtype`, once per dtype per apply."""
        if dtype not in self._scalars_by_dtype:
            scalars, step_size = self._scalars
            self._scalars_by_dtype[dtype] = (scalars.cast(dtype), tf.cast(step_size, dtype))
        return self._scalars_by_dtype[dtype]

    def _step_name(self) -> str:
        return f"{self._name}_step"

    def step_counter(self):
        """The float32 count of steps taken, in the default graph (exact up to 2**24 steps)."""
        with tf.init_scope():
            graph = None if tf.executing_eagerly() else tf.get_default_graph()
        return self._get_non_slot_variable(self._step_name(), graph=graph)

    def _update(self, grad, var, apply_step):
        """Update one variable from its dense gradient; `apply_step(step_size, delta)` does θ -= step_size·delta."""
        m = self.get_slot(var, "m")
        v = self.get_slot(var, "v")
        scalars, step_size = self._scalars_for(var.dtype.base_dtype)
        if self._kernel is not None and is_ref_variable(m) and m.dtype.base_dtype in KERNEL_DTYPES:
            # The same arithmetic as below, in one pass: m and v in place, returns γ·direction.
            delta = self._kernel(
                m,
                v,
                grad,
                scalars.one_minus_beta,
                scalars.bias_correction,
                scalars.variance_weight,
                uses_momentum=self._USES_MOMENTUM,
                use_locking=self._use_locking,
            )
            return apply_step(step_size, delta)
        m_difference, v_difference = moment_differences(grad, m, v)
        # In place; each returns the updated slot, read after its update.
        m_t = decrement_in_place(m, scalars.one_minus_beta, m_difference, self._use_locking)
        v_t = decrement_in_place(v, scalars.one_minus_beta, v_difference, self._use_locking)
        gamma = variance_adaptation(m_t, v_t, scalars)
        return apply_step(step_size, gamma * (m_t if self._USES_MOMENTUM else grad))

    def _finish(self, update_ops, name_scope):
        step = self.step_counter()
        # Count the step only after every variable has read the old count.
        with tf.control_dependencies(update_ops):
            with tf.colocate_with(step):
                advance = step.assign_add(1.0, use_locking=self._use_locking, read_value=False)
        return tf.group(*update_ops, advance, name=name_scope)


class MSVAGOptimizer(_VarianceAdaptedOptimizer):
    """M-SVAG: momentum SGD with variance-adapted step, θ ← θ - α γ m̂ (arXiv:1705.07774)."""

    _USES_MOMENTUM = True

    def __init__(
        self, learning_rate, beta: float = 0.9, use_locking: bool = False, name: str = "MSVAG", use_kernel: bool = True
    ):
        super().__init__(learning_rate, beta=beta, use_locking=use_locking, name=name, use_kernel=use_kernel)


class SVAGOptimizer(_VarianceAdaptedOptimizer):
    """SVAG: SGD with variance-adapted step, θ ← θ - α γ g (arXiv:1705.07774)."""

    _USES_MOMENTUM = False

    def __init__(
        self, learning_rate, beta: float = 0.9, use_locking: bool = False, name: str = "SVAG", use_kernel: bool = True
    ):
        super().__init__(learning_rate, beta=beta, use_locking=use_locking, name=name, use_kernel=use_kernel)
