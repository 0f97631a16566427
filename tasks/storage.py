"""Atomic file targets, checksums and quarantine.

Every finished target is written to a temp file in its own directory and moved into place with
`os.replace`, which is atomic on POSIX. A reader therefore sees either no file or the whole file. Temp
files carry the `TEMP_MARKER` so that a later run can recognise and sweep the leftovers of a killed one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from tasks.errors import StorageError

TEMP_MARKER = ".tmp-"
QUARANTINE_DIR = "quarantine"


def storage_error(path: Path, exc: OSError) -> StorageError:
    if exc.errno == errno.ENOSPC:
        hint = "the disk is full; free space under the artifacts root and rerun"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "the artifacts root is not writable; fix its permissions or set [pipeline] artifacts_root"
    else:
        hint = "check the artifacts root and rerun"
    return StorageError(f"cannot write {path}: {exc.strerror or exc} ({hint})")


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create `path` and its parents; raise StorageError with a hint when that is impossible."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(directory, exc) from exc
    return directory


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success move it onto `path` atomically.

    The temp name keeps `suffix` (for writers that choose a format by extension). On any exception the
    temp file is removed and `path` is untouched.
    """
    final = Path(path)
    ensure_dir(final.parent)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{final.name}{TEMP_MARKER}", suffix=suffix, dir=final.parent)
    except OSError as exc:
        raise storage_error(final, exc) from exc
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise storage_error(final, exc) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temp file for writing; it replaces `path` only if the block finishes without error."""
    with atomic_path(path) as temp:
        try:
            with open(temp, mode) as handle:
                yield handle
        except OSError as exc:
            raise storage_error(Path(path), exc) from exc


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON, atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def quarantine(path: str | os.PathLike, reason: str) -> Path:
    """Move a bad file into `<its dir>/quarantine/`, never deleting it, and record why beside it.

    Returns the new location so that the caller can name it in its error message.
    """
    source = Path(path)
    target_dir = ensure_dir(source.parent / QUARANTINE_DIR)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = target_dir / f"{source.name}.{stamp}"
    counter = 1
    while target.exists():
        target = target_dir / f"{source.name}.{stamp}.{counter}"
        counter += 1
    shutil.move(str(source), str(target))
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def sweep_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove temp files left by killed writers under `directory`; return what was removed.

    Only names carrying TEMP_MARKER are touched, and only those whose writer is gone: a file is swept
    when it is older than one minute, so a writer running beside us keeps its temp file.
    """
    removed: list[Path] = []
    root = Path(directory)
    if not root.exists():
        return removed
    cutoff = time.time() - 60
    for candidate in root.rglob(f"*{TEMP_MARKER}*"):
        try:
            if candidate.is_file() and candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:
            continue
    return removed
