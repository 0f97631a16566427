"""Resume, refusal and repair of a run folder: what a resume skips, what it refuses before touching anything,
and how a finished run that lost a file trains again to the same weights.

Each resume test asserts the epochs the resume skipped (`attempt_history`, counted from the graph's global
step): a retrain from scratch gives the same weights, so equal weights alone cannot tell a resume happened.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core import faults
from tasks.core.errors import TrainingError
from tasks.core.runfolder import RunFolder, read_latest
from tasks.core.runtables import METRICS_SCHEMA
from tests.test_train import make_settings, read_metrics, train, train_until_stopped, write_data


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("arrays"))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 2-epoch MLP/SGD run with seed 0 (as in test_train), for comparison and copies."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    return run_dir, train(data, run_dir)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (symlinks as their target's path), by relative path."""
    return {
        str(path.relative_to(folder)): str(path.readlink()).encode() if path.is_symlink() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() or path.is_symlink()
    }


def quarantined(folder: Path, name: str) -> list[Path]:
    return [path for path in (folder / "quarantine").glob(f"{name}.*") if not path.name.endswith(".reason.txt")]


def test_a_stopped_run_resumes_to_bit_identical_weights(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    train_until_stopped(data, run_dir)
    assert not (run_dir / "run.json").exists()
    assert read_latest(run_dir / "checkpoints")["epoch"] == 1
    first_epoch_seconds = read_metrics(run_dir)["wall_seconds"]
    resumed = train(data, run_dir)
    assert resumed["weights_sha256"] == straight[1]["weights_sha256"]
    assert resumed["attempts"] == 2 and resumed["epochs_completed"] == 2
    # The resume skipped epoch 1: its 20 steps ran in attempt 1, only epoch 2's 20 steps in attempt 2.
    assert resumed["attempt_history"] == [
        {"attempt": 1, "from_epoch": 0, "steps_run": 20},
        {"attempt": 2, "from_epoch": 1, "steps_run": 20},
    ]
    assert resumed["resumes"] == [{"attempt": 2, "from_epoch": 1, "steps_run": 20}]
    # The resumed epoch 2 saw the same data and optimizer state: same metrics as the straight run.
    metrics = read_metrics(run_dir)
    assert metrics["train_loss"] == read_metrics(straight[0])["train_loss"]
    # Epoch 1's row is the one attempt 1 wrote (its time too), so time-to-target survives the resume.
    assert metrics["wall_seconds"][:1] == first_epoch_seconds
    assert resumed["wall_seconds"] == pytest.approx(sum(metrics["wall_seconds"]))


def test_leftovers_of_a_killed_save_do_not_break_resume(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    train_until_stopped(data, run_dir)
    folder = run_dir / "checkpoints"
    # What a kill during epoch 2's save can leave: metrics already holding epoch 2, partial TF files, TF's own
    # state file pointing at them, a temp dir of a sharded save, and a half-written latest.json temp file.
    rows = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    pq.write_table(
        pa.Table.from_pylist(rows + [dict(rows[0], epoch=2)], schema=METRICS_SCHEMA), run_dir / "metrics.parquet"
    )
    (folder / "epoch-0002.index").write_bytes(b"\x00garbage")
    (folder / "epoch-0002.data-00000-of-00001.tempstate123").write_bytes(b"partial")
    (folder / "epoch-0002_temp").mkdir()
    (folder / "epoch-0002_temp" / "part-00000-of-00001.index").write_bytes(b"partial")
    (folder / "checkpoint").write_text('model_checkpoint_path: "epoch-0002"\n')
    (folder / ".latest.json.tmp-abc").write_text('{"epoch": 2')
    resumed = train(data, run_dir)
    assert resumed["status"] == "completed"
    assert resumed["weights_sha256"] == straight[1]["weights_sha256"]
    assert resumed["resumes"] == [{"attempt": 2, "from_epoch": 1, "steps_run": 20}]
    assert read_metrics(run_dir)["train_loss"] == read_metrics(straight[0])["train_loss"]
    assert sorted(path.name for path in folder.iterdir()) == [
        "epoch-0001.data-00000-of-00001",
        "epoch-0001.index",
        "epoch-0002.data-00000-of-00001",
        "epoch-0002.index",
        "latest.json",
    ]


def test_a_run_folder_of_another_run_is_refused(data, tmp_path):
    run_dir = tmp_path / "run"
    train_until_stopped(data, run_dir, make_settings(model="logreg", epochs=2))
    with pytest.raises(TrainingError, match="belongs to run"):
        train(data, run_dir, make_settings(model="logreg", epochs=2), seed=5)
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "metrics.parquet").unlink()
    finished = train(data, run_dir, make_settings(model="logreg", epochs=1))
    with pytest.raises(TrainingError, match="expected the record of run"):
        train(data, run_dir, make_settings(model="logreg", epochs=2))
    assert finished["status"] == "completed"


def test_a_kill_between_the_save_and_latest_json_resumes_from_the_epoch_before(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    with faults.stop_at("train.checkpoint-saved", 2), pytest.raises(faults.FailpointStop):
        train(data, run_dir)
    folder = run_dir / "checkpoints"
    assert read_latest(folder)["epoch"] == 1 and (folder / "epoch-0002.index").is_file()
    resumed = train(data, run_dir)
    assert resumed["weights_sha256"] == straight[1]["weights_sha256"]
    assert resumed["resumes"] == [{"attempt": 2, "from_epoch": 1, "steps_run": 20}]


def test_latest_json_beyond_the_configured_epochs_is_refused_before_anything_is_removed(data, tmp_path):
    run_dir = tmp_path / "run"
    train_until_stopped(data, run_dir)
    latest_path = run_dir / "checkpoints" / "latest.json"
    latest_path.write_text(json.dumps(json.loads(latest_path.read_text()) | {"epoch": 5, "prefix": "epoch-0005"}))
    before = snapshot(run_dir)
    with pytest.raises(TrainingError, match=r"latest\.json: names epoch 5, but run \w+ trains 2 epochs.*Nothing was"):
        train(data, run_dir)
    assert snapshot(run_dir) == before


def test_a_finished_run_that_lost_its_metrics_trains_again_to_the_same_weights(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    record = straight[1]
    (run_dir / "metrics.parquet").unlink()
    assert not RunFolder(run_dir, record["run_hash"], 0).finished
    repaired = train(data, run_dir)
    assert RunFolder(run_dir, record["run_hash"], 0).finished
    assert repaired["weights_sha256"] == record["weights_sha256"]
    assert read_metrics(run_dir)["train_loss"] == read_metrics(straight[0])["train_loss"]
    # Metrics of every epoch are needed, so nothing could be resumed: both epochs ran again.
    last = repaired["attempt_history"][-1]
    assert (last["attempt"], last["from_epoch"], last["steps_run"]) == (2, 0, 40)
    assert "metrics.parquet not found" in last["repair"]
    [old_record] = quarantined(run_dir, "run.json")
    assert json.loads(old_record.read_text())["weights_sha256"] == record["weights_sha256"]
    assert len(quarantined(run_dir / "checkpoints", "latest.json")) == 1


def test_unreadable_metrics_of_a_stopped_run_are_quarantined_and_the_run_trains_from_scratch(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    train_until_stopped(data, run_dir)
    (run_dir / "metrics.parquet").write_bytes(b"PAR1 torn")
    resumed = train(data, run_dir)
    assert resumed["weights_sha256"] == straight[1]["weights_sha256"]
    last = resumed["attempt_history"][-1]
    assert (last["from_epoch"], last["steps_run"]) == (0, 40) and "not a readable Parquet file" in last["repair"]
    [torn] = quarantined(run_dir, "metrics.parquet")
    assert torn.read_bytes() == b"PAR1 torn"


def test_a_finished_run_that_lost_its_final_checkpoint_trains_again_to_the_same_weights(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    record = straight[1]
    (run_dir / "checkpoints" / "epoch-0002.index").unlink()
    assert not RunFolder(run_dir, record["run_hash"], 0).finished
    repaired = train(data, run_dir)
    assert RunFolder(run_dir, record["run_hash"], 0).finished
    assert repaired["weights_sha256"] == record["weights_sha256"]
    last = repaired["attempt_history"][-1]
    assert (last["from_epoch"], last["steps_run"]) == (0, 40) and "epoch-0002.index not found" in last["repair"]


def test_a_lost_run_json_is_rewritten_from_the_final_checkpoint_without_training(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    (run_dir / "run.json").unlink()
    rewritten = train(data, run_dir)
    assert rewritten["weights_sha256"] == straight[1]["weights_sha256"]
    assert rewritten["resumes"] == [{"attempt": 2, "from_epoch": 2, "steps_run": 0}]
    assert read_metrics(run_dir) == read_metrics(straight[0])  # the rows, wall_seconds included, are kept


def test_a_symlinked_checkpoint_is_never_restored_by_a_resume(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    train_until_stopped(data, run_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    data_file = next((run_dir / "checkpoints").glob("epoch-0001.data-*"))
    shutil.copy(data_file, outside / data_file.name)
    data_file.unlink()
    data_file.symlink_to(outside / data_file.name)
    resumed = train(data, run_dir)
    assert resumed["weights_sha256"] == straight[1]["weights_sha256"]
    last = resumed["attempt_history"][-1]
    assert (last["from_epoch"], last["steps_run"]) == (0, 40) and "is not a regular file" in last["repair"]
    assert (outside / data_file.name).is_file()  # the link was removed, never what it pointed at
    assert not data_file.is_symlink()


def test_run_is_complete_names_one_run_with_all_its_files(tmp_path, straight):
    run_dir, record = straight
    assert RunFolder(run_dir, record["run_hash"], 0).finished
    assert not RunFolder(run_dir, record["run_hash"], 1).finished
    assert not RunFolder(run_dir, "0123456789", 0).finished
    assert not RunFolder(tmp_path / "nothing", record["run_hash"], 0).finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    data_file = next((copy / "checkpoints").glob("epoch-0002.data-*"))
    shutil.copy(data_file, tmp_path / data_file.name)
    data_file.unlink()
    data_file.symlink_to(tmp_path / data_file.name)
    assert not RunFolder(copy, record["run_hash"], 0).finished
    (copy / "run.json").write_text("{not json")
    assert not RunFolder(copy, record["run_hash"], 0).finished


def test_a_checkpoint_relabelled_as_an_earlier_epoch_is_refused_by_its_global_step(data, tmp_path, straight):
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    (run_dir / "run.json").unlink()
    folder = run_dir / "checkpoints"
    for path in folder.glob("epoch-0001.*"):
        path.unlink()
    for path in folder.glob("epoch-0002.*"):
        path.rename(folder / path.name.replace("epoch-0002", "epoch-0001"))
    latest = json.loads((folder / "latest.json").read_text())
    (folder / "latest.json").write_text(json.dumps(latest | {"epoch": 1, "prefix": "epoch-0001"}))
    with pytest.raises(TrainingError, match=r"epoch-0001: restored global step 40, expected 1 epochs × 20 steps"):
        train(data, run_dir)
