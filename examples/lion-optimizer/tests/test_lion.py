"""Lion's update rule against a numpy recomputation of Algorithm 2 of arXiv:2302.06675."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from lion_optimizer import lion
from lion_optimizer.optimizer import LionOptimizer

tf.disable_v2_behavior()

STEPS = 8


def numpy_lion(theta, gradients, lr, beta1, beta2, weight_decay):
    """Each step's θ of Lion fed `gradients`, in float64 (Algorithm 2 of arXiv:2302.06675)."""
    theta, m, history = theta.astype(np.float64), np.zeros_like(theta, np.float64), []
    for g in gradients.astype(np.float64):
        c = beta1 * m + (1 - beta1) * g
        theta = theta - lr * (np.sign(c) + weight_decay * theta)
        m = beta2 * m + (1 - beta2) * g
        history.append(theta.copy())
    return history


def gradient_sequence():
    """Gradients whose signs flip, so sign(c_t) differs from sign(g_t) and from sign(m_t); one coordinate g = 0."""
    rng = np.random.default_rng(7)
    gradients = rng.normal(size=(STEPS, 6)).astype(np.float32)
    gradients[:, 0] = [5.0, -1.0, -1.0, -1.0, 2.0, -3.0, 0.5, -0.5]  # c and m disagree in sign along the way
    gradients[:, -1] = 0.0
    return gradients


@pytest.mark.parametrize("resource", [False, True])
@pytest.mark.parametrize("params", [{}, {"beta1": 0.5, "beta2": 0.9, "weight_decay": 0.1}])
def test_update_rule_matches_the_equations(resource, params):
    start = np.linspace(-1.0, 1.0, 6).astype(np.float32)
    gradients = gradient_sequence()
    with tf.Graph().as_default(), tf.Session() as session:
        x = tf.get_variable("x", initializer=start, use_resource=resource)
        fed = tf.placeholder(tf.float32, [6])
        optimizer = lion(0.1, **params)
        train_op = optimizer.apply_gradients([(fed, x)])
        session.run(tf.global_variables_initializer())
        got = []
        for gradient in gradients:
            session.run(train_op, {fed: gradient})
            got.append(session.run(x))
    defaults = {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    expected = numpy_lion(start, gradients, 0.1, **{**defaults, **params})
    for step, (value, reference) in enumerate(zip(got, expected), start=1):
        np.testing.assert_allclose(value, reference, rtol=1e-6, atol=1e-6, err_msg=f"step {step}")
    assert isinstance(optimizer, LionOptimizer)
    if not params:  # without weight decay every step is ±η per coordinate, 0 where g = 0 throughout
        steps = np.abs(np.diff(np.stack([start, *got]), axis=0))
        np.testing.assert_allclose(steps[:, :-1], 0.1, rtol=1e-5)
        assert (steps[:, -1] == 0).all()


def test_minimize_steps_downhill():
    with tf.Graph().as_default(), tf.Session() as session:
        x = tf.get_variable("x", initializer=np.array([3.0, -2.0, 0.5], np.float32))
        loss = tf.reduce_sum(tf.square(x))
        train_op = lion(0.1).minimize(loss)
        session.run(tf.global_variables_initializer())
        before = session.run(loss)
        for _ in range(3):
            session.run(train_op)
        assert session.run(loss) < before


def test_the_factory_declares_its_hyper_parameters_as_keyword_only_defaults():
    signature = inspect.signature(lion)
    keyword_only = {name: p.default for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == {"beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}
    assert list(signature.parameters)[0] == "learning_rate"


def test_a_nan_gradient_gives_a_nan_step():
    with tf.Graph().as_default(), tf.Session() as session:
        x = tf.get_variable("x", initializer=np.array([1.0, 2.0], np.float32))
        train_op = lion(0.1).minimize(tf.reduce_sum(x * np.float32(np.nan)))
        session.run(tf.global_variables_initializer())
        session.run(train_op)
        assert np.isnan(session.run(x)).all()
