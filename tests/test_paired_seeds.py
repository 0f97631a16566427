"""Paired seeds: for one seed, every optimizer starts from the same weights and sees the same data order.

So a comparison of optimizers at a seed differs in the optimizer alone. Checked on the real code path:
`build_training_graph` and its `init` op (fed the resident arrays, as the training loop does) for every
registered optimizer and model; and `train_run` itself, whose session feeds are recorded.

Why it holds: with a graph seed, TF gives each random op without its own seed the count of random ops
created before it in the graph as op seed, and the graph creates the model variables before any
optimizer code runs. One extra random op before the model, for one optimizer, fails these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.core.config import ModelConfig, parse_config
from tasks.core.registry import MODEL_PARAMS, OPTIMIZER_PARAMS
from tasks.core.runs import OptimizerSettings, run_settings
from tasks.data.arrays import write_arrays, write_indices
from tasks.training import loop
from tasks.training.graph import build_training_graph
from tasks.training.tf1 import tf
from tests.synthetic import make_images_labels

# Small enough to build 4 models × every optimizer in seconds; the CNNs are only initialised.
TRAIN_ROWS, BATCH = 4, 2  # every row trains here: data rows = training rows
MODELS = {"logreg": {}, "mlp": {"hidden": [8, 4]}, "cnn_2c2d": {}, "cnn_p1": {}}


def initial_weights(model: str, optimizer: str, seed: int) -> dict[str, np.ndarray]:
    """The model variables right after the graph's `init`, as the training loop runs it."""
    graph = build_training_graph(
        ModelConfig(name=model, params=MODELS[model]),
        OptimizerSettings(name=optimizer, learning_rate=0.01),
        seed,
        TRAIN_ROWS,
        TRAIN_ROWS // BATCH,
        BATCH,
    )
    images, labels = make_images_labels(TRAIN_ROWS, seed=0)
    config = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    with tf.Session(graph=graph.graph, config=config) as session:
        session.run(graph.init, {graph.images_init: images, graph.labels_init: labels.astype(np.int32)})
        return graph.weights(session)


def test_every_model_is_covered():
    assert set(MODELS) == set(MODEL_PARAMS)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_optimizer_starts_from_the_same_weights(model):
    seed = 7
    reference_optimizer, *others = sorted(OPTIMIZER_PARAMS)
    reference = initial_weights(model, reference_optimizer, seed)
    assert all(name.startswith(f"model/{model}/") for name in reference)
    # Random, not a constant: the weights are Glorot draws that a seed can change.
    assert all(np.std(value) > 0 for name, value in reference.items() if name.endswith("weights"))
    for optimizer in others:
        weights = initial_weights(model, optimizer, seed)
        assert sorted(weights) == sorted(reference), optimizer
        for name, value in weights.items():
            assert value.tobytes() == reference[name].tobytes(), f"{model}: {optimizer} differs in {name}"
    other_seed = initial_weights(model, reference_optimizer, seed + 1)
    assert all(other_seed[name].tobytes() != value.tobytes() for name, value in reference.items() if "weights" in name)


# --- the data order, through the training loop -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory) -> tuple[Path, Path]:
    """(train.arrow, split.arrow): 60 rows, one validation row per class, so 50 training rows."""
    folder = tmp_path_factory.mktemp("paired")
    images, labels = make_images_labels(60, seed=3)
    write_arrays(folder / "train.arrow", images, labels)
    write_indices(folder / "split.arrow", np.sort([np.flatnonzero(labels == c)[0] for c in range(10)]))
    return folder / "train.arrow", folder / "split.arrow"


def settings_for(optimizer: str) -> dict:
    config = parse_config(
        {
            "experiment": "paired",
            "model": {"name": "logreg"},
            "training": {"epochs": 3, "batch_size": 10},
            "split": {"validation_per_class": 1, "seed": 0},
            "seeds": [0],
            "optimizers": [{"name": optimizer, "learning_rate": 0.01}],
        }
    )
    return run_settings(config, config.optimizers[0], 0.01).as_dict()


def recording_session(base: type, fed: list) -> type:
    """A `base` (tf.Session) subclass that appends every array fed to the epoch's order placeholder to `fed`."""

    class RecordingSession(base):
        def run(self, fetches, feed_dict=None, **kwargs):
            for key, value in (feed_dict or {}).items():
                if getattr(key, "name", "") == "data/order_init:0":
                    fed.append(np.array(value, copy=True))
            return super().run(fetches, feed_dict, **kwargs)

    return RecordingSession


def fed_orders(tiny_split, tmp_path: Path, monkeypatch, optimizer: str, seed: int) -> list[np.ndarray]:
    """The row orders `train_run` fed, epoch by epoch, for a 3-epoch logreg run."""
    fed: list[np.ndarray] = []
    with monkeypatch.context() as patch:
        patch.setattr(tf, "Session", recording_session(tf.Session, fed))
        record = loop.train_run(settings_for(optimizer), seed, *tiny_split, tmp_path / f"{optimizer}-{seed}")
    assert record["status"] == "completed" and record["epochs_completed"] == 3
    return fed


def test_two_optimizers_with_one_seed_see_the_same_rows_in_the_same_order(tiny_split, tmp_path, monkeypatch):
    sgd = fed_orders(tiny_split, tmp_path, monkeypatch, "sgd", seed=4)
    mssd = fed_orders(tiny_split, tmp_path, monkeypatch, "mssd", seed=4)
    assert len(sgd) == len(mssd) == 3  # one order per epoch
    for epoch, (first, second) in enumerate(zip(sgd, mssd), start=1):
        assert first.shape == (5, 10)  # 50 training rows, batch 10
        np.testing.assert_array_equal(first, second, err_msg=f"epoch {epoch}")
        assert len(np.unique(first)) == 50  # each training row once per epoch
    assert not np.array_equal(sgd[0], sgd[1])  # a new order every epoch
    other_seed = fed_orders(tiny_split, tmp_path, monkeypatch, "mssd", seed=5)
    assert not np.array_equal(other_seed[0], mssd[0])
