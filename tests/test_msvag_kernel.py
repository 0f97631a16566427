"""The fused M-SVAG/SVAG kernel (tasks/training/kernels) is bit-identical to the pure-TF path, and falls back to it.

Its build and loading: tests/test_kernel_build.py. Each comparison
builds the same graph twice in one process, once with the kernel and once without (use_kernel=False or
FMNIST_PURE_TF=1), checks that the first really holds the custom op, and compares bits, NaN included.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tasks.training import kernels
from tasks.training.msvag import MSVAGOptimizer, SVAGOptimizer
from tasks.training.tf1 import tf
from tests.test_train import LEARNING_RATES, make_settings, read_metrics, train, write_data

KERNEL_OP = "VarianceAdaptedStep"
OPTIMIZERS = {"msvag": MSVAGOptimizer, "svag": SVAGOptimizer}


@pytest.fixture(autouse=True)
def _kernel_not_forced_off(monkeypatch):
    """Every test here starts with the kernel allowed, whatever the environment says."""
    monkeypatch.delenv(kernels.PURE_TF_ENV, raising=False)


class Quadratic:
    """A noisy quadratic in a fresh graph: loss = Σ ½ h (θ - θ*)² + Σ θ·noise, so ∇ = h (θ - θ*) + noise.

    Several variables of different sizes, so the kernel's vectorised loop, its scalar remainder and its split
    over two threads all run. `gradient=True` instead makes the fed values the gradient itself (loss = Σ θ·g).
    """

    SHAPES = ((300, 70), (33, 5), (7,), (1,))

    def __init__(self, optimizer_class, use_kernel, dtype=tf.float32, *, gradient=False):
        self.graph = tf.Graph()
        rng = np.random.default_rng(3)
        with self.graph.as_default():
            tf.set_random_seed(0)
            self.thetas, self.feeds, terms = [], [], []
            for index, shape in enumerate(self.SHAPES):
                theta = tf.Variable(rng.normal(0.0, 1.0, shape), dtype=dtype, name=f"theta{index}")
                fed = tf.placeholder(dtype, shape, name=f"fed{index}")
                curvature = tf.constant(rng.uniform(0.1, 4.0, shape), dtype)
                minimum = tf.constant(rng.normal(0.0, 1.0, shape), dtype)
                if gradient:
                    terms.append(tf.reduce_sum(theta * fed))
                else:
                    terms.append(tf.reduce_sum(0.5 * curvature * tf.square(theta - minimum) + theta * fed))
                self.thetas.append(theta)
                self.feeds.append(fed)
            self.optimizer = optimizer_class(0.1, use_kernel=use_kernel)
            self.train = self.optimizer.minimize(tf.add_n(terms))
            self.state = [
                (theta, self.optimizer.get_slot(theta, "m"), self.optimizer.get_slot(theta, "v"))
                for theta in self.thetas
            ]
            self.op_types = [op.type for op in self.graph.get_operations()]
            init = tf.global_variables_initializer()
        config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=1)
        self.session = tf.Session(graph=self.graph, config=config)
        self.session.run(init)

    def step(self, fed_values):
        self.session.run(self.train, dict(zip(self.feeds, fed_values)))
        return self.session.run(self.state)


def assert_same_bits(kernel_state, pure_state, where):
    for index, (kernel_vars, pure_vars) in enumerate(zip(kernel_state, pure_state)):
        for name, found, expected in zip(("theta", "m", "v"), kernel_vars, pure_vars):
            bits = np.int64 if found.dtype == np.float64 else np.int32
            mismatched = np.flatnonzero(found.view(bits) != expected.view(bits))
            assert mismatched.size == 0, (
                f"{where}: {name}{index} differs at {mismatched.size} coordinates, e.g. {mismatched[:3]}: "
                f"kernel {found.ravel()[mismatched[:3]]} vs pure TF {expected.ravel()[mismatched[:3]]}"
            )


def run_both(optimizer_class, feeds_per_step, dtype=tf.float32, *, gradient=False):
    """Both paths on the same feeds; every step's θ, m and v compared bit for bit. Returns the kernel's last."""
    fused = Quadratic(optimizer_class, True, dtype, gradient=gradient)
    pure = Quadratic(optimizer_class, False, dtype, gradient=gradient)
    assert fused.op_types.count(KERNEL_OP) == len(Quadratic.SHAPES) and KERNEL_OP not in pure.op_types
    state = None
    for step, fed in enumerate(feeds_per_step, start=1):
        state = fused.step(fed)
        assert_same_bits(state, pure.step(fed), f"{optimizer_class.__name__} step {step}")
    return state


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_noisy_quadratic_gives_the_same_bits_for_300_steps(name, dtype):
    rng = np.random.default_rng(1705)
    steps = [[rng.normal(0.0, 2.0, shape) for shape in Quadratic.SHAPES] for _ in range(300)]
    state = run_both(OPTIMIZERS[name], steps, dtype)
    theta = state[0][0]
    assert np.all(np.isfinite(theta)) and np.abs(theta).max() < 10.0  # it converged to a noisy ball, not NaN


# Gradients that reach every branch: zeros (0/0: γ = 0), constants (no variance: c·v - m² is rounding
# noise, clamped at 0, γ = 1), denormals, g² overflowing (|g| > 1.8e19: v = inf), m² overflowing,
# ±inf and NaN, and ordinary values; drawn per coordinate and step, plus columns held constant.
SPECIAL = np.array(
    [0.0, -0.0, 1e-45, -1e-40, 1e-20, 1e-3, -0.5, 1.0, 3.0, -7.0, 1e10, 1e19, -2e19, 1e30, 3.4e38, -3.4e38,
     np.inf, -np.inf, np.nan],
    np.float32,
)  # fmt: skip


def edge_case_feeds(steps: int, seed: int):
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(steps):
        fed = []
        for shape in Quadratic.SHAPES:
            values = SPECIAL[rng.integers(0, SPECIAL.size, shape)].astype(np.float64)
            flat = values.reshape(-1)
            constant = SPECIAL[np.arange(min(flat.size, SPECIAL.size))]
            flat[: constant.size] = constant  # the same value at every step in the first columns
            ordinary = rng.random(flat.size) < 0.5
            flat[ordinary] = rng.normal(0.0, 1.0, ordinary.sum())  # and half of them ordinary
            fed.append(values)
        feeds.append(fed)
    return feeds


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_edge_cases_give_the_same_bits_including_the_first_step_nan_and_overflow(name):
    # The first step is t = 1 (w_1 = 0: the plain step); the later ones hit the γ clamp and overflow.
    state = run_both(OPTIMIZERS[name], edge_case_feeds(12, seed=7), gradient=True)
    m = state[0][1]
    assert np.isnan(m).any() and np.isinf(state[0][2]).any()  # the special values did reach the state


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_constant_and_zero_gradients_give_the_same_bits(name):
    # Constant gradients: v̂ - m̂² is pure cancellation, so the clamp at 0 decides γ; zeros: γ = 0/0 → 0.
    constant = [[np.full(shape, 0.3) if index % 2 else np.zeros(shape) for index, shape in enumerate(Quadratic.SHAPES)]]
    run_both(OPTIMIZERS[name], constant * 50, gradient=True)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_resource_variables_take_the_pure_tf_path(name):
    graph = tf.Graph()
    with graph.as_default():
        theta = tf.Variable(tf.ones([4, 3]), use_resource=True)
        OPTIMIZERS[name](0.1).minimize(tf.reduce_sum(tf.square(theta)))
    types = [op.type for op in graph.get_operations()]
    assert KERNEL_OP not in types and types.count("ResourceApplyGradientDescent") == 3


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_training_loop_gives_the_same_weights_with_and_without_the_kernel(tmp_path, monkeypatch, name):
    """A real 2-epoch MLP run, through train_run, with the kernel and with FMNIST_PURE_TF=1: same sha256."""
    data = write_data(tmp_path)
    settings = make_settings(name, LEARNING_RATES[name], model_params={"hidden": [64, 32]})
    built = []
    real_op = kernels.variance_adapted_step_op
    monkeypatch.setattr(kernels, "variance_adapted_step_op", lambda: built.append(real_op()) or built[-1])
    fused = train(data, tmp_path / "fused", settings)
    assert built and all(op is not None for op in built), "the kernel run did not use the kernel"
    monkeypatch.setenv(kernels.PURE_TF_ENV, "1")
    built.clear()
    pure = train(data, tmp_path / "pure", settings)
    assert built and all(op is None for op in built)
    assert fused["status"] == pure["status"] == "completed"
    assert fused["weights_sha256"] == pure["weights_sha256"]
    assert read_metrics(tmp_path / "fused")["train_loss"] == read_metrics(tmp_path / "pure")["train_loss"]


def test_the_environment_variable_forces_the_pure_tf_path(monkeypatch, caplog):
    for value, expect_kernel in (("1", False), ("yes", False), ("0", True), ("", True)):
        monkeypatch.setenv(kernels.PURE_TF_ENV, value)
        with caplog.at_level(logging.WARNING, logger=kernels.__name__):
            assert (kernels.variance_adapted_step_op() is not None) is expect_kernel, value
            types = Quadratic(MSVAGOptimizer, True).op_types
        assert (KERNEL_OP in types) is expect_kernel, value
    assert not caplog.records


def test_a_missing_library_falls_back_to_the_same_weights_with_one_warning(tmp_path, monkeypatch, caplog):
    missing = tmp_path / "tf-0.0" / kernels.LIBRARY_NAME
    monkeypatch.setattr(kernels, "library_path", lambda version: missing)
    rng = np.random.default_rng(2)
    steps = [[rng.normal(0.0, 1.0, shape) for shape in Quadratic.SHAPES] for _ in range(20)]
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        fallback = Quadratic(MSVAGOptimizer, True)
        again = Quadratic(SVAGOptimizer, True)  # a second optimizer in the process: no second warning
        reference = Quadratic(MSVAGOptimizer, False)
        for fed in steps:
            assert_same_bits(fallback.step(fed), reference.step(fed), "fallback")
    assert KERNEL_OP not in fallback.op_types and KERNEL_OP not in again.op_types
    assert fallback.op_types.count("ApplyGradientDescent") == 3 * len(Quadratic.SHAPES)
    assert len(caplog.records) == 1, [record.getMessage() for record in caplog.records]
    message = caplog.records[0].getMessage()
    assert str(missing) in message and "make kernels" in message and "pure-TF" in message
