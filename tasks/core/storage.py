"""Atomic file targets, checksums, quarantine, and the sweep of killed writers' temp files.

Every finished target is written to a temp file in its own directory and moved into place with
`os.replace`, which is atomic on POSIX. A reader therefore sees either no file or the whole file. A temp
file is named `.<target>.tmp-<writer>-<pid>-<random>[suffix]`, where `<writer>` names this host (and its
pid namespace): a later run recognises the leftovers of a killed writer by that name and sweeps them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tasks.core.diskerrors import disk_errors_as_storage_errors, storage_error  # noqa: F401 - re-exported
from tasks.core.errors import StorageError
from tasks.core.faults import crash_point

log = logging.getLogger(__name__)

TEMP_MARKER = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back
QUARANTINE_DIR = "quarantine"
# A temp file of another host (whose pids we cannot check) is swept when it has not changed for this
# long: an atomic write takes seconds, and a file being written keeps a fresh mtime.
FOREIGN_TEMP_SECONDS = 3600
_TEMP_NAME = re.compile(re.escape(TEMP_MARKER) + r"(?P<writer>[A-Za-z0-9._]+)-(?P<pid>\d+)-")


def _writer_id() -> str:
    """This host's name plus its pid namespace: two containers on one host never share a pid space."""
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:48] or "host"
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""  # not Linux: the host name alone
    return f"{host}.{namespace}" if namespace else host


WRITER_ID = _writer_id()


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create `path` and its parents; raise StorageError with a hint when that is impossible."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(directory, exc) from None
    return directory


def _make_temp(final: Path, suffix: str) -> Path:
    """Create an empty temp file beside `final`, named so that a sweep can tell whether its writer lives."""
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{final.name}{TEMP_MARKER}{WRITER_ID}-{os.getpid()}-", suffix=suffix, dir=final.parent
    )
    try:
        # mkstemp makes the file private (0600) and os.replace keeps that mode; a finished artifact gets
        # the mode a plain open() would give it, so reports and data stay readable where the umask says.
        os.fchmod(fd, public_file_mode())
    finally:
        os.close(fd)
    return Path(temp_name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", durable: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success move it onto `path` atomically.

    The temp name keeps `suffix` (for writers that choose a format by extension). On any exception the
    temp file is removed and `path` is untouched. `durable`: the file and the rename are flushed to disk
    (fsync) before this returns. Without it the file is still never seen half-written after a kill, but a
    power cut may leave the previous version: for bookkeeping that nothing else is checked against.
    """
    final = Path(path)
    ensure_dir(final.parent)
    try:
        temp = _make_temp(final, suffix)
    except OSError as exc:
        raise storage_error(final, exc) from None
    try:
        yield temp
        if durable:
            _fsync_file(temp)
        crash_point("storage.temp-written")
        os.replace(temp, final)
        if durable:
            _fsync_dir(final.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise storage_error(final, exc) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", durable: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file for writing; it replaces `path` only if the block finishes without error."""
    with atomic_path(path, durable=durable) as temp:
        try:
            with open(temp, mode) as handle:
                yield handle
        except OSError as exc:
            raise storage_error(Path(path), exc) from None


def write_json_atomic(path: str | os.PathLike, payload: Any, durable: bool = True) -> None:
    """Write `payload` as indented, key-sorted JSON, atomically (see atomic_path for `durable`)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_open(path, "w", durable=durable) as handle:
        handle.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def fsync_files(paths: list[Path]) -> None:
    """Flush files written by someone else's code (TF's Saver) and their folders to disk, before a
    pointer to them is written: after a power cut the pointer never names bytes still in the page cache."""
    for path in paths:
        try:
            _fsync_file(path)
        except OSError as exc:
            raise storage_error(path, exc) from None
    for folder in {path.parent for path in paths}:
        _fsync_dir(folder)


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


def quarantine(path: str | os.PathLike, reason: str, *, keep_bytes: int | None = None) -> Path:
    """Move a bad file into `<its dir>/quarantine/`, never deleting it, and record why beside it.

    The moved file is made private (never more readable than it was, at most 0600: it may be a copy
    of something only its owner could read), and its size and sha256 go into the `.reason.txt`. With
    `keep_bytes`, a larger file keeps only its first `keep_bytes` bytes, so that repeated bad downloads
    cannot fill the disk. A symbolic link is moved as the link itself, never followed. Returns the new
    location so that the caller can name it in its error message.
    """
    source = Path(path)
    target_dir = _quarantine_dir(source.parent)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = target_dir / f"{source.name}.{stamp}"
    counter = 1
    while os.path.lexists(target) or os.path.lexists(_reason_path(target)):
        target = target_dir / f"{source.name}.{stamp}.{counter}"
        counter += 1
    shutil.move(str(source), str(target))
    evidence = _seal_quarantined(target, keep_bytes)
    text = reason + ("\n" + evidence if evidence else "") + "\n"
    fd = os.open(_reason_path(target), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return target


def _reason_path(target: Path) -> Path:
    return target.with_name(target.name + ".reason.txt")


def _quarantine_dir(parent: Path) -> Path:
    """`parent/quarantine`, created private; a symbolic link or a file in its place is refused."""
    folder = parent / QUARANTINE_DIR
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        if folder.is_symlink() or not folder.is_dir():
            raise StorageError(
                f"cannot quarantine into {folder}: expected a folder, found "
                f"{'a symbolic link' if folder.is_symlink() else 'something else'}; move it aside and rerun"
            ) from None
    except OSError as exc:
        raise storage_error(folder, exc) from None
    return folder


def _seal_quarantined(target: Path, keep_bytes: int | None) -> str:
    """Make a quarantined file private, describe it (size, sha256), and cut it to `keep_bytes`."""
    info = target.lstat()
    if stat.S_ISLNK(info.st_mode):
        return f"it was a symbolic link to {os.readlink(target)!r} (moved as a link, never followed)"
    if not stat.S_ISREG(info.st_mode):
        return "it was not a regular file (moved as it was, never opened)"
    cut = keep_bytes is not None and info.st_size > keep_bytes
    try:
        fd = os.open(target, (os.O_RDWR if cut else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # moved, but not ours to read: the move itself is what matters
        return f"its contents could not be read ({exc.strerror or exc}), so it is kept whole"
    with open(fd, "rb" if not cut else "rb+", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "it was not a regular file (moved as it was, never read)"
        with contextlib.suppress(OSError):  # not ours to chmod: it keeps the mode its owner gave it
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o600)
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
        evidence = f"size {size} bytes, sha256 {digest.hexdigest()}"
        if cut:
            os.ftruncate(fd, keep_bytes)
            evidence += f"; only its first {keep_bytes} bytes are kept here"
    return evidence


def public_file_mode() -> int:
    """The mode a plain open() gives a new file under this process's umask (0644 under umask 022)."""
    return 0o666 & ~_UMASK


def sweep_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temp files of killed writers under `directory`; return what was removed.

    Only regular files whose name carries TEMP_MARKER are touched, never a quarantine folder, a `.part`
    download or anything else. A temp file is swept when its writer is a dead process of this host (at
    any age), or when it has not changed for FOREIGN_TEMP_SECONDS (another host's writer, whose pid we
    cannot check, or an old name without a pid). A live writer's temp file, here or elsewhere, stays.
    """
    removed: list[Path] = []
    now = time.time()
    for folder, subfolders, files in os.walk(directory):
        subfolders[:] = [name for name in subfolders if name != QUARANTINE_DIR]
        for name in files:
            if TEMP_MARKER not in name or name.endswith(".part"):
                continue
            path = Path(folder) / name
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    continue
                if _writer_is_dead(name) or now - info.st_mtime > FOREIGN_TEMP_SECONDS:
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue  # gone meanwhile, or not ours to remove: a sweep never fails a run
    if removed:
        log.info("swept %d temp file(s) of killed writers: %s", len(removed), ", ".join(map(str, removed)))
    return removed


def _writer_is_dead(name: str) -> bool:
    """True when `name` is the temp file of a process of this host (and pid namespace) that has ended."""
    match = _TEMP_NAME.search(name)
    if match is None or match["writer"] != WRITER_ID:
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists but belongs to another user: alive
    return False
