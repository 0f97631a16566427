"""Kill-safe checkpoint bookkeeping for one run's `checkpoints/` folder (no TensorFlow at import).

TF's Saver writes a checkpoint as several files (`<prefix>.index`, `<prefix>.data-*`) and no single
rename makes them appear together. So the Saver is told not to keep its own `checkpoint` state file;
instead `latest.json` is written atomically *after* a save has returned, and it is the only thing a
resume trusts. Files of any other epoch are leftovers of a killed save (or old epochs beyond the
retention) and `clean_checkpoint_dir` removes them.

Layout::

    checkpoints/
      epoch-0003.index, epoch-0003.data-00000-of-00001   last KEEP epochs
      latest.json                        {"epoch", "prefix", "weights_sha256", "variables", "run_hash", "seed"}
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.faults import crash_point
from tasks.core.runfolder import LATEST_JSON
from tasks.core.storage import TEMP_MARKER, fsync_files, write_json_atomic

KEEP = 3  # checkpoints kept on disk, newest first (the Saver's max_to_keep, done here across resumes)

_PREFIX = re.compile(r"^epoch-(\d{4,})")
_COMPLETE_FILE = re.compile(r"^epoch-(\d{4,})\.(index|data-\d{5}-of-\d{5})$")


def weights_sha256(named_values: Mapping[str, np.ndarray]) -> str:
    """sha256 over variables in name order: per variable its name, dtype, shape, then its C-order bytes.

    Two runs whose weights are bit-identical give the same digest; any single flipped bit changes it.
    """
    digest = hashlib.sha256()
    for name in sorted(named_values):
        value = np.ascontiguousarray(named_values[name])
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def checkpoint_weights_sha256(prefix: str | Path, variable_names: Iterable[str]) -> str:
    """`weights_sha256` of the named variables as stored in a checkpoint (for harnesses and tests)."""
    from tasks.training.tf1 import tf  # deferred: this module is imported without TF elsewhere

    reader = tf.train.load_checkpoint(str(prefix))
    return weights_sha256({name: reader.get_tensor(name) for name in variable_names})


def write_latest(checkpoint_dir: Path, record: dict[str, Any]) -> None:
    """Point latest.json at a checkpoint whose save has already returned (atomic, after an fsync of its files)."""
    crash_point("train.checkpoint-saved")
    directory = Path(checkpoint_dir)
    fsync_files(sorted(path for path in directory.glob(f"{record['prefix']}.*") if _COMPLETE_FILE.match(path.name)))
    write_json_atomic(directory / LATEST_JSON, record)


def clean_checkpoint_dir(checkpoint_dir: Path, latest_epoch: int, keep: int = KEEP) -> list[Path]:
    """Remove everything latest.json does not vouch for; return what was removed.

    Kept: latest.json and the complete files of epochs latest-keep+1 .. latest.
    Removed: files of later epochs (a save killed before latest.json moved), TF temp dirs and temp
    state files, TF's own `checkpoint` state file, temp files of atomic writes, and older epochs.
    """
    directory = Path(checkpoint_dir)
    if not directory.is_dir():
        return []
    removed: list[Path] = []
    for entry in sorted(directory.iterdir()):
        if entry.name == LATEST_JSON:
            continue
        complete = _COMPLETE_FILE.match(entry.name)
        # A symlink is never kept: a checkpoint is restored only from files written in place.
        if (
            complete
            and entry.is_file()
            and not entry.is_symlink()
            and latest_epoch - keep < int(complete.group(1)) <= latest_epoch
        ):
            continue
        if not (_PREFIX.match(entry.name) or entry.name == "checkpoint" or TEMP_MARKER in entry.name):
            continue  # not ours: leave unknown files alone
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def restore_verified(
    session: Any,
    saver: Any,
    variables: Iterable[Any],
    prefix: Path,
    expected_sha256: str,
    *,
    model: Any,
    recorded_in: str,
    error: type[Exception],
) -> None:
    """Restore checkpoint `prefix` into `session` with `saver`, then check that `variables` hold the weights
    whose sha256 `recorded_in` (latest.json or run.json) records; `error` (the caller's stage's type) names
    the checkpoint and what is wrong. The one restore that training's resume and evaluation both use."""
    from tasks.training.tf1 import tf, tf_error_text  # deferred: this module is imported without TF elsewhere

    try:
        saver.restore(session, str(prefix))
    except (tf.errors.OpError, ValueError) as exc:
        raise error(
            f"{prefix}: checkpoint does not restore into the {model.name!r} model of the run's settings "
            f"({tf_error_text(exc)}); it is corrupt or from another model: delete the run folder and retrain"
        ) from None
    variables = list(variables)
    found = weights_sha256(dict(zip((variable.op.name for variable in variables), session.run(variables))))
    if found != expected_sha256:
        raise error(
            f"{prefix}: restored weights have sha256 {found}, {recorded_in} records {expected_sha256}; the "
            "checkpoint is not the one this run saved (copied from another run, or corrupt): delete the run "
            "folder and retrain"
        )
