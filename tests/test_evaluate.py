"""evaluate_run builds the model from code, restores the run's own checkpoint, and scores the test set exactly.

A tiny logistic regression with known weights is saved the way TrainRun saves a model (checkpoint
prefix + run.json with the weights' sha256); every number evaluate_run reports is checked against numpy.
A run folder is data: another run's checkpoint, symlinked files and a stored graph are refused or ignored.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.config import ModelConfig, parse_config
from tasks.core.errors import EvaluationError
from tasks.core.runfolder import RunFolder
from tasks.core.runs import run_settings, settings_hash
from tasks.core.runtables import METRICS_SCHEMA
from tasks.data.arrays import write_arrays
from tasks.evaluation.evaluate import evaluate_run, summarize_metrics
from tasks.training import models
from tasks.training.checkpoints import weights_sha256
from tasks.training.tf1 import tf
from tests.synthetic import make_images_labels

CHECKPOINT = "checkpoints/epoch-0004"
TEST_ROWS = 230  # not a multiple of the batch size, so the last batch is short
SEED = 4


def _settings(model: str = "logreg") -> dict:
    config = parse_config(
        {
            "experiment": "unit",
            "model": {"name": model, "params": {"hidden": [8]} if model == "mlp" else {}},
            "training": {"epochs": 4, "batch_size": 20},
            "split": {"validation_per_class": 10, "seed": 0},
            "seeds": [SEED],
            "optimizers": [{"name": "sgd", "learning_rate": 0.1}],
        }
    )
    return run_settings(config, config.optimizers[0], 0.1).as_dict()


SETTINGS = _settings()
RUN_HASH = settings_hash(SETTINGS)


def evaluate(run_dir: Path, test_arrow: Path, settings: dict = SETTINGS, seed: int = SEED, **kwargs) -> dict:
    return evaluate_run(run_dir, test_arrow, settings=settings, run_hash=settings_hash(settings), seed=seed, **kwargs)


def _weights(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Weights with some signal and much noise, so that accuracy is far from both 0 and 1."""
    train_images, train_labels = make_images_labels(400, seed=5)
    means = np.stack([train_images[train_labels == c].mean(axis=0) for c in range(10)]) / 255.0
    rng = np.random.default_rng(seed)
    weights = (means - means.mean(axis=0)).T * 0.05 + rng.normal(0, 0.05, size=(784, 10))
    bias = rng.normal(0, 0.1, size=10)
    return weights.astype(np.float32), bias.astype(np.float32)


def _save_logreg(run_dir: Path, weights: np.ndarray, bias: np.ndarray) -> str:
    """Save the real logreg model's variables, holding these values, at CHECKPOINT; return their sha256."""
    graph = tf.Graph()
    with graph.as_default():
        models.inference_path(ModelConfig(name="logreg"), reuse=False)
        variables = {variable.op.name: variable for variable in tf.global_variables()}
        saver = tf.train.Saver()
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            variables["model/logreg/output/weights"].load(weights, session)
            variables["model/logreg/output/biases"].load(bias, session)
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            saver.save(session, str(run_dir / CHECKPOINT), write_meta_graph=False, write_state=False)
            return weights_sha256({name: session.run(variable) for name, variable in variables.items()})


def _write_run_record(
    run_dir: Path, status: str = "completed", epochs: int = 4, sha256: str | None = None, run_hash: str = RUN_HASH
) -> None:
    diverged = status == "diverged"
    run = {
        "run_hash": run_hash,
        "seed": SEED,
        "status": status,
        "diverged_at": {"epoch": epochs + 1, "step": 17} if diverged else None,
        "epochs_completed": epochs,
        "final_checkpoint": None if diverged else CHECKPOINT,
        "weights_sha256": None if diverged else sha256,
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
        },
        schema=METRICS_SCHEMA,
    )
    pq.write_table(table, run_dir / "metrics.parquet")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    images, labels = make_images_labels(TEST_ROWS, seed=11)
    write_arrays(root / "test.arrow", images, labels)
    weights, bias = _weights()
    run_dir = root / "run" / "seed-4"
    sha256 = _save_logreg(run_dir, weights, bias)
    _write_run_record(run_dir, sha256=sha256)
    return {
        "root": root,
        "run_dir": run_dir,
        "test_arrow": root / "test.arrow",
        "images": images,
        "labels": labels,
        "weights": weights,
        "bias": bias,
        "sha256": sha256,
    }


@pytest.fixture
def run_copy(saved_run, tmp_path) -> Path:
    """A copy of the saved run that a test may damage."""
    run_dir = tmp_path / "run" / "seed-4"
    shutil.copytree(saved_run["run_dir"], run_dir)
    return run_dir


def _numpy_reference(images, labels, weights, bias):
    logits = (images.astype(np.float64) / 255.0) @ weights.astype(np.float64) + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    return logits.argmax(axis=1), loss


def test_scores_equal_a_direct_numpy_computation(saved_run, tmp_path):
    result = evaluate(saved_run["run_dir"], saved_run["test_arrow"], batch_size=64, max_misclassified=7)
    labels = saved_run["labels"].astype(np.int64)
    predictions, loss = _numpy_reference(saved_run["images"], labels, saved_run["weights"], saved_run["bias"])
    test = result["test"]

    assert result["status"] == "completed" and result["checkpoint"] == CHECKPOINT
    assert (result["run_hash"], result["seed"]) == (RUN_HASH, SEED)
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
    whole = evaluate(saved_run["run_dir"], saved_run["test_arrow"], batch_size=10_000)
    assert whole["test"]["loss"] == pytest.approx(test["loss"], abs=1e-6)
    assert whole["test"]["confusion_matrix"] == test["confusion_matrix"]

    assert json.loads((saved_run["run_dir"] / "evaluation.json").read_text()) == whole  # written last, by the scorer


def test_diverged_run_has_no_test_numbers(saved_run, tmp_path):
    run_dir = tmp_path / "seed-4"
    run_dir.mkdir()
    _write_run_record(run_dir, status="diverged", epochs=2)  # no checkpoint at all: it must not be needed
    result = evaluate(run_dir, saved_run["test_arrow"])
    assert result["status"] == "diverged"
    assert result["test"] is None
    assert result["diverged_at"] == {"epoch": 3, "step": 17}
    assert result["metrics"]["epochs"] == 2 and result["metrics"]["best"]["epoch"] == 2


def test_run_diverged_in_its_first_epoch_needs_no_metrics_file(saved_run, tmp_path):
    _write_run_record(tmp_path, status="diverged", epochs=0)
    (tmp_path / "metrics.parquet").unlink()
    result = evaluate(tmp_path, saved_run["test_arrow"])
    assert (result["status"], result["metrics"], result["test"]) == ("diverged", None, None)


def test_missing_checkpoint_names_the_file(saved_run, run_copy):
    (run_copy / f"{CHECKPOINT}.index").unlink()
    with pytest.raises(EvaluationError, match=r"epoch-0004\.index not found.*retrain"):
        evaluate(run_copy, saved_run["test_arrow"])


def test_a_checkpoint_outside_the_run_folder_is_refused(saved_run, run_copy):
    record = json.loads((run_copy / "run.json").read_text())
    record["final_checkpoint"] = "../../elsewhere/epoch-0004"
    (run_copy / "run.json").write_text(json.dumps(record))
    with pytest.raises(EvaluationError, match=r"'\.\./\.\./elsewhere/epoch-0004'.* outside .*checkpoints.*refusing"):
        evaluate(run_copy, saved_run["test_arrow"])


def test_a_checkpoint_copied_from_another_run_is_refused(saved_run, run_copy):
    # Another seed's weights under this run's file names: a valid checkpoint of the right model.
    _save_logreg(run_copy, *_weights(seed=8))
    with pytest.raises(EvaluationError) as error:
        evaluate(run_copy, saved_run["test_arrow"])
    assert re.fullmatch(
        r".*epoch-0004: restored weights have sha256 [0-9a-f]{64}, run\.json records [0-9a-f]{64}; the checkpoint is "
        r"not the one this run saved \(copied from another run, or corrupt\): delete the run folder and retrain",
        str(error.value),
    )


def test_a_run_folder_of_another_run_or_settings_is_refused(saved_run):
    with pytest.raises(EvaluationError, match=r"expected the record of run \w+ seed 5, found \('\w+', 4\)"):
        evaluate(saved_run["run_dir"], saved_run["test_arrow"], seed=5)
    with pytest.raises(EvaluationError, match=r"expected the record of run \w+ seed 4"):
        evaluate(saved_run["run_dir"], saved_run["test_arrow"], settings=_settings("mlp"))
    with pytest.raises(EvaluationError, match=r"the settings given hash to \w+, not to the run hash"):
        evaluate_run(
            saved_run["run_dir"], saved_run["test_arrow"], settings=_settings("mlp"), run_hash=RUN_HASH, seed=SEED
        )


def test_symlinked_checkpoint_files_are_refused(saved_run, run_copy, tmp_path):
    # Byte-identical files, even: only files written in place inside the run folder are restored.
    outside = tmp_path / "outside"
    shutil.copytree(run_copy / "checkpoints", outside)
    data_file = next((run_copy / "checkpoints").glob("epoch-0004.data-*"))
    data_file.unlink()
    data_file.symlink_to(outside / data_file.name)
    with pytest.raises(EvaluationError, match=r"epoch-0004\.data-00000-of-00001 is not a regular file"):
        evaluate(run_copy, saved_run["test_arrow"])

    shutil.rmtree(run_copy / "checkpoints")
    (run_copy / "checkpoints").symlink_to(outside, target_is_directory=True)
    with pytest.raises(EvaluationError, match=r"outside .*checkpoints.*refusing to restore"):
        evaluate(run_copy, saved_run["test_arrow"])


def test_a_stored_graph_in_the_run_folder_is_never_run(saved_run, run_copy, tmp_path):
    # A meta graph whose `loss` and `predictions` first write a file: imported and run, it would act as code.
    marker = tmp_path / "written-by-a-stored-graph"
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.uint8, [None, 784], name="images")
        labels = tf.placeholder(tf.int64, [None], name="labels")
        with tf.variable_scope(models.MODEL_SCOPE):
            logits = models.build_model(ModelConfig(name="logreg"), models.scale_images(images))
        head = models.classification_head(logits, labels)
        with tf.control_dependencies([tf.io.write_file(str(marker), "the stored graph ran")]):
            tf.identity(head["loss"], name="loss")
            tf.identity(head["predictions"], name="predictions")
        saver = tf.train.Saver()
        tf.train.export_meta_graph(
            filename=str(run_copy / "checkpoints" / "inference.meta"), graph=graph, saver_def=saver.as_saver_def()
        )
    result = evaluate(run_copy, saved_run["test_arrow"])
    assert not marker.exists()
    reference = evaluate(saved_run["run_dir"], saved_run["test_arrow"])
    assert result["test"] == reference["test"]


def test_unreadable_or_mismatched_checkpoints_are_evaluation_errors(saved_run, run_copy, tmp_path):
    data_file = next((run_copy / "checkpoints").glob("epoch-0004.data-*"))
    data_file.write_bytes(b"not a tensor bundle")
    with pytest.raises(EvaluationError) as error:
        evaluate(run_copy, saved_run["test_arrow"])
    assert re.fullmatch(
        r".*epoch-0004: checkpoint does not restore into the 'logreg' model of the run's settings \((DataLoss|"
        r"InvalidArgument|OutOfRange)Error: [^\n]+\); it is corrupt or from another model: delete the run folder and "
        r"retrain",
        str(error.value),
    )

    # A logreg checkpoint named by a run of the mlp model: the variables the code builds are not in it.
    mlp_run = tmp_path / "mlp"
    shutil.copytree(saved_run["run_dir"], mlp_run)
    _write_run_record(mlp_run, sha256=saved_run["sha256"], run_hash=settings_hash(_settings("mlp")))
    with pytest.raises(EvaluationError, match=r"does not restore into the 'mlp' model"):
        evaluate(mlp_run, saved_run["test_arrow"], settings=_settings("mlp"))

    with pytest.raises(EvaluationError, match=r"missing\.arrow"):
        evaluate(saved_run["run_dir"], tmp_path / "missing.arrow")


def test_metrics_summary_of_an_empty_run_is_none(tmp_path):
    _write_run_record(tmp_path, status="diverged", epochs=0)
    assert summarize_metrics(RunFolder(tmp_path, "any", 0).metrics()) is None
