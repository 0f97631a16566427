"""TensorBoard's view of a run (tasks.training.events), read back with TensorBoard's own loader.

Every check compares the event file, as TensorBoard's EventAccumulator reads it (with its purge of orphaned
data off, so a duplicate or out-of-order step would show), with metrics.parquet and evaluation.json: every
step once, in order, every value equal. A real SIGKILL in a child process and a resume must keep it so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline import FullReport
from tasks.core import faults
from tasks.core.runfolder import EVENTS_FILE, RunFolder
from tasks.core.runs import settings_hash
from tasks.data.arrays import write_arrays
from tasks.evaluation.evaluate import evaluate_run
from tasks.training import events
from tests.childrun import train_in_child
from tests.cluster import wait_for
from tests.conftest import REPO_ROOT, build
from tests.synthetic import make_images_labels
from tests.test_adaptive_seeds import luigi_subprocess
from tests.test_scheduler import _free_port
from tests.test_train import make_settings, read_metrics, train, write_data

EPOCHS = 3
SETTINGS = make_settings(epochs=EPOCHS)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("arrays"))


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 3-epoch run, evaluated on a synthetic test file."""
    root = tmp_path_factory.mktemp("straight")
    images, labels = make_images_labels(200, seed=5)
    write_arrays(root / "test.arrow", images, labels)
    run_dir = root / "runs" / "mlp-sgd" / "seed-0"
    record = train(data, run_dir, SETTINGS)
    evaluate_run(run_dir, root / "test.arrow", settings=SETTINGS, run_hash=settings_hash(SETTINGS), seed=0)
    return run_dir, record


def loaded(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0}, purge_orphaned_data=False)
    return accumulator.Reload()


def assert_events_equal_metrics(run_dir: Path, settings: dict = SETTINGS) -> EventAccumulator:
    """Each per-epoch tag holds exactly metrics.parquet's epochs, once each and in order, with its values."""
    accumulator = loaded(run_dir)
    metrics = read_metrics(run_dir)
    epochs = metrics["epoch"]
    assert epochs == sorted(set(epochs))
    for column, tag in events.SCALAR_TAGS.items():
        scalars = accumulator.Scalars(tag) if epochs else []
        assert [event.step for event in scalars] == epochs, tag
        # simple_value is a float32: the parquet's float64 rounded once.
        assert [event.value for event in scalars] == [float(np.float32(value)) for value in metrics[column]], tag
    if epochs:
        rates = accumulator.Scalars(events.LEARNING_RATE_TAG)
        assert [(event.step, event.value) for event in rates] == [
            (epoch, float(np.float32(settings["optimizer"]["learning_rate"]))) for epoch in epochs
        ]
    else:
        assert accumulator.Tags()["scalars"] == []
    (text,) = accumulator.Tensors(events.SETTINGS_TAG)
    table = text.tensor_proto.string_val[0].decode()
    assert f"| run_hash | `{settings_hash(settings)}` |" in table
    assert f"| optimizer.learning_rate | `{settings['optimizer']['learning_rate']}` |" in table
    return accumulator


def test_a_run_writes_every_epoch_and_its_test_accuracy(straight):
    run_dir, _ = straight
    assert [path.name for path in run_dir.glob("*tfevents*")] == ["events.out.tfevents.fmnist-pipeline"]
    accumulator = assert_events_equal_metrics(run_dir)
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    for key, tag in events.TEST_TAGS.items():
        assert [(event.step, event.value) for event in accumulator.Scalars(tag)] == [
            (EPOCHS, float(np.float32(evaluation["test"][key])))
        ]
    # Wall times advance by each epoch's own seconds.
    times = [event.wall_time for event in accumulator.Scalars("loss/train")]
    assert np.diff(times) == pytest.approx(read_metrics(run_dir)["wall_seconds"][1:], abs=1e-6)  # double at 1e9 s


def test_evaluation_writes_the_test_numbers_before_evaluation_json(straight, tmp_path):
    """A kill between the two leaves the run unevaluated: the rerun (whose task sweeps the folder first)
    writes both again, so no evaluated run is left with a temp file or without its test numbers."""
    run_dir = tmp_path / "run"
    shutil.copytree(straight[0], run_dir)
    (run_dir / "evaluation.json").unlink()
    assert events.sync_events(RunFolder(run_dir, settings_hash(SETTINGS), 0))  # as trained, not yet evaluated
    test_arrow = straight[0].parents[2] / "test.arrow"
    scoring = {"settings": SETTINGS, "run_hash": settings_hash(SETTINGS), "seed": 0}
    # Its atomic writes: predictions.parquet, the event file, evaluation.json; a kill at the last one.
    with faults.stop_at("storage.temp-written", 3), pytest.raises(faults.FailpointStop):
        evaluate_run(run_dir, test_arrow, **scoring)
    assert not (run_dir / "evaluation.json").exists()  # unevaluated: EvaluateRun runs again
    assert "test/accuracy" in loaded(run_dir).Tags()["scalars"]
    evaluate_run(run_dir, test_arrow, **scoring)
    assert (run_dir / EVENTS_FILE).read_bytes() == (straight[0] / EVENTS_FILE).read_bytes()


def test_writing_events_changes_no_weight(data, tmp_path, straight, monkeypatch):
    monkeypatch.setattr("tasks.training.loop.sync_events", lambda *args, **kwargs: False)
    record = train(data, tmp_path / "run", SETTINGS)
    assert not list((tmp_path / "run").glob("*tfevents*"))
    assert record["weights_sha256"] == straight[1]["weights_sha256"]
    assert read_metrics(tmp_path / "run")["train_loss"] == read_metrics(straight[0])["train_loss"]


def test_a_sigkill_then_a_resume_writes_each_step_once_in_order(data, tmp_path, straight):
    """Killed after epoch 2's metrics and checkpoint files, before its latest.json and event file: the resume
    cuts metrics.parquet back to epoch 1 and trains epoch 2 again (a kill after a whole epoch: the pipeline
    test below)."""
    run_dir, epochs_recorded = tmp_path / "run", 1
    killed = train_in_child(SETTINGS, *data, run_dir, crash_at="train.checkpoint-saved:2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert read_metrics(run_dir)["epoch"] == [1, 2]  # the event file is one epoch behind metrics.parquet
    accumulator = loaded(run_dir)
    assert [event.step for event in accumulator.Scalars("loss/train")] == list(range(1, epochs_recorded + 1))
    before = events.read_records(run_dir / EVENTS_FILE)

    record = train(data, run_dir, SETTINGS)
    assert record["resumes"] and record["weights_sha256"] == straight[1]["weights_sha256"]
    assert_events_equal_metrics(run_dir)
    assert read_metrics(run_dir)["epoch"] == list(range(1, EPOCHS + 1))
    # The resume rewrote the file with the records it had, byte for byte, and appended the rest.
    after = events.read_records(run_dir / EVENTS_FILE)
    assert after[: len(before)] == before and len(after) == len(before) + EPOCHS - epochs_recorded
    assert not (run_dir / events.PENDING_FILE).exists()


def test_an_older_run_without_events_is_not_retrained_and_gets_them_rebuilt(data, tmp_path, straight):
    run_dir = tmp_path / "runs" / "mlp-sgd" / "seed-0"
    train(data, run_dir, SETTINGS)
    (run_dir / EVENTS_FILE).unlink()
    run_json = (run_dir / "run.json").read_bytes()
    folder = RunFolder(run_dir, settings_hash(SETTINGS), 0)
    assert folder.problem() is None  # events are derived data: the run stays finished
    assert train(data, run_dir, SETTINGS)["weights_sha256"] == straight[1]["weights_sha256"]
    assert (run_dir / "run.json").read_bytes() == run_json and not (run_dir / EVENTS_FILE).exists()
    (tmp_path / "runs" / "not-a-run" / "seed-0").mkdir(parents=True)
    (tmp_path / "runs" / "not-a-run" / "seed-0" / "run.json").write_text("{")

    assert events.main([str(tmp_path / "runs")]) == 0
    assert_events_equal_metrics(run_dir)
    assert events.sync_runs(tmp_path / "runs") == {
        "written": [],
        "current": [run_dir],
        "skipped": [tmp_path / "runs" / "not-a-run" / "seed-0"],
    }


def test_a_real_tensorboard_serves_the_runs_and_follows_a_rewrite(straight, tmp_path):
    """`tensorboard --logdir` on 127.0.0.1 (docs/tensorboard.md): it serves every tag, and with
    --detect_file_replacement=true it picks up the epochs a rewrite of the file appended."""
    runs = tmp_path / "runs"
    shutil.copytree(straight[0].parents[1], runs)
    folder = RunFolder(runs / "mlp-sgd" / "seed-0", settings_hash(SETTINGS), 0)
    full = events.read_records(folder.events_path)
    events._write(folder.events_path, full[:3])  # as the file stood after epoch 1: version, settings, epoch 1
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", "127.0.0.1", "--port", str(port)]
        + ["--reload_interval", "1", "--detect_file_replacement=true"],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "tensorboard.log", "wb"),  # noqa: SIM115 - the child holds it
    )

    def served(path: str):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/{path}", timeout=5) as reply:
                return json.loads(reply.read()) or None
        except OSError:
            if server.poll() is not None:
                pytest.fail((tmp_path / "tensorboard.log").read_text()[-3000:])
            return None

    def steps(least: int) -> list[int] | None:
        found = [point[1] for point in served("scalars?run=mlp-sgd/seed-0&tag=loss/train") or []]
        return found if len(found) >= least else None

    try:
        found = wait_for(lambda: served("tags"), "tensorboard to serve the run's scalars")
        assert wait_for(lambda: steps(1), "epoch 1") == [1]
        assert events.sync_events(folder)  # the file rewritten whole: epochs 2 and 3 and the test numbers
        assert wait_for(lambda: steps(EPOCHS), "the rewritten epochs") == list(range(1, EPOCHS + 1))
    finally:
        server.kill()
        server.wait()
    assert set(found) == {"mlp-sgd/seed-0"}
    assert set(found["mlp-sgd/seed-0"]) == {*events.SCALAR_TAGS.values(), events.LEARNING_RATE_TAG}


def test_every_run_of_a_pipeline_killed_and_resumed_reads_back_as_its_metrics(site, tmp_path):
    """`luigi --module pipeline FullReport` SIGKILLed mid-run (tests/test_adaptive_seeds.py's child process), then
    the same command again: every run folder's events equal its metrics.parquet and evaluation.json."""
    raw = yaml.safe_load((REPO_ROOT / "configs" / "smoke.yaml").read_text())
    raw["training"]["epochs"] = EPOCHS
    raw["optimizers"] = [entry for entry in raw["optimizers"] if entry["name"] in ("sgd", "adam")]
    config = tmp_path / "tensorboard.yaml"
    config.write_text(yaml.safe_dump(raw))
    day = dt.date(2026, 3, 1)
    # The 4th epoch done: sgd's 3 epochs, then adam's first.
    killed = luigi_subprocess(
        tmp_path, ["FullReport", "--config", str(config), "--date", day.isoformat()], "train.epoch-done:4"
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    build([FullReport(config=str(config), date=day)], workers=1)
    run_jsons = sorted((site / "runs").rglob("run.json"))
    assert len(run_jsons) == 2
    resumed = 0
    for run_json in run_jsons:
        record = json.loads(run_json.read_text())
        accumulator = assert_events_equal_metrics(run_json.parent, record["settings"])
        resumed += bool(record["resumes"])
        evaluation = json.loads((run_json.parent / "evaluation.json").read_text())
        assert [(event.step, event.value) for event in accumulator.Scalars("test/accuracy")] == [
            (EPOCHS, float(np.float32(evaluation["test"]["accuracy"])))
        ]
    assert resumed == 1
