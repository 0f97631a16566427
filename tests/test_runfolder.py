"""The run-folder contract (tasks/core/runfolder.py), part one: run.json, metrics.parquet and what "finished"
means, with the exact reason given for every way a folder falls short. The folders are written by hand
(tests/runfolders.py), so that a change to the contract's names, checks or messages fails a test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.errors import RunFolderError
from tasks.core.runfolder import RunFolder, prefix_name
from tasks.core.runtables import metrics_digest
from tests.runfolders import COLUMNS, PREDICTIONS, ROWS, RUN_HASH, SEED, digest_by_hand, edit, make_run, write_metrics


@pytest.fixture
def run(tmp_path) -> RunFolder:
    return make_run(tmp_path)


def test_the_files_of_a_run_folder_have_these_names(run):
    folder = run.path
    assert isinstance(folder, Path)
    assert (run.run_json, run.metrics_path, run.evaluation_json) == (
        folder / "run.json",
        folder / "metrics.parquet",
        folder / "evaluation.json",
    )
    assert (run.checkpoint_dir, run.predictions_path, run.events_path) == (
        folder / "checkpoints",
        folder / "predictions.parquet",
        folder / "events.out.tfevents.fmnist-pipeline",
    )
    assert [prefix_name(3), prefix_name(12), prefix_name(12345)] == ["epoch-0003", "epoch-0012", "epoch-12345"]


def test_a_finished_and_scored_run_is_read_as_such(run):
    assert run.problem() is None and run.finished and run.has_record()
    record = run.record()
    assert (record.run_hash, record.seed, record.status, record.epochs_completed) == (RUN_HASH, SEED, "completed", 2)
    assert (record.final_checkpoint, record.weights_sha256) == ("checkpoints/epoch-0002", "f" * 64)
    assert record.has_result and not record.diverged
    assert record.get("weights_sha256") == "f" * 64 and record.get("absent") is None and record.get("absent", 7) == 7
    with pytest.raises(TypeError):
        record.data["status"] = "diverged"  # a record is read-only
    assert run.foreign_record() is None and run.metrics_mismatch() is None
    assert run.latest()["epoch"] == 2
    assert run.evaluation_problem() is None and run.evaluated
    evaluation = run.evaluation()
    assert (evaluation.run_hash, evaluation.seed, evaluation.status) == (RUN_HASH, SEED, "completed")
    assert evaluation.test["examples"] == 5 and evaluation.metrics == {"best": 1}
    assert np.array_equal(run.predictions(), PREDICTIONS) and run.predictions().dtype == np.uint8


def test_metrics_are_read_sorted_by_epoch_and_digested_as_defined(run):
    metrics = run.metrics()
    assert list(metrics) == COLUMNS
    assert metrics["epoch"].dtype == np.int32 and metrics["val_loss"].dtype == np.float64
    assert metrics["epoch"].tolist() == [1, 2] and metrics["train_loss"].tolist() == [0.9, 0.5]
    assert run.metric_rows() == ROWS
    assert metrics_digest(ROWS) == digest_by_hand(ROWS) == metrics_digest(ROWS[::-1])
    assert metrics_digest(ROWS) != metrics_digest([{**ROWS[0], "val_loss": 0.61}, ROWS[1]])


def test_found_at_reads_the_run_its_record_names(run, tmp_path):
    found = RunFolder.found_at(str(run.path))
    assert found == RunFolder(run.path, RUN_HASH, SEED) and isinstance(found.path, Path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunFolderError, match=r"empty/run\.json is not readable JSON \(\[Errno 2\]"):
        RunFolder.found_at(empty)
    for data, found_text in [
        ("[1, 2]", "None, None"),
        ('{"run_hash": "abc", "seed": true}', "'abc', True"),
        ('{"run_hash": "abc", "seed": "3"}', "'abc', '3'"),
        ('{"run_hash": 7, "seed": 3}', "7, 3"),
    ]:
        (empty / "run.json").write_text(data)
        with pytest.raises(RunFolderError) as error:
            RunFolder.found_at(empty)
        assert str(error.value) == f"{empty / 'run.json'}: expected a run_hash and a seed, found {found_text}"
    (empty / "run.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"run\.json is not readable JSON \(Expecting"):
        RunFolder.found_at(empty)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "done"}, "has status 'done', not one of ['completed', 'diverged', 'failed']"),
        ({"status": ...}, "has status None, not one of"),
        ({"epochs_completed": True}, "has epochs_completed True, not a count"),
        ({"epochs_completed": -1}, "has epochs_completed -1, not a count"),
        ({"epochs_completed": "2"}, "has epochs_completed '2', not a count"),
        ({"metrics_sha256": "0" * 64}, "metrics.parquet: its rows' sha256 is "),
        ({"final_checkpoint": None}, "has status 'completed' but no final_checkpoint"),
        ({"final_checkpoint": 2}, "has final_checkpoint 2, not a path"),
        ({"final_checkpoint": "checkpoints/epoch-0001"}, "final checkpoint expected epoch-0001.data-NNNNN-of-NNNNN"),
        ({"weights_sha256": None}, "names final_checkpoint 'checkpoints/epoch-0002' but no weights_sha256"),
        ({"status": "failed", "failure": "boom"}, "has status 'failed' but epochs_completed 2, final_checkpoint"),
        ({"status": "failed", "epochs_completed": 0, "final_checkpoint": None}, "and failure None; a failed run has"),
        ({"status": "failed", "epochs_completed": 0, "final_checkpoint": None, "failure": 5}, "and failure 5; a"),
        ({"status": "failed", "epochs_completed": 0, "failure": "x"}, "final_checkpoint 'checkpoints/epoch-0002' and"),
        ({"seed": 4}, f"expected the record of run {RUN_HASH} seed 3, found ('{RUN_HASH}', 4); the folder holds"),
        ({"run_hash": "other"}, "found ('other', 3)"),
    ],
)
def test_each_flaw_of_run_json_is_named(run, changes, expected):
    edit(run.run_json, **changes)
    problem = run.problem()
    assert problem is not None and expected in problem, problem
    assert problem.startswith(("final checkpoint", str(run.path)))
    assert not run.finished
    with pytest.raises(RunFolderError):
        run.record()


def test_runs_that_diverged_or_failed_are_finished_without_weights(run):
    edit(run.run_json, status="diverged", final_checkpoint=None, weights_sha256=None)
    record = run.record()
    assert run.finished and record.diverged and not record.has_result and record.final_checkpoint is None
    edit(
        run.run_json,
        status="failed",
        epochs_completed=0,
        final_checkpoint=None,
        failure="the plugin raised",
        metrics_sha256=...,
    )
    run.metrics_path.unlink()  # a failed run never completed an epoch
    assert run.finished and not run.record().has_result and not run.record().diverged


def test_a_run_of_one_epoch_without_its_metrics_is_not_finished_even_without_a_digest(run):
    edit(run.run_json, epochs_completed=1, metrics_sha256=...)
    run.metrics_path.unlink()
    assert run.problem() == f"{run.metrics_path} not found"


def test_a_missing_or_damaged_run_json_is_named(run):
    run.metrics_path.unlink()
    assert run.problem() == f"{run.metrics_path} not found"
    run.run_json.write_text("[]")
    assert run.problem().endswith(
        "found list; the folder holds another run's files: use another run folder or delete this one"
    )
    assert run.foreign_record() == run.problem()
    run.run_json.write_text("{")
    assert run.problem().startswith(f"{run.run_json} is not readable JSON (") and run.foreign_record() is None
    run.run_json.unlink()
    assert run.problem() == f"{run.run_json} not found" and not run.has_record() and run.foreign_record() is None


def test_a_metrics_file_that_is_not_the_one_training_wrote_is_named(run):
    assert run.metrics_mismatch({"run_hash": RUN_HASH}) is None  # recorded before digests: trusted
    edited = [ROWS[0], {**ROWS[1], "val_accuracy": 0.99}]
    # The record given is the one checked against (record() passes the run.json it has just read).
    assert run.metrics_mismatch({"metrics_sha256": digest_by_hand(edited)}) is not None
    write_metrics(run.metrics_path, edited)
    assert run.metrics_mismatch({"metrics_sha256": digest_by_hand(edited)}) is None
    assert run.metrics_mismatch() == (
        f"{run.metrics_path}: its rows' sha256 is {digest_by_hand([ROWS[0], {**ROWS[1], 'val_accuracy': 0.99}])}, "
        f"but run.json records '{digest_by_hand(ROWS)}'; it is not the file training wrote (edited or damaged): "
        "the run is trained again"
    )
    pq.write_table(pa.table({"epoch": pa.array([1], pa.int64())}), run.metrics_path)
    assert run.metrics_mismatch() == (
        f"{run.metrics_path}: expected the columns {COLUMNS}, found ['epoch']; "
        "the run was written by other training code"
    )
    run.metrics_path.write_bytes(b"not parquet")
    assert run.metrics_mismatch().startswith(f"{run.metrics_path}: not a readable Parquet file (")
    run.metrics_path.unlink()
    assert run.metrics_mismatch() == f"{run.metrics_path} not found"
    run.run_json.write_text("{")
    assert run.metrics_mismatch() is None  # no record to hold the file to
