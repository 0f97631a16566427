"""Our C++ TensorFlow ops: where their library is built, and loading it once per process, or falling back.

One op so far, VarianceAdaptedStep (variance_adapted_step.cc): M-SVAG's and SVAG's per-variable update in
one pass, bit-identical to the pure-TF ops of tasks.training.msvag. It is a speed-up only: wherever the
library is missing or fails to load, the optimizers use those TF ops and train to the same weights.

The library is built per TensorFlow version, as build/kernels/tf-<version>/variance_adapted_step.so in the
checkout (`make kernels`, or `python -m tasks.training.kernels build`; see .build), since an op library
links against one TF build. An upgrade of TF therefore looks for a new file, and `make install` builds it.

`FMNIST_PURE_TF=1` forces the pure-TF path (to compare the two, or rule the kernel out).

Importing this module loads no TensorFlow and no library: the Luigi worker imports the task modules before
it forks (pipeline/warm.py), and the library is loaded in the task's own process, when an optimizer is
built (`variance_adapted_step_op`).

A library is loaded only when its stamp vouches for it: built from the current source, and the library's
own sha256 as its build recorded it. dlopen of damaged bytes is not an error one can catch (a truncated
file dies of SIGBUS), so the bytes are checked first; a library that loads but holds no VarianceAdaptedStep
op (a foreign one) counts as failing to load. Each of these falls back, with one warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from tasks.core.storage import sha256_file

LOG = logging.getLogger(__name__)

PURE_TF_ENV = "FMNIST_PURE_TF"
SOURCE = Path(__file__).with_name("variance_adapted_step.cc")
LIBRARY_NAME = "variance_adapted_step.so"
OP_FUNCTION = "variance_adapted_step"  # the Python function TF makes of the VarianceAdaptedStep op
BUILD_ROOT = Path(__file__).resolve().parents[3] / "build" / "kernels"

_libraries: dict[Path, Any] = {}  # path → the loaded module, or None where loading failed (warned once)
_lock = threading.Lock()


def library_path(tf_version: str) -> Path:
    """Where `make kernels` puts the library built against TensorFlow `tf_version`."""
    return BUILD_ROOT / f"tf-{tf_version}" / LIBRARY_NAME


def stamp_path(library: Path) -> Path:
    """The build's record beside the library: the sha256 of the source it was built from, the command, and
    the sha256 of the library it wrote (`library_sha256`)."""
    return library.with_name(library.name + ".json")


def read_stamp(library: Path) -> dict | None:
    """The stamp of `library` (see `stamp_path`), or None if it is missing, unreadable or not a JSON object."""
    try:
        stamp = json.loads(stamp_path(library).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def library_matches_stamp(library: Path, stamp: dict) -> bool:
    """True when the bytes of `library` are those its build recorded in `stamp` (never trust a loadable name)."""
    try:
        return stamp.get("library_sha256") == sha256_file(library)
    except OSError:
        return False


def source_sha256() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


_forbidden: str | None = None  # why this process must not use the kernel (see `forbid`)


def forbid(reason: str) -> None:
    """Use the pure-TF path for the rest of this process: e.g. its sessions train on a GPU, and the op has
    CPU kernels only (it would pin the optimizer's slots, and with them the step, to the CPU)."""
    global _forbidden  # noqa: PLW0603 - a once-per-process switch
    _forbidden = reason


def pure_tf_forced() -> bool:
    """True when FMNIST_PURE_TF is set to anything but empty or 0, or `forbid` was called in this process."""
    return _forbidden is not None or os.environ.get(PURE_TF_ENV, "").strip() not in ("", "0")


def load_library(path: Path) -> Any:
    """The op library at `path`, loaded once per process; None, with one warning, if missing, stale or broken."""
    path = Path(path)
    with _lock:
        if path not in _libraries:
            _libraries[path] = _load(path)
        return _libraries[path]


def loaded_libraries() -> dict[Path, bool]:
    """The paths this process tried to load, each with whether it loaded."""
    with _lock:
        return {path: module is not None for path, module in _libraries.items()}


def _load(path: Path) -> Any:
    from tasks.training.tf1 import tf

    fallback = "M-SVAG/SVAG use the pure-TF ops instead: same weights, slower steps"
    if not path.is_file():
        LOG.warning(
            "fused M-SVAG/SVAG kernel not built: expected %s (TensorFlow %s); run `make kernels`. %s",
            path,
            tf.__version__,
            fallback,
        )
        return None
    stamp = read_stamp(path) or {}
    if stamp.get("source_sha256") != source_sha256():
        # A library from another version of the .cc may compute something else: the pure path is the reference.
        LOG.warning(
            "fused M-SVAG/SVAG kernel %s was not built from the current %s; run `make kernels`. %s",
            path,
            SOURCE.name,
            fallback,
        )
        return None
    if not library_matches_stamp(path, stamp):
        # Checked before dlopen: loading a truncated or overwritten library can kill the process (SIGBUS).
        LOG.warning(
            "fused M-SVAG/SVAG kernel %s does not match the sha256 its build recorded (truncated, replaced, or "
            "built before the stamp recorded it); run `make kernels`. %s",
            path,
            fallback,
        )
        return None
    try:
        library = tf.load_op_library(str(path))
    except (tf.errors.OpError, OSError) as error:
        problem = f"{type(error).__name__}: {str(error).strip()}"
    else:
        if hasattr(library, OP_FUNCTION):
            return library
        problem = "it holds no VarianceAdaptedStep op: not this project's library"
    LOG.warning(
        "fused M-SVAG/SVAG kernel %s failed to load (%s); rebuild it with `make kernels`. %s", path, problem, fallback
    )
    return None


def variance_adapted_step_op() -> Any:
    """The VarianceAdaptedStep op's Python function, or None: pure TF forced, or no usable library."""
    if pure_tf_forced():
        return None
    from tasks.training.tf1 import tf

    library = load_library(library_path(tf.__version__))
    return None if library is None else getattr(library, OP_FUNCTION)
