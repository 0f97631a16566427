"""Disk trouble in words: a full, read-only or forbidden artifacts root becomes a StorageError that names
the file, the cause (with the free bytes for a full disk) and the fix."""

from __future__ import annotations

import contextlib
import errno
import getpass
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tasks.core.errors import StorageError

_FIX_ROOT = "or set `[pipeline] artifacts_root` in luigi.cfg to a folder that is"


def storage_error(path: Path, exc: OSError) -> StorageError:
    """A StorageError naming `path`, the cause (full disk, read-only, permissions) and what to do."""
    reason = exc.strerror or str(exc)
    code = exc.errno
    if code is None:  # some libraries raise OSError without errno; their text still says why
        text = str(exc).lower()
        code = next((code for code, words in _ERRNO_TEXTS.items() if words in text), None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        hint = (
            f"expected free space on the filesystem that holds it, found {_free_bytes(path)}; free space "
            f"there and rerun, {_FIX_ROOT} on a bigger disk"
        )
    elif code == errno.EROFS:
        hint = (
            f"the filesystem that holds it is mounted read-only; remount it read-write and rerun, {_FIX_ROOT} writable"
        )
    elif code in (errno.EACCES, errno.EPERM):
        hint = f"user {_user()} may not write there; give it write access (chown/chmod) and rerun, {_FIX_ROOT} writable"
    else:
        hint = "check that the artifacts root is a healthy, writable local or network folder, and rerun"
    # The folder that refused may be a parent that did not exist yet (mkdir -p): name it too.
    where = f" (at {exc.filename})" if exc.filename and Path(exc.filename) != Path(path) else ""
    return StorageError(f"cannot write {path}: {reason}{where}. {hint[0].upper()}{hint[1:]}.")


# How libraries that raise no OSError (TensorFlow's C++ file system) still say why a write failed.
_ERRNO_TEXTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}


@contextlib.contextmanager
def disk_errors_as_storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a library's error about a full, read-only or forbidden disk while writing `path` into a StorageError.

    TensorFlow reports ENOSPC as a ResourceExhaustedError with an out-of-memory hint; the user needs to
    hear "the disk is full" instead. Any other error passes through unchanged.
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        text = str(exc).lower()
        code = next((code for code, words in _ERRNO_TEXTS.items() if words in text), None)
        if code is None:
            raise
        raise storage_error(Path(path), OSError(code, os.strerror(code))) from exc


def _free_bytes(path: Path) -> str:
    for folder in (Path(path), *Path(path).parents):
        try:
            return f"{shutil.disk_usage(folder).free} bytes free"
        except OSError:
            continue
    return "no way to tell how much"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
