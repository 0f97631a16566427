"""The run-folder contract (tasks/core/runfolder.py), part two: checkpoints, latest.json, evaluation.json and
the predictions, with the exact reason given for every flaw (folders written by hand: tests/runfolders.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.errors import RunFolderError
from tasks.core.runfolder import RunFolder, read_latest
from tasks.core.runtables import decode_predictions, encode_predictions
from tests.runfolders import PREDICTIONS, RUN_HASH, SEED, edit, make_run, read_record


@pytest.fixture
def run(tmp_path) -> RunFolder:
    return make_run(tmp_path)


def test_each_flaw_of_a_checkpoint_is_named(run, tmp_path):
    checkpoints = run.path / "checkpoints"
    inside = str(run.path.resolve() / "checkpoints")
    assert run.checkpoint_problem("checkpoints/epoch-0002") is None
    assert run.checkpoint_problem("/etc/epoch-0002") == f"names '/etc/epoch-0002', which is outside {inside}"
    assert run.checkpoint_problem("checkpoints/../run") == f"names 'checkpoints/../run', which is outside {inside}"
    assert run.checkpoint_problem("missing/epoch-0002").startswith("names 'missing/epoch-0002', which is outside")
    assert run.checkpoint_problem("checkpoints/sub/epoch-0002") == (
        f"expected epoch-0002.data-NNNNN-of-NNNNN files of one save in {checkpoints / 'sub'}, found []"
    )
    (checkpoints / "epoch-0002.data-00000-of-00001").write_bytes(b"w")
    assert run.checkpoint_problem("checkpoints/epoch-0002") == (
        f"expected epoch-0002.data-NNNNN-of-NNNNN files of one save in {checkpoints}, found "
        "['epoch-0002.data-00000-of-00001', 'epoch-0002.data-00000-of-00002', 'epoch-0002.data-00001-of-00002']"
    )
    (checkpoints / "epoch-0002.data-00000-of-00001").unlink()
    (checkpoints / "epoch-0002.data-00001-of-00002").unlink()
    assert (
        run.checkpoint_problem("checkpoints/epoch-0002")
        == f"{checkpoints / 'epoch-0002.data-00001-of-00002'} not found"
    )
    (checkpoints / "epoch-0002.data-00001-of-00002").mkdir()
    assert run.checkpoint_problem("checkpoints/epoch-0002") == (
        f"{checkpoints / 'epoch-0002.data-00001-of-00002'} is not a regular file (a symlink or a folder); "
        "only files written in place are restored"
    )
    (checkpoints / "epoch-0002.index").unlink()
    assert run.checkpoint_problem("checkpoints/epoch-0002") == f"{checkpoints / 'epoch-0002.index'} not found"
    outside = tmp_path / "elsewhere.index"
    outside.write_bytes(b"w")
    (checkpoints / "epoch-0002.index").symlink_to(outside)
    assert run.checkpoint_problem("checkpoints/epoch-0002").startswith(
        f"{checkpoints / 'epoch-0002.index'} is not a regular"
    )
    # A prefix through a linked folder whose own name links back inside: its files lie outside the run.
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("epoch-0002.index", "epoch-0002.data-00000-of-00001"):
        (evil / name).write_bytes(b"w")
    (evil / "epoch-0002").symlink_to(checkpoints / "epoch-0002")
    (run.path / "link").symlink_to(evil)
    assert run.checkpoint_problem("link/epoch-0002") == (
        f"{run.path / 'link' / 'epoch-0002.index'} resolves to {evil / 'epoch-0002.index'}, outside the run folder "
        f"{run.path.resolve()}"
    )


def test_latest_json_is_a_well_formed_pointer_of_this_run(run):
    latest = run.checkpoint_dir / "latest.json"
    edit(latest, seed=4)
    with pytest.raises(RunFolderError) as error:
        run.latest()
    assert str(error.value) == (
        f"{latest}: belongs to run {RUN_HASH} seed 4, not {RUN_HASH} seed 3; use another run folder or delete this one"
    )
    assert read_latest(run.checkpoint_dir)["seed"] == 4  # well formed, whoever's it is
    for changes in ({"epoch": True}, {"epoch": 0}, {"epoch": "2"}, {"prefix": "epoch-0001"}, {"variables": ...}):
        edit(latest, seed=SEED, epoch=2, prefix="epoch-0002", variables=[])
        edit(latest, **changes)
        with pytest.raises(
            RunFolderError,
            match=r"latest\.json: expected keys \['epoch', 'prefix', 'weights_sha256', "
            r"'variables', 'run_hash', 'seed'\], an epoch >= 1 and the prefix of that epoch, found ",
        ):
            run.latest()
    latest.write_text("[]")
    with pytest.raises(RunFolderError, match=r"expected keys .* found \[\]; delete the run folder and rerun TrainRun"):
        read_latest(run.checkpoint_dir)
    latest.write_text("{")
    with pytest.raises(
        RunFolderError, match=r"latest\.json: not readable JSON \(.*\); delete the run folder and rerun"
    ):
        read_latest(run.checkpoint_dir)
    latest.unlink()
    assert run.latest() is None and read_latest(run.checkpoint_dir) is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"status": "diverged"}, "evaluation.json: status 'diverged' disagrees with run.json's 'completed'; delete"),
        ({"schema_version": 1}, "evaluation.json: schema_version 1, expected 2 (with per-example predictions); Eval"),
        ({"schema_version": ...}, "evaluation.json: schema_version None, expected 2"),
        ({"predictions": ...}, "evaluation.json: a completed run's record names no predictions or scores"),
        ({"test": None}, "evaluation.json: a completed run's record names no predictions or scores"),
        ({"predictions": {"sha256": "0" * 64}}, f"but evaluation.json records '{'0' * 64}'; it is not the file eval"),
        ({"test": {"examples": 6}}, "predictions.parquet: 5 rows, expected the 6 test examples"),
        ({"seed": 9}, f"evaluation.json: expected the record of run {RUN_HASH} seed 3, found ('{RUN_HASH}', 9)"),
    ],
)
def test_each_flaw_of_an_evaluation_is_named(run, changes, expected):
    edit(run.evaluation_json, **changes)
    problem = run.evaluation_problem()
    assert problem is not None and expected in problem and problem.startswith(str(run.path)), problem
    assert not run.evaluated and run.finished


def test_an_evaluation_stands_only_with_its_run_and_its_predictions(run):
    run.predictions_path.write_bytes(encode_predictions(PREDICTIONS[::-1]))
    recorded = read_record(run.evaluation_json)["predictions"]["sha256"]
    assert run.evaluation_problem() == (
        f"{run.predictions_path}: sha256 {hashlib.sha256(run.predictions_path.read_bytes()).hexdigest()}, but "
        f"evaluation.json records {recorded!r}; it is not the file evaluation wrote: EvaluateRun scores the run again"
    )
    # Bytes that are no Parquet file, though evaluation.json vouches for them: named by their path.
    run.predictions_path.write_bytes(b"no parquet")
    edit(run.evaluation_json, predictions={"sha256": hashlib.sha256(b"no parquet").hexdigest()})
    assert run.evaluation_problem().startswith(f"{run.predictions_path}: not a readable Parquet file (")
    run.predictions_path.unlink()
    assert run.evaluation_problem() == f"{run.predictions_path} not found; EvaluateRun writes it again"
    run.predictions_path.mkdir()
    assert run.evaluation_problem().startswith(f"{run.predictions_path}: cannot read it (")
    run.evaluation_json.write_text("{")
    assert run.evaluation_problem().startswith(f"{run.evaluation_json} is not readable JSON (")
    run.evaluation_json.unlink()
    assert run.evaluation_problem() == f"{run.evaluation_json} not found"
    edit(run.run_json, status="oops")
    assert run.evaluation_problem().startswith(f"{run.run_json} has status 'oops'")  # the run itself comes first


def test_a_diverged_runs_evaluation_needs_no_predictions(run):
    edit(run.run_json, status="diverged", final_checkpoint=None, weights_sha256=None)
    edit(run.evaluation_json, status="diverged", schema_version=1, predictions=..., test=None)
    assert run.evaluated and run.evaluation().test is None


def test_predictions_round_trip_and_bad_bytes_are_named(tmp_path):
    source = tmp_path / "predictions.parquet"
    assert np.array_equal(decode_predictions(encode_predictions(np.array([1, 2, 250])), source), [1, 2, 250])
    decoded = decode_predictions(encode_predictions(np.array([4], np.int64)), source)
    assert decoded.dtype == np.uint8
    with pytest.raises(RunFolderError, match=r"predictions\.parquet: not a readable Parquet file \("):
        decode_predictions(b"PAR1 broken", source)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"prediction": pa.array([1], pa.int64())}), sink)
    with pytest.raises(
        RunFolderError, match=r"predictions\.parquet: expected the column 'prediction' \(uint8\), found "
    ):
        decode_predictions(sink.getvalue().to_pybytes(), source)
