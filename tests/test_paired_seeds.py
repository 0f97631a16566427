"""Paired seeds: for one seed, every optimizer starts from the same weights and sees the same data order.

So a comparison of optimizers at a seed differs in the optimizer alone. Checked on the real code path, for
every model and every pair of registered optimizers: `train_run` itself, watched from outside
(tests/runprobe.py): the weights right after its graph's `init`, and the row orders its session was fed in
the first two epochs. A data order or seed shifted for some optimizers only fails here; one shifted for all
of them fails the pinned hashes at the end (which also pin the weights of a tiny run).

Why it holds: with a graph seed, TF gives each random op without its own seed the count of ops created
before it in the graph as op seed, and the graph creates the model variables before any optimizer code
runs; the loop draws each epoch's order from (seed, epoch) alone.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from tasks.core.registry import MODEL_PARAMS, OPTIMIZER_PARAMS
from tasks.training.tf1 import tf
from tests.runprobe import Probe, probe_train_run, settings_for, write_split
from tests.synthetic import make_images_labels

MODELS = {"logreg": {}, "mlp": {"hidden": [8, 4]}, "cnn_2c2d": {}, "cnn_p1": {}}
OPTIMIZERS = sorted(OPTIMIZER_PARAMS)
ROWS, BATCH, SEED = 60, 10, 4  # one validation row per class: 50 training rows, 5 steps per epoch


def test_every_model_is_covered():
    assert set(MODELS) == set(MODEL_PARAMS)


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory) -> tuple[Path, Path]:
    images, labels = make_images_labels(ROWS, seed=3)
    validation = np.array([np.flatnonzero(labels == c)[0] for c in range(10)])
    return write_split(tmp_path_factory.mktemp("paired"), images, labels, validation)


def watch(model: str, optimizer: str, seed: int, split, tmp_path: Path, monkeypatch) -> Probe:
    """A real run's initial weights and first two epochs' orders; stopped right after epoch 2's first steps."""
    settings = settings_for(optimizer, 0.01, model={"name": model, "params": MODELS[model]}, epochs=2, batch_size=BATCH)
    run_dir = tmp_path / f"{model}-{optimizer}-{seed}"
    probe = probe_train_run(monkeypatch, settings, seed, split, run_dir, stop_at=("train.mid-epoch", 2))
    assert len(probe.orders) == 2 and probe.initial_weights, (model, optimizer)
    return probe


def weights_digest(weights: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode() + weights[name].tobytes())
    return digest.hexdigest()


def orders_digest(orders: list[np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(order, np.int32).tobytes() for order in orders)).hexdigest()


# Recorded with this version; op seeds count the ops TF creates, so another TF version may draw other weights.
PINNED_TENSORFLOW = "2.21.0"
# numpy's PCG64 permutation of (seed, epoch): the same under any TensorFlow.
PINNED_ORDERS = "bfcdc09dd50bbe783f4ec22727675ec40523a2932610176e8f8c54416aa3df96"
PINNED_INITIAL_WEIGHTS = {
    "logreg": "9a1c9f5aa50fa2801b45df45e6f9ca87e915bdf0db651d96d72a368524302e53",
    "mlp": "b00254ddf0907c7e4bdd57da03f7e35008da1a4dd2973c54ba0a357538be21ac",
    "cnn_2c2d": "045202ca69cba8903af3176418cd1d90e67e3c01fc09abdb485355c2c915921b",
    "cnn_p1": "a18dbe7adf8f5fb266fd3f817af022b1f69211072796847e4b162b38c4a167d7",
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_optimizer_pair_starts_from_the_same_weights_and_sees_the_same_batches(
    model, tiny_split, tmp_path, monkeypatch
):
    probes = {optimizer: watch(model, optimizer, SEED, tiny_split, tmp_path, monkeypatch) for optimizer in OPTIMIZERS}
    for first, second in itertools.combinations(OPTIMIZERS, 2):
        a, b = probes[first], probes[second]
        for epoch, (order_a, order_b) in enumerate(zip(a.orders, b.orders), start=1):
            np.testing.assert_array_equal(order_a, order_b, err_msg=f"{model}: {first} vs {second}, epoch {epoch}")
        assert sorted(a.initial_weights) == sorted(b.initial_weights), (model, first, second)
        for name, value in a.initial_weights.items():
            assert value.tobytes() == b.initial_weights[name].tobytes(), f"{model}: {first} vs {second} in {name}"

    reference = probes[OPTIMIZERS[0]]
    first_epoch, second_epoch = reference.orders
    assert first_epoch.shape == (5, 10) and len(np.unique(first_epoch)) == 50  # each training row once
    assert not np.array_equal(first_epoch, second_epoch)  # a new order every epoch
    assert all(name.startswith(f"model/{model}/") for name in reference.initial_weights)
    # Random, not a constant: the weights are Glorot draws that a seed can change.
    assert all(np.std(value) > 0 for name, value in reference.initial_weights.items() if name.endswith("weights"))
    assert orders_digest(reference.orders) == PINNED_ORDERS
    if tf.__version__ == PINNED_TENSORFLOW:
        assert weights_digest(reference.initial_weights) == PINNED_INITIAL_WEIGHTS[model]


def test_another_seed_draws_other_weights_and_another_order(tiny_split, tmp_path, monkeypatch):
    one = watch("logreg", "sgd", SEED, tiny_split, tmp_path, monkeypatch)
    other = watch("logreg", "sgd", SEED + 1, tiny_split, tmp_path, monkeypatch)
    assert not np.array_equal(one.orders[0], other.orders[0])
    assert all(one.initial_weights[name].tobytes() != value.tobytes() for name, value in other.initial_weights.items()
               if name.endswith("weights"))  # fmt: skip


# --- a tiny run's weights, pinned ----------------------------------------------------------------------
# One lit pixel per image, each at its own position (255: exactly 1.0 once scaled), so every sum in a
# matmul has a single non-zero term and is exact in any order: the weights do not depend on how this CPU's
# BLAS blocks its sums, only on the data order, the initial weights and the update rule.
PINNED_RUN_SHA256 = "ecbf59d2712449a9a440f91ab72dc23d7db12b3ba20bc91d0a79aa9bbd174a83"
# Its biases and the column sums of its weights: the same to float32 rounding under another TensorFlow.
PINNED_RUN_FINGERPRINT = [
    *(0.010399624705314636, -0.007065950892865658, 0.0015760473906993866, 0.006568517070263624),
    *(0.014806751161813736, -0.009530879557132721, 0.0016365083865821362, -0.0029833163134753704),
    *(-0.006449444685131311, -0.008957818150520325),
    *(0.028346557170152664, -2.072787284851074, 0.05677741765975952, 1.4497690200805664, -1.5782344341278076),
    *(-1.8846250772476196, 1.208362340927124, -1.9144916534423828, 1.3871634006500244, -1.285534143447876),
]


@pytest.fixture(scope="module")
def one_pixel_split(tmp_path_factory) -> tuple[Path, Path]:
    images = np.zeros((ROWS, 784), np.uint8)
    images[np.arange(ROWS), np.arange(ROWS) * 13] = 255
    labels = (np.arange(ROWS) % 10).astype(np.uint8)
    return write_split(tmp_path_factory.mktemp("one-pixel"), images, labels, np.arange(10))


def test_a_tiny_run_trains_to_the_pinned_weights(one_pixel_split, tmp_path, monkeypatch):
    settings = settings_for("sgd", 0.5, model={"name": "logreg"}, epochs=3, batch_size=BATCH)
    record = probe_train_run(monkeypatch, settings, SEED, one_pixel_split, tmp_path / "run").record
    assert record["status"] == "completed"
    reader = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints" / "epoch-0003"))
    weights, biases = (reader.get_tensor(f"model/logreg/output/{name}") for name in ("weights", "biases"))
    fingerprint = [*biases.tolist(), *weights.sum(axis=0).tolist()]
    assert fingerprint == pytest.approx(PINNED_RUN_FINGERPRINT, rel=1e-5, abs=1e-6)
    if tf.__version__ == PINNED_TENSORFLOW:
        assert record["weights_sha256"] == PINNED_RUN_SHA256
