"""M-SVAG/SVAG's cheaper formulation against the paper's equations read literally, and its cost in ops.

tests/test_msvag.py checks whole runs against a numpy reference; these check the pieces: the per-step
scalars, γ for one step at several t, and that per-step work is done once per apply, not per variable.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tasks.training.msvag import RHO_CAP, MSVAGOptimizer, SVAGOptimizer, step_scalars, variance_adapted_step
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


def _update_ops(optimizer_class, shapes):
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.Variable(tf.ones(shape), name=f"theta{index}") for index, shape in enumerate(shapes)]
        loss = tf.add_n([tf.reduce_sum(tf.square(variable)) for variable in variables])
        optimizer_class(0.1).minimize(loss)
    return graph.get_operations()


@pytest.mark.parametrize("optimizer_class", [MSVAGOptimizer, SVAGOptimizer])
def test_per_step_scalars_are_built_once_per_apply_not_per_variable(optimizer_class):
    few = _update_ops(optimizer_class, [(5, 3), (3,)])
    many = _update_ops(optimizer_class, [(5, 3), (3,), (4, 4), (4,), (2, 7), (7,)])
    assert [op.type for op in few if op.type == "Pow"] == ["Pow", "Pow"]  # β^t and β^2t, once
    assert [op.type for op in many if op.type == "Pow"] == ["Pow", "Pow"]
    # Per variable: the elementwise math, two in-place slot updates and one fused θ update, nothing scalar.
    per_variable = collections.Counter(
        op.type for op in many if "/update_theta3/" in op.name and op.type not in ("Const", "NoOp")
    )
    assert sum(per_variable.values()) <= 18, per_variable
    assert per_variable["ApplyGradientDescent"] == 1 and per_variable["AssignSub"] == 2
    assert "Assign" not in per_variable  # no copy into the slots
    assert not {"Pow", "Cast", "Minimum", "RealDiv"} & set(per_variable), per_variable
