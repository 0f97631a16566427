"""The training loop's running metrics are what its batches say: metrics.parquet recomputed by hand.

A numpy logistic regression, started from the weights the real run's `init` produced and trained by plain
SGD on the batches `epoch_order` gives, recomputes every epoch's train_loss (the mean of the batch losses,
each taken before its step), train_accuracy (correct predictions over every example trained on) and the
validation metrics. A loop whose denominator is off by one step, or that scores a batch after its update,
differs from it by far more than float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.training.loop import epoch_order
from tests.runprobe import probe_train_run, settings_for, write_split
from tests.synthetic import make_images_labels

ROWS, BATCH, EPOCHS, SEED, RATE = 60, 10, 3, 5, 0.05
MODEL = {"name": "logreg"}
WEIGHTS, BIASES = "model/logreg/output/weights", "model/logreg/output/biases"


def softmax_cross_entropy(weights, biases, images, labels):
    """(mean loss, correct count, gradient of the mean loss w.r.t. weights and biases), in float64."""
    pixels = images.astype(np.float64) / 255.0
    logits = pixels @ weights + biases
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels]))
    correct = int(np.sum(np.argmax(logits, axis=1) == labels))
    error = probabilities
    error[np.arange(len(labels)), labels] -= 1.0
    error /= len(labels)
    return loss, correct, pixels.T @ error, error.sum(axis=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    images, labels = make_images_labels(ROWS, seed=3)
    validation = np.array([np.flatnonzero(labels == c)[0] for c in range(10)])
    return images, labels, validation, write_split(tmp_path_factory.mktemp("metrics"), images, labels, validation)


def test_running_training_metrics_equal_a_recomputation_from_the_same_batches(data, tmp_path, monkeypatch):
    images, labels, validation, split = data
    settings = settings_for("sgd", RATE, model=MODEL, epochs=EPOCHS, batch_size=BATCH)
    probe = probe_train_run(monkeypatch, settings, SEED, split, tmp_path / "run")
    assert probe.record["status"] == "completed"
    recorded = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()

    train_rows = np.setdiff1d(np.arange(ROWS), validation)  # ascending, as the loop keeps them
    steps = len(train_rows) // BATCH
    weights = probe.initial_weights[WEIGHTS].astype(np.float64)
    biases = probe.initial_weights[BIASES].astype(np.float64)
    assert [row["epoch"] for row in recorded] == list(range(1, EPOCHS + 1))
    for epoch, row in enumerate(recorded, start=1):
        batches = train_rows[epoch_order(SEED, epoch, len(train_rows), BATCH)]
        np.testing.assert_array_equal(probe.orders[epoch - 1], batches)  # the loop trained on these batches
        loss_sum, correct_sum = 0.0, 0
        for rows in batches:
            loss, correct, weight_gradient, bias_gradient = softmax_cross_entropy(
                weights, biases, images[rows], labels[rows]
            )
            loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
            weights, biases = weights - RATE * weight_gradient, biases - RATE * bias_gradient
        val_loss, val_correct, _, _ = softmax_cross_entropy(weights, biases, images[validation], labels[validation])

        assert row["train_loss"] == pytest.approx(loss_sum / steps, rel=1e-5), epoch
        assert row["train_accuracy"] == correct_sum / (steps * BATCH), epoch
        assert row["val_loss"] == pytest.approx(val_loss, rel=1e-5), epoch
        assert row["val_accuracy"] == val_correct / len(validation), epoch
    assert 0 < recorded[0]["train_accuracy"] < recorded[-1]["train_accuracy"] < 1  # it learned: not a trivial fit
