"""Red team 7a: run.json vouches for metrics.parquet by the digest of its rows, so a grid run whose
metrics were edited (to steer tuning) is not finished: its metrics and run.json are quarantined and it
trains again from scratch. Runs recorded before the digest existed stay finished, never retrained."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.runfolder import METRICS_SHA256, RunFolder
from tasks.core.runtables import METRICS_SCHEMA, metrics_digest
from tests.test_train import train, write_data


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("arrays"))


def _folder(run_dir: Path, record: dict) -> RunFolder:
    return RunFolder(run_dir, record["run_hash"], record["seed"])


def _raise_val_accuracy(run_dir: Path) -> None:
    """What a hostile colleague does to a grid point: its last epoch's validation accuracy set to 0.99."""
    rows = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    rows[-1]["val_accuracy"] = 0.99
    pq.write_table(pa.Table.from_pylist(rows, schema=METRICS_SCHEMA), run_dir / "metrics.parquet")


def test_an_edited_metrics_file_is_refused_quarantined_and_trained_again(data, tmp_path):
    run_dir = tmp_path / "run"
    record = train(data, run_dir)
    folder = _folder(run_dir, record)
    assert record[METRICS_SHA256] == metrics_digest(folder.metric_rows())
    assert folder.finished
    original = folder.metric_rows()

    _raise_val_accuracy(run_dir)
    assert not folder.finished
    assert "sha256" in folder.problem() and str(folder.metrics_path) in folder.problem()

    again = train(data, run_dir)  # the same call TrainRun makes
    moved = sorted(path.name for path in (run_dir / "quarantine").iterdir())
    assert any(name.startswith("metrics.parquet") for name in moved), moved
    assert any(name.startswith("run.json") for name in moved), moved
    # From scratch (not resumed from the edited rows): the last attempt started at epoch 0.
    assert again["attempt_history"][-1]["from_epoch"] == 0
    assert again["weights_sha256"] == record["weights_sha256"]
    rows = folder.metric_rows()
    timing = ("wall_seconds", "examples_per_second")
    strip = [{key: value for key, value in row.items() if key not in timing} for row in rows]
    assert strip == [{key: value for key, value in row.items() if key not in timing} for row in original]
    assert rows[-1]["val_accuracy"] != 0.99 and folder.finished


def test_a_run_recorded_before_the_digest_stays_finished(data, tmp_path):
    run_dir = tmp_path / "run"
    record = train(data, run_dir)
    old = {key: value for key, value in record.items() if key != METRICS_SHA256}
    (run_dir / "run.json").write_text(json.dumps(old))
    folder = _folder(run_dir, record)
    assert folder.finished
    attempts = len(train(data, run_dir)["attempt_history"])
    assert attempts == len(record["attempt_history"]), "an old run was trained again"
