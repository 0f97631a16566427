"""SSD and M-SSD: stochastic sign descent without and with momentum, as TF1 optimizers.

Balles & Hennig, "Dissecting Adam: The Sign, Magnitude and Variance of Stochastic Gradients",
ICML 2018, arXiv:1705.07774 (Figure 1: "M-" means m_t in place of g_t). Written here from the paper's
equations; every operation is elementwise, per coordinate i of the parameters θ, t = 1, 2, ...:

    g_t            stochastic gradient at θ_{t-1}
    SSD:    θ_t = θ_{t-1} - α sign(g_t)
    M-SSD:  m_t = β m_{t-1} + (1-β) g_t   (m_0 = 0)        θ_t = θ_{t-1} - α sign(m_t)

α is the learning rate, β in (0, 1) the momentum. Decisions the equations leave open:

- sign(0) = 0: a coordinate whose g_t (SSD) or m_t (M-SSD) is exactly zero does not move. TF's CPU
  kernels flush subnormal floats to zero, so a subnormal one (|x| < 1.2e-38 in float32) counts as 0 too.
  A NaN gradient gives a NaN step, so the training loop sees the divergence instead of a silent no-step.
- No bias correction: m̂_t = m_t / (1-β^t) has the sign of m_t, so M-SSD needs no step counter, and
  its first step equals SSD's (m_1 = (1-β) g_1).
- Sparse gradients (IndexedSlices, e.g. from `tf.gather` on a variable) behave exactly like the dense
  gradient with zeros in the missing rows: M-SSD's m decays by β on every row at every step, and a row
  keeps moving along sign(m) while its m is non-zero. For SSD the missing rows get sign(0) = 0.
- m is updated in place, as m_t = m_{t-1} - (1-β)(m_{t-1} - g_t), so no copy; θ moves by the fused
  kernel plain SGD uses, with delta = sign(g_t) or sign(m_t).

State: M-SSD has one slot "m" per variable, a global variable, so a `tf.train.Saver` checkpoints it and
a resumed run continues bit-identically; SSD has no state.
"""

from __future__ import annotations

from tasks.training.stepping import DenseStepOptimizer
from tasks.training.tf1 import tf


class _SignDescentOptimizer(DenseStepOptimizer):
    """The shared math of SSD and M-SSD; subclasses only say whether the sign is taken of m or of g."""

    # True: step along sign(m_t) (M-SSD); False: along sign(g_t) (SSD).
    _USES_MOMENTUM: bool

    def _create_slots(self, var_list):
        if self._USES_MOMENTUM:
            for var in var_list:
                self._zeros_slot(var, "m", self._name)

    def _prepare(self):
        # Once per apply, not per variable: α and 1-β as float64 tensors, cast per dtype on first use.
        learning_rate = tf.convert_to_tensor(self._call_if_callable(self._lr), name="learning_rate")
        self._scalars = (tf.cast(learning_rate, tf.float64),)
        if self._USES_MOMENTUM:
            # 1-β before any cast: for a Python β it is then the float nearest to the exact 1-β.
            one_minus_beta = tf.convert_to_tensor(1.0 - self._call_if_callable(self._beta), name="one_minus_beta")
            self._scalars += (tf.cast(one_minus_beta, tf.float64),)
        self._scalars_by_dtype = {}

    def _scalars_for(self, dtype):
        """(α,) or (α, 1-β) cast to `dtype`, once per dtype per apply."""
        if dtype not in self._scalars_by_dtype:
            self._scalars_by_dtype[dtype] = tuple(tf.cast(value, dtype) for value in self._scalars)
        return self._scalars_by_dtype[dtype]

    def _update(self, grad, var, apply_step):
        """Update one variable from its dense gradient; `apply_step(α, delta)` does θ -= α·delta."""
        scalars = self._scalars_for(var.dtype.base_dtype)
        if not self._USES_MOMENTUM:
            return apply_step(scalars[0], tf.sign(grad))
        learning_rate, one_minus_beta = scalars
        m = self.get_slot(var, "m")
        # m_t = m_{t-1} - (1-β)(m_{t-1} - g_t) in place (no copy into the slot); assign_sub returns the
        # updated slot, read after its update.
        m_t = m.assign_sub(one_minus_beta * (m - grad), use_locking=self._use_locking)
        return apply_step(learning_rate, tf.sign(m_t))


class SSDOptimizer(_SignDescentOptimizer):
    """SSD: stochastic sign descent, θ ← θ - α sign(g) (arXiv:1705.07774)."""

    _USES_MOMENTUM = False

    def __init__(self, learning_rate, use_locking: bool = False, name: str = "SSD"):
        super().__init__(learning_rate, beta=None, use_locking=use_locking, name=name)


class MSSDOptimizer(_SignDescentOptimizer):
    """M-SSD: sign descent on momentum, m ← β m + (1-β) g, θ ← θ - α sign(m) (arXiv:1705.07774)."""

    _USES_MOMENTUM = True

    def __init__(self, learning_rate, beta: float = 0.9, use_locking: bool = False, name: str = "MSSD"):
        super().__init__(learning_rate, beta=beta, use_locking=use_locking, name=name)
