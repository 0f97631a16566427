"""M-SVAG/SVAG's cheaper formulation against the paper's equations read literally, and its cost in ops.

tests/test_msvag.py checks whole runs against a numpy reference; these check the pieces: the per-step
scalars, γ for one step at several t, and that per-step work is done once per apply, not per variable.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tasks.training.msvag import (
    RHO_CAP,
    MSVAGOptimizer,
    SVAGOptimizer,
    step_scalars,
    variance_adaptation,
    variance_adapted_step,
)
from tasks.training.tf1 import tf


def literal_step(grad, m, v, t, beta, momentum):
    """m_t, v_t, γ_t and the direction, in float64, straight from the module docstring's equations."""
    m_t = beta * m + (1 - beta) * grad
    v_t = beta * v + (1 - beta) * grad**2
    m_hat, v_hat = m_t / (1 - beta**t), v_t / (1 - beta**t)
    rho = min((1 - beta) ** 2 * (1 - beta ** (2 * t)) / ((1 - beta**t) ** 2 * (1 - beta**2)), RHO_CAP)
    s = np.maximum(v_hat - m_hat**2, 0.0) / (1 - rho) if t > 1 else np.zeros_like(m_hat)
    with np.errstate(invalid="ignore"):
        gamma = m_hat**2 / (m_hat**2 + (rho if momentum else 1.0) * s)
    return m_t, v_t, np.nan_to_num(gamma, nan=0.0), (m_hat if momentum else grad)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_step_scalars_are_the_papers(beta):
    ts = [1.0, 2.0, 3.0, 10.0, 100.0, 5000.0]
    with tf.Graph().as_default(), tf.Session() as session:
        t = tf.placeholder(tf.float32, [])
        scalars = {momentum: step_scalars(t, tf.constant(beta, tf.float32), momentum) for momentum in (True, False)}
        for step in ts:
            values = session.run(scalars, {t: step})
            beta32 = float(np.float32(beta))  # the graph's β is a float32 constant
            c = 1 - beta32**step
            rho = min((1 - beta32) ** 2 * (1 - beta32 ** (2 * step)) / (c**2 * (1 - beta32**2)), RHO_CAP)
            for momentum, found in values.items():
                assert found.bias_correction == pytest.approx(c, rel=1e-12)
                expected_weight = 0.0 if step == 1 else (rho if momentum else 1.0) / (1 - rho)
                assert found.variance_weight == pytest.approx(expected_weight, rel=1e-9)
                assert found.direction_scale == pytest.approx(1 / c if momentum else 1.0, rel=1e-12)


def papers_weight(t: int, beta: float, momentum: bool) -> float:
    """w_t of the module docstring from the paper's ρ_t, in exact rational arithmetic: no cap, no rounding."""
    from fractions import Fraction

    b = Fraction(beta)
    rho = (1 - b) ** 2 * (1 - b ** (2 * t)) / ((1 - b**t) ** 2 * (1 - b**2))
    return 0.0 if t == 1 else float((rho if momentum else 1) / (1 - rho))


@pytest.mark.parametrize("beta", [0.9, 1e-3, 1e-6, 1e-7], ids=lambda beta: f"beta={beta:g}")
def test_the_rho_cap_never_changes_a_weight_where_rho_is_below_it(beta):
    # Independent of RHO_CAP (the test above follows the constant, so changing it to 0.9999 passed there):
    # down to β = 1e-7 the scalars are the paper's, to float64 rounding.
    with tf.Graph().as_default(), tf.Session() as session:
        t = tf.placeholder(tf.float64, [])
        weights = {momentum: step_scalars(t, tf.constant(beta, tf.float64), momentum) for momentum in (True, False)}
        for step in (1, 2, 3, 10, 1000):
            for momentum, scalars in weights.items():
                found = session.run(scalars.variance_weight, {t: step})
                assert found == pytest.approx(papers_weight(step, beta, momentum), rel=1e-6), (step, momentum)


def test_the_rho_cap_bounds_the_weight_where_rho_rounds_to_one():
    # Below β ≈ 5e-8, ρ_t exceeds 1 - 1e-7 and the cap binds: w_t = ρ/(1-ρ) stays near 1e7 (M-SVAG), 1/(1-ρ)
    # (SVAG) likewise. At β ≈ 5e-17 and below, ρ_t rounds to exactly 1 and only the cap keeps w_t finite.
    cap = 1.0 - 1e-7
    with tf.Graph().as_default(), tf.Session() as session:
        for beta in (1e-10, 1e-17, 1e-300):
            for momentum in (True, False):
                found = session.run(step_scalars(tf.constant(2.0, tf.float64), beta, momentum).variance_weight)
                assert found == pytest.approx((cap if momentum else 1.0) / (1.0 - cap), rel=1e-9), (beta, momentum)


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "pure-tf"])
@pytest.mark.parametrize("optimizer_class", [MSVAGOptimizer, SVAGOptimizer], ids=["msvag", "svag"])
def test_a_beta_the_schema_allows_near_zero_trains_to_finite_weights(optimizer_class, use_kernel):
    # β = 1e-17 is in the schema's (0, 1). Then ρ_t = 1 exactly, and without the cap w_t = inf: where
    # c·v - m² is 0 (one sample has no variance), inf·0 = NaN, and every weight became NaN in 20 steps.
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        theta = tf.Variable(np.random.default_rng(0).normal(size=50).astype(np.float32))
        noise = tf.random.normal([50], seed=1)
        loss = tf.reduce_sum(0.5 * tf.square(theta) + theta * noise)
        train = optimizer_class(0.1, beta=1e-17, use_kernel=use_kernel).minimize(loss)
        init = tf.global_variables_initializer()
    with tf.Session(graph=graph) as session:
        session.run(init)
        for _ in range(20):
            session.run(train)
        found = session.run(theta)
    assert np.isfinite(found).all() and np.abs(found).max() < 10.0


@pytest.mark.parametrize("momentum", [True, False], ids=["msvag", "svag"])
def test_one_step_matches_the_literal_equations(momentum):
    rng = np.random.default_rng(11)
    count = 4000
    grad = rng.normal(0.0, 1.0, count)
    m = rng.normal(0.0, 0.5, count)
    v = m**2 + np.abs(rng.normal(0.0, 0.5, count))  # a consistent second moment: v >= m²
    grad[:20], m[:20], v[:20] = 0.0, 0.0, 0.0  # 0/0: γ = 0
    with tf.Graph().as_default(), tf.Session() as session:
        t = tf.placeholder(tf.float32, [])
        outputs = variance_adapted_step(
            *(tf.constant(x, tf.float32) for x in (grad, m, v)), t, tf.constant(0.9), uses_momentum=momentum
        )
        for step in (1, 2, 3, 7, 50, 1000):
            found = session.run(outputs, {t: float(step)})
            expected = literal_step(
                *(x.astype(np.float32).astype(np.float64) for x in (grad, m, v)), step, 0.9, momentum
            )
            for name, got, want in zip(("m_t", "v_t", "gamma", "direction"), found, expected):
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=f"{name} at t={step}")
            assert np.all(found[2][:20] == 0.0)
            assert found[2].min() >= 0.0 and found[2].max() <= 1.0


def _update_ops(optimizer_class, shapes, use_kernel: bool = True):
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.Variable(tf.ones(shape), name=f"theta{index}") for index, shape in enumerate(shapes)]
        loss = tf.add_n([tf.reduce_sum(tf.square(variable)) for variable in variables])
        optimizer_class(0.1, use_kernel=use_kernel).minimize(loss)
    return graph.get_operations()


def _per_variable_op_counts(operations, variable: str = "theta2") -> collections.Counter:
    return collections.Counter(
        op.type for op in operations if f"/update_{variable}/" in op.name and op.type not in ("Const", "NoOp")
    )


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "pure-tf"])
@pytest.mark.parametrize("optimizer_class", [MSVAGOptimizer, SVAGOptimizer])
def test_per_step_scalars_are_built_once_per_apply_not_per_variable(optimizer_class, use_kernel):
    few = _update_ops(optimizer_class, [(5, 3), (3,)], use_kernel)
    many = _update_ops(optimizer_class, [(5, 3), (3,), (4, 4), (4,), (2, 7), (7,)], use_kernel)
    assert [op.type for op in few if op.type == "Pow"] == ["Pow", "Pow"]  # β^t and β^2t, once
    assert [op.type for op in many if op.type == "Pow"] == ["Pow", "Pow"]
    # Per variable: the elementwise math and the in-place updates, nothing scalar.
    per_variable = {op.type for op in many if "/update_theta3/" in op.name}
    assert not {"Pow", "Cast", "RealDiv"} & per_variable, per_variable


@pytest.mark.parametrize("optimizer_class", [MSVAGOptimizer, SVAGOptimizer])
def test_the_pure_tf_update_stays_at_15_elementwise_ops_per_variable(optimizer_class):
    """The step's cost is its passes over each variable; this guards their number without timing anything.

    15 = m and v in place by the SGD kernel (m - g, v - g², g² and two applies), γ (8 ops) and γ·direction,
    and the θ update. A NaN mask and select, or a separate multiply before each slot update, as an earlier
    version had, would each cost as much as several of these. This is the path without the fused kernel
    (use_kernel=False, as FMNIST_PURE_TF=1 or a missing library give); the next test guards the kernel's.
    """
    per_variable = _per_variable_op_counts(_update_ops(optimizer_class, [(5, 3), (3,), (4, 4)], use_kernel=False))
    assert sum(per_variable.values()) <= 15, per_variable
    assert per_variable["ApplyGradientDescent"] == 3, per_variable  # m, v and θ, each in one kernel
    assert not {"Assign", "AssignSub", "IsNan", "Select", "SelectV2"} & set(per_variable), per_variable
    assert "VarianceAdaptedStep" not in per_variable


@pytest.mark.parametrize("optimizer_class", [MSVAGOptimizer, SVAGOptimizer])
def test_the_kernel_update_is_one_fused_op_and_the_theta_update_per_variable(optimizer_class):
    """With the library built (tests/test_msvag_kernel.py checks that it is): one pass, then the SGD kernel."""
    operations = _update_ops(optimizer_class, [(5, 3), (3,), (4, 4)])
    for variable in ("theta0", "theta1", "theta2"):
        per_variable = _per_variable_op_counts(operations, variable)
        if variable == "theta0":  # the first variable's scope also holds the step's scalars, cast once
            del per_variable["Cast"]
        assert per_variable == {"VarianceAdaptedStep": 1, "ApplyGradientDescent": 1}, (variable, per_variable)
    assert sum(op.type == "VarianceAdaptedStep" for op in operations) == 3


@pytest.mark.parametrize("momentum", [True, False], ids=["msvag", "svag"])
def test_gamma_is_the_cancelled_formula_bit_for_bit_where_nothing_overflows(momentum):
    """γ as the docstring's first formula, m²/(m² + w·max(c v - m², 0)), in float32 op by op: equal bits.

    The NaN-free form only adds a clamp that is the identity on finite m² and a multiply that differs from
    a plain one only where w = 0 and the excess is infinite; an edit that reorders the arithmetic fails here.
    """
    rng = np.random.default_rng(5)
    count = 20000
    m_t = (rng.normal(0.0, 1.0, count) * 10.0 ** rng.integers(-6, 6, count)).astype(np.float32)
    v_t = (m_t.astype(np.float64) ** 2 * rng.uniform(0.5, 50.0, count)).astype(np.float32)
    m_t[:20], v_t[:20] = 0.0, 0.0
    with tf.Graph().as_default(), tf.Session() as session:
        t = tf.placeholder(tf.float32, [])
        scalars = step_scalars(t, tf.constant(0.9), momentum).cast(tf.float32)
        m_const, v_const = tf.constant(m_t), tf.constant(v_t)
        found = variance_adaptation(m_const, v_const, scalars)
        m_sq = tf.square(m_const)
        excess = tf.maximum(scalars.bias_correction * v_const - m_sq, 0.0)
        literal = tf.math.divide_no_nan(m_sq, m_sq + scalars.variance_weight * excess)
        for step in (1.0, 2.0, 5.0, 300.0):
            got, want = session.run([found, literal], {t: step})
            assert np.all(np.isfinite(want))
            np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32), err_msg=f"t={step}")
            if step == 1.0:
                assert np.all(got[20:] == 1.0)  # w_1 = 0: the plain first step
            else:
                assert 0.01 < np.mean(got) < 0.99  # the adaptation is exercised


def test_overflow_gives_the_documented_gamma():
    """m_t² overflowing: γ = 0; v_t overflowing: γ = 0 for t > 1, 1 at t = 1 (module docstring)."""
    m_t = np.array([2e19, -2e19, 1e10, 1e10, 3.0], np.float32)
    v_t = np.array([1.0, np.inf, np.inf, 1e30, 95.0], np.float32)
    with tf.Graph().as_default(), tf.Session() as session:
        t = tf.placeholder(tf.float32, [])
        for momentum in (True, False):
            scalars = step_scalars(t, tf.constant(0.9), momentum).cast(tf.float32)
            gamma = variance_adaptation(tf.constant(m_t), tf.constant(v_t), scalars)
            first, later = (session.run(gamma, {t: step}) for step in (1.0, 2.0))
            np.testing.assert_array_equal(first, [0.0, 0.0, 1.0, 1.0, 1.0])
            assert list(later[:3]) == [0.0, 0.0, 0.0] and np.all((later[3:] > 0.0) & (later[3:] < 1.0)), later
