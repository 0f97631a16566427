"""evaluate_run restores a standalone checkpoint by tensor name and scores the test set exactly.

A tiny logistic regression with known weights is saved the way TrainRun saves a model (checkpoint
prefix + `checkpoints/inference.meta`); every number evaluate_run reports is checked against numpy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.errors import EvaluationError
from tasks.data.arrays import write_arrays
from tasks.evaluation.evaluate import evaluate_run, read_metrics, summarize_metrics, write_evaluation
from tests.synthetic import make_images_labels

CHECKPOINT = "checkpoints/epoch-0004"
TEST_ROWS = 230  # not a multiple of the batch size, so the last batch is short


def _weights() -> tuple[np.ndarray, np.ndarray]:
    """Weights with some signal and much noise, so that accuracy is far from both 0 and 1."""
    train_images, train_labels = make_images_labels(400, seed=5)
    means = np.stack([train_images[train_labels == c].mean(axis=0) for c in range(10)]) / 255.0
    rng = np.random.default_rng(7)
    weights = (means - means.mean(axis=0)).T * 0.05 + rng.normal(0, 0.05, size=(784, 10))
    bias = rng.normal(0, 0.1, size=10)
    return weights.astype(np.float32), bias.astype(np.float32)


def _save_logreg(run_dir: Path, weights: np.ndarray, bias: np.ndarray, *, with_predictions: bool = True) -> None:
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.uint8, [None, 784], name="images")
        labels = tf.placeholder(tf.int64, [None], name="labels")
        w = tf.get_variable("w", initializer=tf.constant(weights))
        b = tf.get_variable("b", initializer=tf.constant(bias))
        logits = tf.add(tf.matmul(tf.cast(images, tf.float32) / 255.0, w), b, name="logits")
        tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
        predictions = tf.argmax(logits, axis=1, name="predictions" if with_predictions else "argmax")
        tf.reduce_mean(tf.cast(tf.equal(predictions, labels), tf.float32), name="accuracy")
        saver = tf.train.Saver()
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            (run_dir / "checkpoints").mkdir(parents=True)
            saver.save(session, str(run_dir / CHECKPOINT), write_meta_graph=False)
            saver.export_meta_graph(str(run_dir / "checkpoints/inference.meta"))


def _write_run_record(run_dir: Path, status: str = "completed", epochs: int = 4) -> None:
    diverged = status == "diverged"
    run = {
        "run_hash": "abc123def0",
        "seed": 4,
        "status": status,
        "diverged_at": {"epoch": epochs + 1, "step": 17} if diverged else None,
        "epochs_completed": epochs,
        "final_checkpoint": None if diverged else CHECKPOINT,
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    val_accuracy = [0.5, 0.7, 0.7, 0.6][:epochs]  # a tie at 0.7: the earliest (epoch 2) is best
    table = pa.table(
        {
            "epoch": pa.array(range(1, epochs + 1), pa.int32()),
            "train_loss": [2.0 - 0.3 * e for e in range(epochs)],
            "train_accuracy": [0.4 + 0.1 * e for e in range(epochs)],
            "val_loss": [1.5, 1.1, 1.0, 1.2][:epochs],
            "val_accuracy": val_accuracy,
            "wall_seconds": [10.0, 12.0, 14.0, 16.0][:epochs],
            "examples_per_second": [100.0] * epochs,
        }
    )
    pq.write_table(table, run_dir / "metrics.parquet")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    images, labels = make_images_labels(TEST_ROWS, seed=11)
    write_arrays(root / "test.arrow", images, labels)
    weights, bias = _weights()
    run_dir = root / "run" / "seed-4"
    _save_logreg(run_dir, weights, bias)
    _write_run_record(run_dir)
    return {"root": root, "run_dir": run_dir, "images": images, "labels": labels, "weights": weights, "bias": bias}


def _numpy_reference(images, labels, weights, bias):
    logits = (images.astype(np.float64) / 255.0) @ weights.astype(np.float64) + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return logits.argmax(axis=1), loss


def test_scores_equal_a_direct_numpy_computation(saved_run, tmp_path):
    result = evaluate_run(saved_run["run_dir"], saved_run["root"] / "test.arrow", batch_size=64, max_misclassified=7)
    labels = saved_run["labels"].astype(np.int64)
    predictions, loss = _numpy_reference(saved_run["images"], labels, saved_run["weights"], saved_run["bias"])
    test = result["test"]

    assert result["status"] == "completed" and result["checkpoint"] == CHECKPOINT
    assert test["examples"] == TEST_ROWS
    assert test["accuracy"] == pytest.approx(np.mean(predictions == labels), abs=1e-12)
    assert 0.2 < test["accuracy"] < 0.95  # both correct and wrong rows exist, so the checks below bite
    assert test["loss"] == pytest.approx(loss, abs=1e-5)

    confusion = np.array(test["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == TEST_ROWS
    expected = np.zeros((10, 10), dtype=int)
    np.add.at(expected, (labels, predictions), 1)
    np.testing.assert_array_equal(confusion, expected)
    for cls in range(10):
        in_class = labels == cls
        assert test["class_counts"][cls] == in_class.sum()
        assert test["per_class_accuracy"][cls] == pytest.approx(np.mean(predictions[in_class] == cls))

    wrong = np.flatnonzero(predictions != labels)
    assert test["misclassified_total"] == len(wrong)
    assert test["misclassified"] == [
        {"index": int(i), "true": int(labels[i]), "predicted": int(predictions[i])} for i in wrong[:7]
    ]

    metrics = result["metrics"]
    assert metrics["best"] == {"epoch": 2, "val_accuracy": 0.7, "val_loss": 1.1}
    assert metrics["final"]["epoch"] == 4 and metrics["final"]["val_accuracy"] == 0.6
    assert metrics["seconds_per_epoch"] == pytest.approx(13.0)

    # One batch or many: the example-weighted loss is the same.
    whole = evaluate_run(saved_run["run_dir"], saved_run["root"] / "test.arrow", batch_size=10_000)
    assert whole["test"]["loss"] == pytest.approx(test["loss"], abs=1e-6)
    assert whole["test"]["confusion_matrix"] == test["confusion_matrix"]

    write_evaluation(tmp_path / "evaluation.json", result)
    assert json.loads((tmp_path / "evaluation.json").read_text()) == result


def test_diverged_run_has_no_test_numbers(saved_run, tmp_path):
    run_dir = tmp_path / "seed-4"
    run_dir.mkdir()
    _write_run_record(run_dir, status="diverged", epochs=2)  # no checkpoint at all: it must not be needed
    result = evaluate_run(run_dir, saved_run["root"] / "test.arrow")
    assert result["status"] == "diverged"
    assert result["test"] is None
    assert result["diverged_at"] == {"epoch": 3, "step": 17}
    assert result["metrics"]["epochs"] == 2 and result["metrics"]["best"]["epoch"] == 2


def test_run_diverged_in_its_first_epoch_needs_no_metrics_file(saved_run, tmp_path):
    _write_run_record(tmp_path, status="diverged", epochs=0)
    (tmp_path / "metrics.parquet").unlink()
    result = evaluate_run(tmp_path, saved_run["root"] / "test.arrow")
    assert (result["status"], result["metrics"], result["test"]) == ("diverged", None, None)


def test_missing_checkpoint_names_the_file(saved_run, tmp_path):
    run_dir = tmp_path / "seed-4"
    shutil.copytree(saved_run["run_dir"], run_dir)
    (run_dir / f"{CHECKPOINT}.index").unlink()
    with pytest.raises(EvaluationError, match=r"epoch-0004\.index.*not found.*retrain"):
        evaluate_run(run_dir, saved_run["root"] / "test.arrow")


def test_a_checkpoint_outside_the_run_folder_is_refused(saved_run, tmp_path):
    run_dir = tmp_path / "seed-4"
    shutil.copytree(saved_run["run_dir"], run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["final_checkpoint"] = "../../elsewhere/epoch-0004"
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(EvaluationError, match=r"points outside .*checkpoints.*refusing to restore"):
        evaluate_run(run_dir, saved_run["root"] / "test.arrow")


def test_unreadable_checkpoint_and_missing_tensor_are_evaluation_errors(saved_run, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(saved_run["run_dir"], corrupt)
    data_file = next((corrupt / "checkpoints").glob("epoch-0004.data-*"))
    data_file.write_bytes(b"not a tensor bundle")
    with pytest.raises(EvaluationError, match=r"epoch-0004: checkpoint does not restore"):
        evaluate_run(corrupt, saved_run["root"] / "test.arrow")

    unnamed = tmp_path / "unnamed"
    _save_logreg(unnamed, saved_run["weights"], saved_run["bias"], with_predictions=False)
    _write_run_record(unnamed)
    with pytest.raises(EvaluationError, match=r"inference\.meta: expected a tensor named 'predictions:0'"):
        evaluate_run(unnamed, saved_run["root"] / "test.arrow")

    with pytest.raises(EvaluationError, match=r"missing\.arrow"):
        evaluate_run(saved_run["run_dir"], tmp_path / "missing.arrow")


def test_metrics_summary_of_an_empty_run_is_none(tmp_path):
    _write_run_record(tmp_path, status="diverged", epochs=0)
    assert summarize_metrics(read_metrics(tmp_path / "metrics.parquet")) is None
