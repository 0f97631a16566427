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
import json
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.errors import TrainingError
from tasks.core.faults import crash_point
from tasks.core.storage import TEMP_MARKER, fsync_files, write_json_atomic

LATEST_JSON = "latest.json"
KEEP = 3  # checkpoints kept on disk, newest first (the Saver's max_to_keep, done here across resumes)

_PREFIX = re.compile(r"^epoch-(\d{4,})")
_COMPLETE_FILE = re.compile(r"^epoch-(\d{4,})\.(index|data-\d{5}-of-\d{5})$")
_LATEST_KEYS = ("epoch", "prefix", "weights_sha256", "variables", "run_hash", "seed")


def prefix_name(epoch: int) -> str:
    """The checkpoint prefix of an epoch, relative to the checkpoints folder: `epoch-0003`."""
    return f"epoch-{epoch:04d}"


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


def read_latest(checkpoint_dir: Path) -> dict[str, Any] | None:
    """The contents of latest.json, or None when no epoch has been checkpointed yet."""
    path = Path(checkpoint_dir) / LATEST_JSON
    if not path.exists():
        return None
    try:
        latest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{path}: not readable JSON ({exc}); delete the run folder and rerun TrainRun") from None
    missing = [key for key in _LATEST_KEYS if not isinstance(latest, dict) or key not in latest]
    epoch = None if missing else latest["epoch"]
    if (
        missing
        or isinstance(epoch, bool)
        or not isinstance(epoch, int)
        or epoch < 1
        or latest["prefix"] != prefix_name(epoch)
    ):
        raise TrainingError(
            f"{path}: expected keys {list(_LATEST_KEYS)}, an epoch >= 1 and the prefix of that epoch, "
            f"found {latest!r}; delete the run folder and rerun TrainRun"
        )
    return latest


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
