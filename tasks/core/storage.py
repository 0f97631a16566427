"""Atomic file targets, checksums, the sweep of killed writers' temp files, and the guard
against symbolic links inside the artifacts root.

Every finished target is written to a temp file in its own directory and moved into place with
`os.replace`, which is atomic on POSIX. A reader therefore sees either no file or the whole file. A temp
file is named `.<target>.tmp-<writer>-<pid>-<8 random>[suffix]`, where `<writer>` names this host (and its
pid namespace), and its writer holds a lock on it (flock) until it is renamed or removed: a later run
recognises the leftovers of a killed writer by that exact name and a free lock, and sweeps them.

No folder between an artifacts root (see `protect_root`) and anything written, swept or deleted may be a
symbolic link: `refuse_linked_folders` is the one check, and every writer and sweep here runs it, so
nothing outside the root is ever written or deleted through a link. The root itself may be a link.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
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
QUARANTINE_DIR = "quarantine"  # tasks/core/quarantine.py moves bad files here; the sweep leaves it alone
# A temp file of another host (whose pids we cannot check) is swept when no live writer holds its lock and
# it has not changed for this long (docs/operations-hardening.md: why both, and what clocks then matter).
FOREIGN_TEMP_SECONDS = 3600
# Exactly the names _make_temp gives (mkstemp adds 8 characters of [a-z0-9_]; the suffixes writers pass
# are one extension), and the skeleton's older `.<target>.tmp-<8 random>[suffix]`, swept by age alone.
_TEMP_NAME = re.compile(
    r"\.(?P<target>.+)"
    + re.escape(TEMP_MARKER)
    + r"(?:(?P<writer>[A-Za-z0-9._]+)-(?P<pid>\d+)-)?[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?"
)
_artifacts_roots: set[str] = set()  # see protect_root: absolute, as given (links in them not resolved)


def protect_root(root: str | os.PathLike) -> Path:
    """Declare `root` an artifacts root of this process: from now on, no folder below it that is written,
    swept or deleted in may be a symbolic link (refuse_linked_folders). The Layout of a root calls it."""
    absolute = Path(root).absolute()
    _artifacts_roots.add(str(absolute))
    return absolute


def refuse_linked_folders(path: str | os.PathLike, *, folder: bool = True) -> None:
    """Raise StorageError when a folder between an artifacts root and `path` is a symbolic link.

    Checked: every existing component below each protected root that holds `path`, `path` itself too when
    it is a `folder` (a file's own name may be a link: os.replace replaces the link, never its target).
    A `..` below the root is refused as well: it is resolved through links, so it may lead anywhere.
    Plain strings and lstat, not pathlib: Layout runs it for every path a task asks for while scheduling.
    """
    text = os.fspath(path)
    absolute = os.path.join(os.getcwd(), text)  # an absolute `text` stays itself
    for root in _artifacts_roots:
        if not absolute.startswith(root) or absolute[len(root) : len(root) + 1] not in ("", os.sep):
            continue
        parts = [part for part in absolute[len(root) :].split(os.sep) if part and part != "."]
        current = root
        for part in parts if folder else parts[:-1]:
            if part == "..":
                raise StorageError(f"{path}: expected a path inside the artifacts root {root}, found '..' in it")
            current = current + os.sep + part
            try:
                is_link = stat.S_ISLNK(os.lstat(current).st_mode)
            except OSError:
                break  # missing (it will be made as a real folder), or unreadable (the write will say so)
            if is_link:
                raise StorageError(_linked_folder_message(Path(current), Path(root)))


def _linked_folder_message(link: Path, root: Path) -> str:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return (
        f"{link} is a symbolic link (to {target}) inside the artifacts root {root}: the pipeline writes, sweeps "
        f"and deletes only in real folders under the root, never through a link, so it stopped before touching "
        f"anything. Replace the link by the folder itself (remove the link, then move {target} to {link}), or "
        f"set `[pipeline] artifacts_root` in luigi.cfg to a folder on that disk, and rerun"
    )


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
    """Create `path` and its parents; raise StorageError with a hint when that is impossible, or when a
    folder on the way below an artifacts root is a symbolic link (refuse_linked_folders)."""
    directory = Path(path)
    refuse_linked_folders(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(directory, exc) from None
    return directory


def _make_temp(final: Path, suffix: str) -> tuple[Path, int]:
    """Create an empty temp file beside `final`, named so that a sweep can tell whether its writer lives,
    and locked: (its path, the open descriptor that holds the lock; closing it releases the lock)."""
    fd, temp_name = tempfile.mkstemp(
        prefix=f".{final.name}{TEMP_MARKER}{WRITER_ID}-{os.getpid()}-", suffix=suffix, dir=final.parent
    )
    try:
        # mkstemp makes the file private (0600) and os.replace keeps that mode; a finished artifact gets
        # the mode a plain open() would give it, so reports and data stay readable where the umask says.
        os.fchmod(fd, public_file_mode())
        with contextlib.suppress(OSError):  # no locks on this filesystem: the sweep falls back to the age
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        os.unlink(temp_name)
        raise
    return Path(temp_name), fd


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
        temp, lock_fd = _make_temp(final, suffix)
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
    finally:
        os.close(lock_fd)  # after the rename or the removal: a sweep never sees the temp file unlocked


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


def public_file_mode() -> int:
    """The mode a plain open() gives a new file under this process's umask (0644 under umask 022)."""
    return 0o666 & ~_UMASK


def sweep_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temp files of killed writers under `directory`; return what was removed.

    Only regular files named exactly as atomic_path names its temp files are touched: never a finished
    target whose name merely contains TEMP_MARKER, a quarantine folder, a `.part` download, a link or
    anything else, and never anything through a symbolic link (a linked `directory` is refused, linked
    folders below it are stepped over). A temp file whose lock a live writer holds, on any host that shares
    the lock, always stays. Of the others, one is swept when its writer is a dead process of this host (at
    any age), or when it has not changed for FOREIGN_TEMP_SECONDS (another host's writer, whose pid we
    cannot check, or the skeleton's older names without a pid).
    """
    directory = Path(directory)
    refuse_linked_folders(directory)
    if directory.is_symlink():
        raise StorageError(f"not sweeping {directory}: it is a symbolic link; the sweep never deletes through one")
    removed: list[Path] = []
    now = time.time()
    for folder, subfolders, files in os.walk(directory):  # never follows links to folders
        subfolders[:] = [name for name in subfolders if name != QUARANTINE_DIR]
        for name in files:
            match = _TEMP_NAME.fullmatch(name)
            if match is None or name.endswith(".part"):  # a partial download resumes: never swept
                continue
            path = Path(folder) / name
            try:
                if _is_abandoned(path, match, now):
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue  # gone meanwhile, or not ours to remove: a sweep never fails a run
    if removed:
        log.info("swept %d temp file(s) of killed writers: %s", len(removed), ", ".join(map(str, removed)))
    return removed


def _is_abandoned(path: Path, name: re.Match, now: float) -> bool:
    """True when the temp file `path` (its `name` matched) is a regular file that no live writer holds."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode) or _lock_is_held(path):
        return False
    if name["writer"] == WRITER_ID:
        return _pid_is_dead(int(name["pid"]))
    return now - info.st_mtime > FOREIGN_TEMP_SECONDS


def _lock_is_held(path: Path) -> bool:
    """True when another open file description holds `path`'s flock (its writer is alive, on any host)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # cannot tell: the pid and the age decide, as they did before writers locked
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # no locks on this filesystem
    finally:
        os.close(fd)  # also releases the shared lock we may have taken
    return False


def _pid_is_dead(pid: int) -> bool:
    """True when `pid` is no process of this host (and pid namespace); this process counts as alive."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists but belongs to another user: alive
    return False


def remove_stale_files(folder: str | os.PathLike, keep: set[Path], suffix: str) -> list[Path]:
    """Remove the plain files of `folder` whose name ends with `suffix` and that are not in `keep`, e.g.
    the figures of an earlier build of a report; return what was removed.

    Never touched: links (nor what they point at), folders, other files, and temp files of writers still
    writing (another build's `.<name>.tmp-…png` ends with `.png` too). A `folder` that is, or lies under, a
    symbolic link inside an artifacts root is refused (refuse_linked_folders), so this never deletes
    outside the root.
    """
    folder = Path(folder)
    refuse_linked_folders(folder)
    if folder.is_symlink() or not folder.is_dir():
        return []
    kept = {Path(path) for path in keep}
    removed = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        path = folder / entry.name
        if not entry.name.endswith(suffix) or path in kept or _TEMP_NAME.fullmatch(entry.name):
            continue
        if entry.is_file(follow_symlinks=False):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
