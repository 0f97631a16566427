"""M-SVAG and SVAG against a plain numpy reading of the paper's equations (arXiv:1705.07774).

The problem is a noisy quadratic f(θ) = ½ Σ a_i (θ_i - b_i)² whose gradient noise ξ comes from a
fixed-seed numpy stream fed through a placeholder, so that TF and numpy see the same noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tasks.core.errors import ConfigError
from tasks.training.msvag import MSVAGOptimizer, SVAGOptimizer, variance_adapted_step

tf.disable_v2_behavior()

LEARNING_RATE = 0.1
BETA = 0.9
SHAPES = [(4,), (2, 3)]  # two variables, so that slots are per variable
SIZE = sum(int(np.prod(shape)) for shape in SHAPES)

OPTIMIZERS = {"msvag": MSVAGOptimizer, "svag": SVAGOptimizer}


def quadratic(seed: int = 0):
    """Curvatures a, minimum b and start θ_0, as flat float32 vectors."""
    rng = np.random.default_rng(seed)
    curvature = rng.uniform(0.5, 2.0, SIZE).astype(np.float32)
    minimum = rng.normal(0.0, 1.0, SIZE).astype(np.float32)
    start = (minimum + rng.normal(0.0, 2.0, SIZE)).astype(np.float32)
    return curvature, minimum, start


def noise_stream(steps: int, seed: int = 1705, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, scale, (steps, SIZE)).astype(np.float32)


# --- the numpy reference: float64, straight from the equations -----------------------------------


def numpy_reference(start, curvature, minimum, noise, momentum: bool):
    """θ after len(noise) steps of M-SVAG (momentum=True) or SVAG, and every γ_t seen on the way."""
    theta = start.astype(np.float64)
    a, b = curvature.astype(np.float64), minimum.astype(np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    gammas = []
    for t, xi in enumerate(noise.astype(np.float64), start=1):
        g = a * (theta - b) + xi
        m = BETA * m + (1 - BETA) * g
        v = BETA * v + (1 - BETA) * g**2
        m_hat = m / (1 - BETA**t)
        v_hat = v / (1 - BETA**t)
        rho = (1 - BETA) ** 2 * (1 - BETA ** (2 * t)) / ((1 - BETA**t) ** 2 * (1 - BETA**2))
        rho = min(rho, 1 - 1e-7)
        s = (v_hat - m_hat**2) / (1 - rho)
        with np.errstate(invalid="ignore", divide="ignore"):
            if momentum:
                gamma = m_hat**2 / (m_hat**2 + rho * s)
            else:
                gamma = m_hat**2 / (m_hat**2 + s)
        gamma = np.clip(np.nan_to_num(gamma, nan=0.0), 0.0, 1.0)
        gammas.append(gamma)
        theta = theta - LEARNING_RATE * gamma * (m_hat if momentum else g)
    return theta, np.array(gammas)


# --- the TF side ---------------------------------------------------------------------------------


class QuadraticGraph:
    """A fresh graph with the quadratic, one optimizer, its train op and a session."""

    def __init__(self, name: str, use_resource: bool, seed: int = 0):
        curvature, minimum, start = quadratic(seed)
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(seed)
            self.noise = tf.placeholder(tf.float32, [SIZE], name="noise")
            self.params = []
            offset = 0
            loss = 0.0
            for index, shape in enumerate(SHAPES):
                size = int(np.prod(shape))
                piece = slice(offset, offset + size)
                offset += size
                theta = tf.get_variable(
                    f"theta{index}",
                    initializer=start[piece].reshape(shape),
                    use_resource=use_resource,
                )
                flat = tf.reshape(theta, [-1])
                loss += 0.5 * tf.reduce_sum(curvature[piece] * tf.square(flat - minimum[piece]))
                loss += tf.reduce_sum(self.noise[piece] * flat)
                self.params.append(theta)
            self.optimizer = OPTIMIZERS[name](LEARNING_RATE, beta=BETA)
            self.train_op = self.optimizer.minimize(loss)
            self.saver = tf.train.Saver()
            self.init = tf.global_variables_initializer()
        self.session = tf.Session(
            graph=self.graph, config=tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        )
        self.session.run(self.init)

    def run(self, noise: np.ndarray) -> None:
        for xi in noise:
            self.session.run(self.train_op, {self.noise: xi})

    def theta(self) -> np.ndarray:
        return np.concatenate([value.ravel() for value in self.session.run(self.params)])

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def graphs():
    opened = []

    def open_graph(*args, **kwargs):
        opened.append(QuadraticGraph(*args, **kwargs))
        return opened[-1]

    yield open_graph
    for graph in opened:
        graph.close()


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_matches_numpy_reference_for_100_steps(graphs, name, use_resource):
    curvature, minimum, start = quadratic()
    noise = noise_stream(100)
    expected, gammas = numpy_reference(start, curvature, minimum, noise, momentum=name == "msvag")

    quad = graphs(name, use_resource)
    quad.run(noise)
    difference = np.max(np.abs(quad.theta() - expected))
    print(f"{name} {'resource' if use_resource else 'ref'}: max |θ_tf - θ_numpy| = {difference:.3g}")

    assert difference < 1e-5
    # The run exercised the adaptation, not only γ = 1 or γ = 0, and moved θ well away from θ_0.
    assert gammas.min() < 0.2 and gammas.max() > 0.9
    assert np.max(np.abs(expected - start)) > 0.5


def test_variables_are_ref_or_resource_as_asked(graphs):
    """Guards the parametrization above: the two kinds really reach _apply_dense / _resource_apply_dense."""
    from tensorflow.python.ops import resource_variable_ops

    assert not any(resource_variable_ops.is_resource_variable(v) for v in graphs("msvag", False).params)
    assert all(resource_variable_ops.is_resource_variable(v) for v in graphs("msvag", True).params)


def test_gamma_stays_in_unit_interval_for_extreme_moments():
    rng = np.random.default_rng(7)
    count = 2000
    grad = rng.normal(0.0, 1.0, count) * 10.0 ** rng.integers(-20, 20, count)
    grad[:50] = 0.0
    m = rng.normal(0.0, 1.0, count) * 10.0 ** rng.integers(-20, 20, count)
    m[50:100] = 0.0
    v = np.abs(rng.normal(0.0, 1.0, count)) * 10.0 ** rng.integers(-30, 30, count)
    v[100:150] = 0.0  # inconsistent with m on purpose: v < m² makes v̂ - m̂² negative
    with tf.Graph().as_default(), tf.Session() as session:
        t = tf.placeholder(tf.float32, [])
        outputs = {
            momentum: variance_adapted_step(
                tf.constant(grad, tf.float32),
                tf.constant(m, tf.float32),
                tf.constant(v, tf.float32),
                t,
                tf.constant(BETA),
                uses_momentum=momentum,
            )[2]
            for momentum in (True, False)
        }
        for step in (1.0, 2.0, 3.0, 50.0, 1e4):
            for gamma in session.run(outputs, {t: step}).values():
                assert np.all(np.isfinite(gamma))
                assert gamma.min() >= 0.0 and gamma.max() <= 1.0


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_zero_and_constant_gradients(name, use_resource):
    """g ≡ 0 leaves θ and the state at 0 without NaN; a constant g has no variance, so γ = 1."""
    with tf.Graph().as_default(), tf.Session() as session:
        still = tf.get_variable("still", initializer=np.arange(3, dtype=np.float32), use_resource=use_resource)
        moving = tf.get_variable("moving", initializer=np.zeros(3, np.float32), use_resource=use_resource)
        constant_grad = np.array([1.0, -2.0, 0.5], np.float32)
        optimizer = OPTIMIZERS[name](LEARNING_RATE, beta=BETA)
        train_op = optimizer.apply_gradients([(tf.zeros([3]), still), (tf.constant(constant_grad), moving)])
        session.run(tf.global_variables_initializer())
        for _ in range(10):
            session.run(train_op)
        still_value, moving_value, m, v = session.run(
            [still, moving, optimizer.get_slot(still, "m"), optimizer.get_slot(still, "v")]
        )
    np.testing.assert_array_equal(still_value, np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(m, 0.0)
    np.testing.assert_array_equal(v, 0.0)
    np.testing.assert_allclose(moving_value, -10 * LEARNING_RATE * constant_grad, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_is_in_global_variables_and_counts_steps(graphs, name):
    quad = graphs(name, use_resource=False)
    quad.run(noise_stream(7))
    with quad.graph.as_default():
        global_names = {variable.op.name for variable in tf.global_variables()}
        trainable_names = {variable.op.name for variable in tf.trainable_variables()}
        state = quad.optimizer.variables()
    state_names = {variable.op.name for variable in state}

    assert len(state) == 2 * len(SHAPES) + 1  # m and v per variable, one step counter
    assert state_names <= global_names
    assert not state_names & trainable_names
    assert set(quad.optimizer.get_slot_names()) == {"m", "v"}
    with quad.graph.as_default():
        counter = quad.optimizer.step_counter()
    assert counter.op.name in global_names
    assert quad.session.run(counter) == 7.0


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resume_from_checkpoint_is_bit_identical(graphs, tmp_path, name, use_resource):
    noise = noise_stream(40)

    uninterrupted = graphs(name, use_resource)
    uninterrupted.run(noise)

    first_half = graphs(name, use_resource)
    first_half.run(noise[:20])
    checkpoint = first_half.saver.save(first_half.session, str(tmp_path / "model.ckpt"))
    first_half.close()

    resumed = graphs(name, use_resource)
    resumed.saver.restore(resumed.session, checkpoint)
    with resumed.graph.as_default():
        assert resumed.session.run(resumed.optimizer.step_counter()) == 20.0
    resumed.run(noise[20:])

    np.testing.assert_array_equal(resumed.theta(), uninterrupted.theta())


@pytest.mark.parametrize("use_resource", [False, True], ids=["ref", "resource"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_sparse_gradient_matches_dense(name, use_resource):
    """A gathered row set (IndexedSlices, with a repeated row) steps as the same loss written densely."""
    rows = np.array([0, 2, 2])
    selection = np.zeros((len(rows), 5), np.float32)
    selection[np.arange(len(rows)), rows] = 1.0
    target = np.random.default_rng(3).normal(size=(len(rows), 3)).astype(np.float32)
    results = []
    for sparse in (True, False):
        with tf.Graph().as_default(), tf.Session() as session:
            table = tf.get_variable("table", initializer=np.ones((5, 3), np.float32), use_resource=use_resource)
            picked = tf.gather(table, rows) if sparse else tf.matmul(selection, table)
            loss = 0.5 * tf.reduce_sum(tf.square(picked - target))
            optimizer = OPTIMIZERS[name](LEARNING_RATE, beta=BETA)
            grad = optimizer.compute_gradients(loss, [table])[0][0]
            assert isinstance(grad, tf.IndexedSlices) == sparse
            train_op = optimizer.apply_gradients([(grad, table)])
            session.run(tf.global_variables_initializer())
            for _ in range(20):
                session.run(train_op)
            results.append(session.run(table))
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)
    assert not np.allclose(results[0], 1.0)


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5, 1.5])
def test_beta_outside_open_unit_interval_is_a_config_error(beta):
    with pytest.raises(ConfigError, match="beta"):
        MSVAGOptimizer(0.1, beta=beta)
