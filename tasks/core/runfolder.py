"""One run's folder: the only code that reads and validates it, and the one definition of "finished".

Training writes the folder, evaluation adds to it, and everything else (resume, the Luigi tasks' `complete`,
`plan`, nightly, the report) reads it here, through `RunFolder`. A run folder is data, never code: every
file is checked before it is believed, and a file it names is read only where the run itself could have
written it. No TensorFlow here: `finished` is asked at scheduling time, for every run of a config.

    runs/<model>-<entry>-<run hash>/seed-<n>/
      run.json             training's record, written last: the run is finished
      metrics.parquet      one row per completed epoch; its rows' digest is in run.json (metrics_sha256)
      attempts.json        every start of training in this folder (bookkeeping)
      checkpoints/         epoch-NNNN.index, epoch-NNNN.data-*, latest.json (the only pointer a resume trusts)
      predictions.parquet  evaluation's per-example test predictions (uint8, test-file row order), hashed in
                           evaluation.json
      evaluation.json      evaluation's record, written last by evaluation
      events.out.tfevents.fmnist-pipeline
                           TensorBoard's view of metrics.parquet and evaluation.json (tasks.training.events),
                           derived: "finished" never asks for it, and a run without it is not trained again
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.errors import RunFolderError
from tasks.core.runtables import METRIC_COLUMNS, METRICS_SCHEMA, decode_predictions, metric_arrays, metrics_digest

RUN_JSON = "run.json"
# run.json's digest of metrics.parquet's rows (metrics_digest); absent in runs recorded before it existed.
METRICS_SHA256 = "metrics_sha256"
METRICS_PARQUET = "metrics.parquet"
EVALUATION_JSON = "evaluation.json"
PREDICTIONS_PARQUET = "predictions.parquet"
# TensorBoard finds event files by "tfevents" in the name; one per run folder, rewritten whole.
EVENTS_FILE = "events.out.tfevents.fmnist-pipeline"
# The evaluation.json whose completed runs carry their per-example predictions (older ones are scored again).
EVALUATION_SCHEMA_VERSION = 2
CHECKPOINT_DIR = "checkpoints"
LATEST_JSON = "latest.json"
# What training writes into run.json's status; anything else is not a finished run. "failed": a plugin's own
# code failed before training began (tasks.core.errors.PluginFault); the run has no epochs and no weights.
COMPLETED, DIVERGED, FAILED = "completed", "diverged", "failed"
RUN_STATUSES = (COMPLETED, DIVERGED, FAILED)

_DATA_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_LATEST_KEYS = ("epoch", "prefix", "weights_sha256", "variables", "run_hash", "seed")


def prefix_name(epoch: int) -> str:
    """The checkpoint prefix of an epoch, relative to the checkpoints folder: `epoch-0003`."""
    return f"epoch-{epoch:04d}"


def _frozen(data: dict[str, Any]) -> Mapping[str, Any]:
    """A record's content, read-only (a record is always a JSON object: _check_identity refused anything else)."""
    return MappingProxyType(data)


@dataclass(frozen=True)
class RunRecord:
    """run.json of a finished run, checked: its identity, status and final checkpoint; `data` is the whole."""

    run_hash: str
    seed: int
    status: str  # one of RUN_STATUSES
    epochs_completed: int
    final_checkpoint: str | None  # relative to the run folder; None when no epoch completed
    weights_sha256: str | None  # of the weights final_checkpoint holds
    data: Mapping[str, Any]

    @property
    def diverged(self) -> bool:
        return self.status == DIVERGED

    @property
    def has_result(self) -> bool:
        """Whether the run has weights to score: completed. A diverged or failed run has no test numbers."""
        return self.status == COMPLETED

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


@dataclass(frozen=True)
class EvaluationRecord:
    """evaluation.json of a scored run, checked to be of this run; `data` is the whole."""

    run_hash: str
    seed: int
    status: str
    data: Mapping[str, Any]

    @property
    def test(self) -> Mapping[str, Any] | None:
        return self.data.get("test")

    @property
    def metrics(self) -> Mapping[str, Any] | None:
        return self.data.get("metrics")


@dataclass(frozen=True)
class RunFolder:
    """The folder of run (run_hash, seed) at `path`: what it holds, and whether that is a finished run."""

    path: Path
    run_hash: str
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def found_at(cls, path: Path) -> RunFolder:
        """The folder at `path` as the run its run.json names (for reading records of runs not planned here,
        e.g. earlier runs' training rates); RunFolderError when run.json names no run."""
        run_json = Path(path) / RUN_JSON
        try:
            data = json.loads(run_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{run_json} is not readable JSON ({exc})") from None
        run_hash, seed = (data.get("run_hash"), data.get("seed")) if isinstance(data, dict) else (None, None)
        if not isinstance(run_hash, str) or isinstance(seed, bool) or not isinstance(seed, int):
            raise RunFolderError(f"{run_json}: expected a run_hash and a seed, found {run_hash!r}, {seed!r}")
        return cls(Path(path), run_hash, seed)

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_PARQUET

    @property
    def evaluation_json(self) -> Path:
        return self.path / EVALUATION_JSON

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_PARQUET

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    # -- training's record --------------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why this folder does not hold the finished run (run_hash, seed) with all its files; None when it does.

        Finished means: run.json readable, of this run, with a final status; metrics.parquet present when an
        epoch completed; the final checkpoint's files present as regular files inside the run folder.
        """
        return _why_not(self.record)

    @property
    def finished(self) -> bool:
        return self.problem() is None

    def record(self) -> RunRecord:
        """run.json, once every file it vouches for is whole; RunFolderError says what is wrong."""
        data = self._run_json()
        status, epochs = data.get("status"), data.get("epochs_completed")
        if status not in RUN_STATUSES:
            raise RunFolderError(f"{self.run_json} has status {status!r}, not one of {list(RUN_STATUSES)}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise RunFolderError(f"{self.run_json} has epochs_completed {epochs!r}, not a count")
        if epochs > 0 and not self.metrics_path.is_file():
            raise RunFolderError(f"{self.metrics_path} not found")
        problem = self.metrics_mismatch(data)
        if problem:
            raise RunFolderError(problem)
        final, weights = data.get("final_checkpoint"), data.get("weights_sha256")
        if status == FAILED and (epochs or final is not None or not isinstance(data.get("failure"), str)):
            raise RunFolderError(
                f"{self.run_json} has status 'failed' but epochs_completed {epochs!r}, final_checkpoint {final!r} "
                f"and failure {data.get('failure')!r}; a failed run has no epochs, no checkpoint and says why"
            )
        if final is None:
            if status == COMPLETED:
                raise RunFolderError(f"{self.run_json} has status 'completed' but no final_checkpoint")
        else:
            if not isinstance(final, str):
                raise RunFolderError(f"{self.run_json} has final_checkpoint {final!r}, not a path")
            problem = self.checkpoint_problem(final)
            if problem:
                raise RunFolderError(f"final checkpoint {problem}")
            if not isinstance(weights, str):
                raise RunFolderError(f"{self.run_json} names final_checkpoint {final!r} but no weights_sha256")
        return RunRecord(self.run_hash, self.seed, status, epochs, final, weights, _frozen(data))

    def has_record(self) -> bool:
        """Whether run.json exists at all (finished or not)."""
        return self.run_json.exists()

    def _run_json(self) -> dict[str, Any]:
        """run.json's content, checked to be a record of this run (not yet that it is finished)."""
        try:
            data = json.loads(self.run_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunFolderError(f"{self.run_json} not found") from None
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{self.run_json} is not readable JSON ({exc})") from None
        self._check_identity(self.run_json, data)
        return data

    def _check_identity(self, path: Path, data: Any) -> None:
        if not isinstance(data, dict) or (data.get("run_hash"), data.get("seed")) != (self.run_hash, self.seed):
            found = (data.get("run_hash"), data.get("seed")) if isinstance(data, dict) else type(data).__name__
            raise RunFolderError(
                f"{path}: expected the record of run {self.run_hash} seed {self.seed}, found {found}; the folder "
                "holds another run's files: use another run folder or delete this one"
            )

    def foreign_record(self) -> str | None:
        """Why run.json is of another run (a folder never to be touched), or None (missing, unreadable, or ours)."""
        try:
            self._run_json()
        except RunFolderError as exc:
            return str(exc) if "expected the record of run" in str(exc) else None
        return None

    # -- metrics ------------------------------------------------------------------------------------

    def metrics_mismatch(self, data: Mapping[str, Any] | None = None) -> str | None:
        """Why metrics.parquet is not the file run.json vouches for (red team 7a), or None when it is.

        run.json records `metrics_sha256`, the digest of the rows' values (metrics_digest); a run recorded
        before that key existed has none and is trusted as before: it cannot be checked, and retraining
        every earlier run to get one would cost hours for no new number.
        """
        try:
            data = self._run_json() if data is None else data
        except RunFolderError:
            return None
        expected = data.get(METRICS_SHA256)
        if expected is None:
            return None
        try:
            found = metrics_digest(self.metric_rows())
        except RunFolderError as exc:
            return str(exc)
        if found != expected:
            return (
                f"{self.metrics_path}: its rows' sha256 is {found}, but {RUN_JSON} records {expected!r}; it is "
                "not the file training wrote (edited or damaged): the run is trained again"
            )
        return None

    def metric_rows(self) -> list[dict[str, Any]]:
        """metrics.parquet's rows as written (one per completed epoch); RunFolderError when missing or unusable."""
        if not self.metrics_path.is_file():
            raise RunFolderError(f"{self.metrics_path} not found")
        try:
            table = pq.read_table(self.metrics_path)
        except (pa.ArrowException, OSError) as exc:
            raise RunFolderError(f"{self.metrics_path}: not a readable Parquet file ({exc})") from None
        if not table.schema.equals(METRICS_SCHEMA):
            raise RunFolderError(
                f"{self.metrics_path}: expected the columns {list(METRIC_COLUMNS)}, found {table.schema.names}; "
                "the run was written by other training code"
            )
        return table.to_pylist()

    def metrics(self) -> dict[str, np.ndarray]:
        """metrics.parquet as {column: numpy array}, sorted by epoch."""
        return metric_arrays(self.metric_rows())

    # -- checkpoints ----------------------------------------------------------------------------------

    def checkpoint_problem(self, prefix: str) -> str | None:
        """Why checkpoint `prefix` (relative to the folder, e.g. `checkpoints/epoch-0003`) must not be restored,
        or None when its `.index` and every `.data` shard are regular files, no symlinks, inside the folder."""
        root = self.path.resolve()
        base = self.path / prefix
        if Path(prefix).is_absolute() or not base.resolve().is_relative_to(root / CHECKPOINT_DIR):
            return f"names {prefix!r}, which is outside {root / CHECKPOINT_DIR}"
        index = base.with_name(f"{base.name}.index")
        shards = sorted(base.parent.glob(f"{base.name}.data-*"))  # none when the folder is missing
        totals = {match.group(2) for match in (_DATA_SHARD.search(shard.name) for shard in shards) if match}
        if len(totals) != 1:
            return (
                f"expected {base.name}.data-NNNNN-of-NNNNN files of one save in {base.parent}, "
                f"found {[shard.name for shard in shards]}"
            )
        total = totals.pop()
        expected = [base.with_name(f"{base.name}.data-{number:05d}-of-{total}") for number in range(int(total))]
        for path in [index, *expected]:
            try:
                info = path.lstat()
            except OSError:
                return f"{path} not found"
            if not stat.S_ISREG(info.st_mode):
                return f"{path} is not a regular file (a symlink or a folder); only files written in place are restored"
            if not path.resolve().is_relative_to(root):
                return f"{path} resolves to {path.resolve()}, outside the run folder {root}"
        return None

    def latest(self) -> dict[str, Any] | None:
        """checkpoints/latest.json, checked to be a well-formed pointer of this run; None before any epoch."""
        latest = read_latest(self.checkpoint_dir)
        if latest is not None and (latest["run_hash"], latest["seed"]) != (self.run_hash, self.seed):
            raise RunFolderError(
                f"{self.checkpoint_dir / LATEST_JSON}: belongs to run {latest['run_hash']} seed {latest['seed']}, "
                f"not {self.run_hash} seed {self.seed}; use another run folder or delete this one"
            )
        return latest

    # -- evaluation ---------------------------------------------------------------------------------

    def evaluation(self) -> EvaluationRecord:
        """evaluation.json of this run, while the run itself is still finished (an evaluation stands only
        while its run does)."""
        record = self.record()
        try:
            data = json.loads(self.evaluation_json.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunFolderError(f"{self.evaluation_json} not found") from None
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{self.evaluation_json} is not readable JSON ({exc})") from None
        self._check_identity(self.evaluation_json, data)
        if data.get("status") != record.status:
            raise RunFolderError(
                f"{self.evaluation_json}: status {data.get('status')!r} disagrees with run.json's "
                f"{record.status!r}; delete evaluation.json and rerun EvaluateRun"
            )
        if record.has_result:
            if data.get("schema_version") != EVALUATION_SCHEMA_VERSION:
                raise RunFolderError(
                    f"{self.evaluation_json}: schema_version {data.get('schema_version')!r}, expected "
                    f"{EVALUATION_SCHEMA_VERSION} (with per-example predictions); EvaluateRun scores the run again"
                )
            self._checked_predictions(data)
        return EvaluationRecord(self.run_hash, self.seed, record.status, _frozen(data))

    def predictions(self) -> np.ndarray:
        """The per-example test predictions of a scored run (uint8, test-file row order), checked against the
        sha256 and row count evaluation.json records for them."""
        return self._checked_predictions(self.evaluation().data)

    def _checked_predictions(self, evaluation: Mapping[str, Any]) -> np.ndarray:
        named = evaluation.get("predictions")
        test = evaluation.get("test")
        if not isinstance(named, Mapping) or not isinstance(test, Mapping):
            raise RunFolderError(f"{self.evaluation_json}: a completed run's record names no predictions or scores")
        try:
            data = self.predictions_path.read_bytes()
        except FileNotFoundError:
            raise RunFolderError(f"{self.predictions_path} not found; EvaluateRun writes it again") from None
        except OSError as exc:
            raise RunFolderError(f"{self.predictions_path}: cannot read it ({exc})") from None
        found = hashlib.sha256(data).hexdigest()
        if found != named.get("sha256"):
            raise RunFolderError(
                f"{self.predictions_path}: sha256 {found}, but {EVALUATION_JSON} records {named.get('sha256')!r}; "
                "it is not the file evaluation wrote: EvaluateRun scores the run again"
            )
        predictions = decode_predictions(data, self.predictions_path)
        if len(predictions) != test.get("examples"):
            raise RunFolderError(
                f"{self.predictions_path}: {len(predictions)} rows, expected the {test.get('examples')} test examples"
            )
        return predictions

    def evaluation_problem(self) -> str | None:
        """Why the folder holds no standing evaluation of this run (see `evaluation`); None when it does."""
        return _why_not(self.evaluation)

    @property
    def evaluated(self) -> bool:
        return self.evaluation_problem() is None


def _why_not(check: Callable[[], object]) -> str | None:
    """The RunFolderError message of `check()`, or None when it passes."""
    try:
        check()
    except RunFolderError as exc:
        return str(exc)
    return None


def read_latest(checkpoint_dir: Path) -> dict[str, Any] | None:
    """latest.json of a checkpoints folder, well formed (whoever's run it is); None when there is none."""
    path = Path(checkpoint_dir) / LATEST_JSON
    if not path.exists():
        return None
    try:
        latest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: not readable JSON ({exc}); delete the run folder and rerun TrainRun") from None
    missing = [key for key in _LATEST_KEYS if not isinstance(latest, dict) or key not in latest]
    epoch = None if missing else latest["epoch"]
    if (
        missing
        or isinstance(epoch, bool)
        or not isinstance(epoch, int)
        or epoch < 1
        or latest["prefix"] != prefix_name(epoch)
    ):
        raise RunFolderError(
            f"{path}: expected keys {list(_LATEST_KEYS)}, an epoch >= 1 and the prefix of that epoch, "
            f"found {latest!r}; delete the run folder and rerun TrainRun"
        )
    return latest
