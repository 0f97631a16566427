"""SSD and M-SSD against a numpy reading of the paper's equations (arXiv:1705.07774), and their edge cases.

The dense problem is a noisy quadratic f(θ) = ½ Σ a_i (θ_i - b_i)² + ξ·θ whose noise ξ comes from a
fixed-seed numpy stream fed through a placeholder, so that TF and numpy see the same gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.core.errors import ConfigError
from tasks.training.sign import MSSDOptimizer, SSDOptimizer
from tasks.training.tf1 import tf

LEARNING_RATE = 0.01
BETA = 0.9
SHAPES = [(4,), (2, 3)]  # two variables, so that slots are per variable
SIZE = sum(int(np.prod(shape)) for shape in SHAPES)
STEPS = 300
OPTIMIZERS = {"ssd": SSDOptimizer, "mssd": MSSDOptimizer}
KINDS = pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])


def make_optimizer(name: str, beta: float = BETA):
    return SSDOptimizer(LEARNING_RATE) if name == "ssd" else MSSDOptimizer(LEARNING_RATE, beta=beta)


def session():
    return tf.Session(config=tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1))


# --- the numpy reference: float64, the equations of tasks/training/sign.py's docstring ------------


def numpy_reference(start, gradient_of, steps: int, momentum: bool, beta: float = BETA):
    """θ_1..θ_steps and the sign taken at each step; `gradient_of(t, θ)` gives g_t at θ_{t-1}."""
    theta = start.astype(np.float64)
    m = np.zeros_like(theta)
    thetas, signs = [], []
    for t in range(1, steps + 1):
        g = gradient_of(t, theta)
        m = beta * m + (1 - beta) * g
        signs.append(np.sign(m if momentum else g))
        theta = theta - LEARNING_RATE * signs[-1]
        thetas.append(theta)
    return np.array(thetas), np.array(signs)


def noisy_quadratic(seed: int = 0):
    """(curvature a, minimum b, start θ_0, noise ξ per step), float32; θ_0 is a few hundred steps from b."""
    rng = np.random.default_rng(seed)
    curvature = rng.uniform(0.5, 2.0, SIZE).astype(np.float32)
    minimum = rng.normal(0.0, 1.0, SIZE).astype(np.float32)
    start = (minimum + rng.choice([-1.0, 1.0], SIZE) * rng.uniform(0.5, 1.5, SIZE)).astype(np.float32)
    noise = rng.normal(0.0, 1.0, (STEPS, SIZE)).astype(np.float32)
    return curvature, minimum, start, noise


def tf_quadratic_trajectory(name: str, use_resource: bool):
    """θ after each of STEPS steps of the TF optimizer on the noisy quadratic."""
    curvature, minimum, start, noise = noisy_quadratic()
    with tf.Graph().as_default(), session() as sess:
        xi = tf.placeholder(tf.float32, [SIZE])
        params, offset, loss = [], 0, 0.0
        for index, shape in enumerate(SHAPES):
            piece = slice(offset, offset + int(np.prod(shape)))
            offset = piece.stop
            theta = tf.get_variable(f"theta{index}", initializer=start[piece].reshape(shape), use_resource=use_resource)
            flat = tf.reshape(theta, [-1])
            loss += 0.5 * tf.reduce_sum(curvature[piece] * tf.square(flat - minimum[piece]))
            loss += tf.reduce_sum(xi[piece] * flat)
            params.append(theta)
        train_op = make_optimizer(name).minimize(loss)
        flat_theta = tf.concat([tf.reshape(theta, [-1]) for theta in params], 0)
        sess.run(tf.global_variables_initializer())
        trajectory = []
        for step_noise in noise:
            sess.run(train_op, {xi: step_noise})
            trajectory.append(sess.run(flat_theta))
    return np.array(trajectory)


@KINDS
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_dense_steps_match_the_numpy_reference(name, use_resource):
    curvature, minimum, start, noise = noisy_quadratic()
    a, b, xi = curvature.astype(np.float64), minimum.astype(np.float64), noise.astype(np.float64)
    expected, signs = numpy_reference(start, lambda t, theta: a * (theta - b) + xi[t - 1], STEPS, name == "mssd")
    found = tf_quadratic_trajectory(name, use_resource)
    # A single sign taken differently moves a coordinate by 2α = 0.02; float32 rounding of θ stays far below.
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-4)
    # Every step moves each coordinate by α (no sign was 0), and θ went from far away to near the minimum.
    assert np.all(np.abs(np.diff(found, axis=0)) > 0.99 * LEARNING_RATE)
    assert np.mean(np.abs(expected[-100:] - b)) < 0.3 * np.mean(np.abs(start - b))
    if name == "mssd":  # the momentum mattered: sign(m) and sign(g) disagree on many steps
        gradient_signs = np.sign(a * (np.vstack([start, expected[:-1]]) - b) + xi)
        assert np.mean(signs != gradient_signs) > 0.1


@KINDS
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_first_step_is_exactly_minus_alpha_times_the_sign_of_the_gradient(name, use_resource):
    """At t = 1, m_1 = (1-β) g_1 has the sign of g_1: both optimizers step θ_0 - α sign(g_1), bit for bit."""
    start = np.array([0.3, -1.7, 2.5, 1e-3], np.float32)
    grad = np.array([-4.0, 0.25, 1e-6, -3e3], np.float32)
    with tf.Graph().as_default(), session() as sess:
        theta = tf.get_variable("theta", initializer=start, use_resource=use_resource)
        optimizer = make_optimizer(name)
        step = optimizer.apply_gradients([(tf.constant(grad), theta)])
        sess.run(tf.global_variables_initializer())
        sess.run(step)
        theta_1 = sess.run(theta)
        m_1 = sess.run(optimizer.get_slot(theta, "m")) if name == "mssd" else None
    np.testing.assert_array_equal(theta_1, start - np.float32(LEARNING_RATE) * np.sign(grad))
    if name == "mssd":
        np.testing.assert_array_equal(m_1, np.float32(1 - BETA) * grad)


@KINDS
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_sign_of_zero_is_zero_no_step(name, use_resource):
    """Per coordinate (g_1, g_2): (0, 0); (1, -0.5), so that M-SSD's m_2 = 0 exactly; (1, 0)."""
    beta = 0.5  # exact in binary: m_2 = 0.5 - 0.5·(0.5 + 0.5) = 0 with no rounding
    gradients = np.array([[0.0, 1.0, 1.0], [0.0, -0.5, 0.0]], np.float32)
    start = np.array([1.0, 1.0, 1.0], np.float32)
    with tf.Graph().as_default(), session() as sess:
        theta = tf.get_variable("theta", initializer=start, use_resource=use_resource)
        grad = tf.placeholder(tf.float32, [3])
        optimizer = make_optimizer(name, beta=beta)
        step = optimizer.apply_gradients([(grad, theta)])
        sess.run(tf.global_variables_initializer())
        thetas = []
        for g in gradients:
            sess.run(step, {grad: g})
            thetas.append(sess.run(theta))
        m = sess.run(optimizer.get_slot(theta, "m")) if name == "mssd" else None
    alpha = np.float32(LEARNING_RATE)
    if name == "ssd":
        # g = 0 never moves; step 2 moves the second coordinate back up, the third not at all.
        np.testing.assert_array_equal(thetas[1], [1.0, 1.0 - alpha + alpha, 1.0 - alpha])
    else:
        # m stays 0 on the first coordinate; m_2 = 0 stops the second; the third keeps going on m_2 = 0.25.
        np.testing.assert_array_equal(m, [0.0, 0.0, 0.25])
        np.testing.assert_array_equal(thetas[1], [1.0, 1.0 - alpha, 1.0 - alpha - alpha])
    assert thetas[0][0] == 1.0


@KINDS
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_sparse_gradient_steps_as_the_dense_gradient_with_zero_rows(name, use_resource):
    """tf.gather on a table gives IndexedSlices (rows repeat, some rows go missing some steps); every
    step equals the dense step with zeros in the missing rows: M-SSD's m decays on every row."""
    rows_per_step = [[0, 1, 1], [1], [1, 3], [1]]  # row 2 never; row 0 only at step 1
    coefficients = np.random.default_rng(5).normal(size=(len(rows_per_step), 3, 2)).astype(np.float32)
    start = np.ones((4, 2), np.float32)
    with tf.Graph().as_default(), session() as sess:
        table = tf.get_variable("table", initializer=start, use_resource=use_resource)
        rows = tf.placeholder(tf.int32, [None])
        coefficient = tf.placeholder(tf.float32, [None, 2])
        loss = tf.reduce_sum(tf.gather(table, rows) * coefficient)  # gradient: `coefficient` on `rows`
        optimizer = make_optimizer(name)
        grad = optimizer.compute_gradients(loss, [table])[0][0]
        assert isinstance(grad, tf.IndexedSlices)
        step = optimizer.apply_gradients([(grad, table)])
        sess.run(tf.global_variables_initializer())
        found = []
        for index, picked in enumerate(rows_per_step):
            sess.run(step, {rows: picked, coefficient: coefficients[index, : len(picked)]})
            found.append(sess.run(table))

    def dense_gradient(t, theta):
        g = np.zeros_like(theta)
        np.add.at(g, rows_per_step[t - 1], coefficients[t - 1, : len(rows_per_step[t - 1])].astype(np.float64))
        return g

    expected, signs = numpy_reference(start, dense_gradient, len(rows_per_step), name == "mssd")
    np.testing.assert_allclose(np.array(found), expected, rtol=0, atol=1e-6)
    assert np.all(found[-1][2] == 1.0)  # a row never gathered never moves
    moves_of_row_0 = int(np.sum(np.any(signs[:, 0] != 0, axis=-1)))
    assert moves_of_row_0 == (len(rows_per_step) if name == "mssd" else 1)


@KINDS
def test_resumed_mssd_is_bit_identical(tmp_path, use_resource):
    """m is a global variable: a Saver checkpoints it, and a restored run continues exactly."""
    _, _, start, noise = noisy_quadratic()

    def build():
        graph = tf.Graph()
        with graph.as_default():
            theta = tf.get_variable("theta", initializer=start, use_resource=use_resource)
            xi = tf.placeholder(tf.float32, [SIZE])
            optimizer = MSSDOptimizer(LEARNING_RATE, beta=BETA)
            step = optimizer.minimize(0.5 * tf.reduce_sum(tf.square(theta)) + tf.reduce_sum(xi * theta))
            state = optimizer.variables()
            assert [v.op.name for v in state] == ["theta/MSSD"]
            assert {v.op.name for v in state} <= {v.op.name for v in tf.global_variables()}
            assert not set(state) & set(tf.trainable_variables())
            saver, init = tf.train.Saver(), tf.global_variables_initializer()
        sess = tf.Session(graph=graph)
        sess.run(init)
        return sess, theta, step, xi, saver

    straight = build()
    for step_noise in noise[:40]:
        straight[0].run(straight[2], {straight[3]: step_noise})
    first = build()
    for step_noise in noise[:20]:
        first[0].run(first[2], {first[3]: step_noise})
    checkpoint = first[4].save(first[0], str(tmp_path / "model.ckpt"))
    resumed = build()
    resumed[4].restore(resumed[0], checkpoint)
    for step_noise in noise[20:40]:
        resumed[0].run(resumed[2], {resumed[3]: step_noise})
    np.testing.assert_array_equal(resumed[0].run(resumed[1]), straight[0].run(straight[1]))
    for sess, *_ in (straight, first, resumed):
        sess.close()


def test_ssd_has_no_state():
    with tf.Graph().as_default():
        theta = tf.get_variable("theta", initializer=np.ones(3, np.float32))
        optimizer = SSDOptimizer(LEARNING_RATE)
        optimizer.minimize(tf.reduce_sum(tf.square(theta)))
        assert optimizer.variables() == [] and optimizer.get_slot_names() == []
        assert [v.op.name for v in tf.global_variables()] == ["theta"]


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_beta_outside_open_unit_interval_is_a_config_error(beta):
    with pytest.raises(ConfigError, match="beta"):
        MSSDOptimizer(0.1, beta=beta)
