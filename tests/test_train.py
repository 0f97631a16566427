"""The training loop on a tiny learnable dataset: metrics, determinism, resume, divergence, restore by name."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core import faults
from tasks.core.config import ModelConfig, parse_config
from tasks.core.errors import ConfigError, DataError
from tasks.core.registry import OPTIMIZER_PARAMS
from tasks.core.runfolder import RunFolder, read_latest
from tasks.core.runs import run_settings, settings_hash
from tasks.core.runtables import METRICS_SCHEMA
from tasks.data.arrays import write_arrays, write_indices
from tasks.training import checkpoints, models
from tasks.training import graph as train_graph
from tasks.training.loop import epoch_order, train_run
from tasks.training.tf1 import tf
from tests.synthetic import make_images_labels

ROWS, VALIDATION_PER_CLASS, BATCH = 500, 10, 20  # 400 training rows: 20 steps per epoch
# Rates at which each optimizer clearly learns the synthetic classes within two short epochs.
LEARNING_RATES = {
    "sgd": 0.03,
    "momentum": 0.03,
    "nesterov": 0.01,
    "adam": 0.003,
    "rmsprop": 0.01,
    "adagrad": 0.01,
    "msvag": 0.1,
    "svag": 0.1,
    "ssd": 0.001,
    "mssd": 0.001,
}


def write_data(folder: Path) -> tuple[Path, Path]:
    """(train.arrow, split.arrow): synthetic images, VALIDATION_PER_CLASS held-out rows of each class."""
    images, labels = make_images_labels(ROWS, seed=1)
    rng = np.random.default_rng(0)
    validation = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), VALIDATION_PER_CLASS, replace=False) for c in range(10)]
    )
    write_arrays(folder / "train.arrow", images, labels)
    write_indices(folder / "split.arrow", np.sort(validation))
    return folder / "train.arrow", folder / "split.arrow"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("arrays"))


def make_settings(
    optimizer: str = "sgd",
    learning_rate: float = 0.03,
    *,
    model: str = "mlp",
    model_params: dict | None = None,
    epochs: int = 2,
    batch_size: int = BATCH,
) -> dict:
    """Run settings built through the real config schema (defaults resolved)."""
    config = parse_config(
        {
            "experiment": "unit",
            "model": {
                "name": model,
                "params": {"hidden": [32]} if model_params is None and model == "mlp" else (model_params or {}),
            },
            "training": {"epochs": epochs, "batch_size": batch_size},
            "split": {"validation_per_class": VALIDATION_PER_CLASS, "seed": 0},
            "seeds": [0],
            "optimizers": [{"name": optimizer, "learning_rate": learning_rate}],
        }
    )
    return run_settings(config, config.optimizers[0], learning_rate).as_dict()


def train(data, run_dir: Path, settings: dict | None = None, seed: int = 0, **kwargs) -> dict:
    return train_run(
        settings or make_settings(), seed, data[0], data[1], run_dir, intra_op_threads=2, inter_op_threads=1, **kwargs
    )


def train_until_stopped(data, run_dir: Path, settings: dict | None = None, epochs: int = 1, seed: int = 0) -> None:
    """Train until this call has checkpointed `epochs` epochs, then stop, as a kill right after would."""
    with faults.stop_at("train.epoch-done", epochs), pytest.raises(faults.FailpointStop):
        train(data, run_dir, settings, seed=seed)


def read_metrics(run_dir: Path) -> dict:
    return pq.read_table(run_dir / "metrics.parquet").to_pydict()


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 2-epoch MLP/SGD run with seed 0, shared by the tests that only read it."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    return run_dir, train(data, run_dir)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_PARAMS))
def test_every_optimizer_lowers_the_training_loss(data, tmp_path, optimizer):
    record = train(data, tmp_path / "run", make_settings(optimizer, LEARNING_RATES[optimizer]))
    metrics = read_metrics(tmp_path / "run")
    assert record["status"] == "completed" and metrics["epoch"] == [1, 2]
    first, second = metrics["train_loss"]
    assert math.isfinite(second) and second < 0.9 * first, metrics
    assert metrics["val_loss"][1] < metrics["val_loss"][0]
    assert metrics["train_accuracy"][1] > metrics["train_accuracy"][0]


def test_same_seed_gives_identical_weights_and_another_seed_does_not(data, tmp_path, straight):
    _, first = straight
    again = train(data, tmp_path / "again")
    other = train(data, tmp_path / "other", seed=1)
    assert again["weights_sha256"] == first["weights_sha256"]
    assert read_metrics(tmp_path / "again")["train_loss"] == read_metrics(straight[0])["train_loss"]
    assert other["weights_sha256"] != first["weights_sha256"]


def test_in_graph_loop_equals_one_step_per_call(data, tmp_path, straight, monkeypatch):
    # 20 steps per epoch: chunks of 1 (one step per Session call) and of 3 (a partial last chunk).
    for chunk in (1, 3):
        monkeypatch.setattr(train_graph, "CHUNK_STEPS", chunk)
        record = train(data, tmp_path / f"chunk-{chunk}")
        assert record["weights_sha256"] == straight[1]["weights_sha256"], chunk


def test_a_huge_learning_rate_diverges_without_raising(data, tmp_path):
    run_dir = tmp_path / "run"
    settings = make_settings("sgd", 1e6, model_params={"hidden": [128, 128]}, epochs=2)
    record = train(data, run_dir, settings)
    assert record["status"] == "diverged"
    assert record["diverged_at"]["epoch"] == 1 and 1 <= record["diverged_at"]["step"] <= 20
    assert record["diverged_at"]["global_step"] == record["diverged_at"]["step"]
    assert record["epochs_completed"] == 0 and record["final_checkpoint"] is None
    assert record["weights_sha256"] is None and record["examples_per_second"] is None
    assert not (run_dir / "metrics.parquet").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "diverged"
    # The steps it ran, up to and including the bad one, are counted from the graph's global step.
    assert record["attempt_history"] == [{"attempt": 1, "from_epoch": 0, "steps_run": record["diverged_at"]["step"]}]
    assert RunFolder(run_dir, record["run_hash"], 0).finished  # nothing to rerun: no metrics, no checkpoint needed


def test_a_later_divergence_keeps_the_completed_epochs(data, tmp_path, monkeypatch):
    # SGD whose rate jumps to 1e6 once epoch 1 (20 steps) is done: a divergence in the middle of epoch 2.
    def make_optimizer(settings, rate=None):
        rate = tf.where_v2(tf.train.get_global_step() >= 20, 1e6, settings.learning_rate)
        return tf.train.GradientDescentOptimizer(lambda: rate)

    monkeypatch.setattr(train_graph, "make_optimizer", make_optimizer)
    run_dir = tmp_path / "run"
    record = train(data, run_dir, make_settings(model_params={"hidden": [128, 128]}, epochs=3))
    assert record["status"] == "diverged" and record["diverged_at"]["epoch"] == 2
    assert record["diverged_at"]["global_step"] == 20 + record["diverged_at"]["step"]
    assert record["epochs_completed"] == 1 and read_metrics(run_dir)["epoch"] == [1]
    assert record["final_checkpoint"] == "checkpoints/epoch-0001"
    latest = read_latest(run_dir / "checkpoints")
    assert latest["epoch"] == 1 and latest["weights_sha256"] == record["weights_sha256"]
    assert (
        checkpoints.checkpoint_weights_sha256(run_dir / record["final_checkpoint"], latest["variables"])
        == record["weights_sha256"]
    )


def test_metrics_file_has_the_documented_schema(straight):
    table = pq.read_table(straight[0] / "metrics.parquet")
    assert table.schema.equals(METRICS_SCHEMA)
    assert table.column_names == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "wall_seconds",
        "examples_per_second",
    ]
    assert table.schema.field("epoch").type == pa.int32()
    metrics = table.to_pydict()
    assert metrics["epoch"] == [1, 2]
    for accuracy in metrics["train_accuracy"] + metrics["val_accuracy"]:
        assert 0.0 <= accuracy <= 1.0
    # 100 validation rows: accuracy is a whole number of percent; training accuracy counts 400 examples.
    assert all(round(a * 100, 9) == int(round(a * 100)) for a in metrics["val_accuracy"])
    assert all(seconds > 0 for seconds in metrics["wall_seconds"] + metrics["examples_per_second"])


def test_the_checkpoint_restored_into_the_code_built_model_reproduces_the_validation_numbers(data, straight):
    run_dir, record = straight
    from tasks.data.arrays import load_arrays, load_indices

    images, labels = load_arrays(data[0])
    rows = load_indices(data[1])
    settings = record["settings"]["model"]
    graph = tf.Graph()
    with graph.as_default():
        inference = models.inference_path(ModelConfig.parse(settings), reuse=False)
        saver = tf.train.Saver()
        with tf.Session() as session:
            saver.restore(session, str(run_dir / record["final_checkpoint"]))
            loss, accuracy = session.run(
                [inference["loss"], inference["accuracy"]],
                {inference["images"]: images[rows], inference["labels"]: labels[rows].astype(np.int64)},
            )
    metrics = read_metrics(run_dir)
    assert accuracy == pytest.approx(metrics["val_accuracy"][-1], abs=1e-7)
    assert loss == pytest.approx(metrics["val_loss"][-1], rel=1e-6)
    latest = read_latest(run_dir / "checkpoints")
    prefix = run_dir / record["final_checkpoint"]
    assert checkpoints.checkpoint_weights_sha256(prefix, latest["variables"]) == record["weights_sha256"]
    # The checkpoint holds the model and the global step (SGD has no slots), never the resident data.
    stored = {name for name, _ in tf.train.list_variables(str(prefix))}
    assert stored == set(latest["variables"]) | {"global_step"}
    assert tf.train.load_checkpoint(str(prefix)).get_tensor("global_step") == 2 * 20


def test_run_json_records_the_run_and_is_returned(straight):
    run_dir, record = straight
    assert json.loads((run_dir / "run.json").read_text()) == record
    assert record["settings"] == make_settings() and record["run_hash"] == settings_hash(make_settings())
    assert record["seed"] == 0 and record["status"] == "completed" and record["diverged_at"] is None
    assert record["epochs_completed"] == 2 and record["final_checkpoint"] == "checkpoints/epoch-0002"
    assert len(record["weights_sha256"]) == 64 and record["attempts"] == 1 and record["resumes"] == []
    assert record["attempt_history"] == [{"attempt": 1, "from_epoch": 0, "steps_run": 40}]
    assert record["threads"] == {"intra_op": 2, "inter_op": 1}
    assert record["train_rows"] == 400 and record["validation_rows"] == 100 and record["steps_per_epoch"] == 20
    assert record["versions"]["tensorflow"] == tf.__version__ and record["versions"]["numpy"] == np.__version__
    assert record["hardware"]["logical_cores"] >= 1 and record["hardware"]["cpu_model"]
    metrics = read_metrics(run_dir)
    assert record["wall_seconds"] == pytest.approx(sum(metrics["wall_seconds"]))
    assert record["examples_per_second"] == pytest.approx(np.mean(metrics["examples_per_second"]))
    assert json.loads((run_dir / "attempts.json").read_text()) == record["attempt_history"]
    assert not (run_dir / "checkpoints" / "inference.meta").exists()  # nothing stored acts as code


def test_a_finished_run_is_returned_not_retrained(data, straight):
    run_dir, record = straight
    again = train(data, run_dir)
    assert again == record
    assert json.loads((run_dir / "attempts.json").read_text()) == record["attempt_history"]


def test_progress_is_reported_per_epoch_and_old_checkpoints_are_pruned(data, tmp_path):
    calls: list[tuple[float, str]] = []
    run_dir = tmp_path / "run"
    train(data, run_dir, make_settings(model="logreg", epochs=5), progress=lambda f, m: calls.append((f, m)))
    fractions = [fraction for fraction, _ in calls]
    assert fractions == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert calls[3][1].startswith("epoch 3/5 · val_acc ")
    kept = sorted(path.name for path in (run_dir / "checkpoints").glob("epoch-*.index"))
    assert kept == ["epoch-0003.index", "epoch-0004.index", "epoch-0005.index"]


def test_epoch_order_depends_on_seed_and_epoch_alone():
    order = epoch_order(7, 3, 105, 20)
    assert order.shape == (5, 20) and order.dtype == np.int32
    assert len(np.unique(order)) == 100 and order.max() < 105  # 5 rows dropped: the partial batch
    assert np.array_equal(order, epoch_order(7, 3, 105, 20))
    assert not np.array_equal(order, epoch_order(7, 4, 105, 20))
    assert not np.array_equal(order, epoch_order(8, 3, 105, 20))


def test_bad_inputs_raise_the_project_errors(data, tmp_path):
    with pytest.raises(DataError, match="not found"):
        train((tmp_path / "missing.arrow", data[1]), tmp_path / "a")
    write_indices(tmp_path / "split.arrow", np.array([3, ROWS + 5]))
    with pytest.raises(DataError, match=r"expected row indices in \[0, 499\]"):
        train((data[0], tmp_path / "split.arrow"), tmp_path / "b")
    write_indices(tmp_path / "dup.arrow", np.array([3, 3]))
    with pytest.raises(DataError, match="duplicates"):
        train((data[0], tmp_path / "dup.arrow"), tmp_path / "c")
    with pytest.raises(ConfigError, match="batch_size: 1000 exceeds the 400 training rows"):
        train(data, tmp_path / "d", make_settings(batch_size=1000))
    with pytest.raises(ConfigError, match="optimizer.name: Field required"):
        train(
            data,
            tmp_path / "e",
            {key: value for key, value in make_settings().items() if key != "optimizer"}
            | {"optimizer": {"learning_rate": 0.1, "params": {}}},
        )
