"""Per-target file locks: one writer per target, across processes and machines that share an artifacts root.

Luigi's own lock only stops the *same* command line from running twice on one machine. Two commands that
differ in spelling (`PrepareData` and `PrepareData --split-seed 0`), a cron NightlyReport overlapping a
manual FullReport, or workers on two hosts may all decide to build one target at once. So a task that
writes a target takes that target's lock, then checks again whether the target is complete (another
process may have finished it while this one waited), and only then does the work:

    with target_lock(path):
        if not Path(path).exists():
            build(path)

The lock is flock(2) on a hidden file beside the target, `.<target name>.lock`, opened without following
links (a link or other odd file planted there is moved aside). The file stays after release: removing it
would let two processes lock two different files of the same name. On NFS, Linux maps flock onto
byte-range locks that the server arbitrates. The holder writes its pid, host and start time into the file,
so a waiter that gives up says who holds it. Locks are not re-entrant: do not nest two locks on one target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tasks.core.errors import PipelineError, StorageError
from tasks.core.quarantine import quarantine
from tasks.core.storage import ensure_dir, public_file_mode, storage_error

log = logging.getLogger(__name__)

# Far above what a data task takes (a download is bounded by fetch_deadline per source); a training run
# may take longer, so TrainRun passes its own.
DEFAULT_LOCK_TIMEOUT = 3600.0
LOCK_SUFFIX = ".lock"
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 1.0


class LockTimeout(PipelineError):
    """Another process held a target's lock for longer than we were willing to wait."""


def lock_path(target: str | os.PathLike) -> Path:
    """The hidden lock file beside `target`."""
    target = Path(target)
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def target_lock(target: str | os.PathLike, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold `target`'s lock for the block; wait for it at most `timeout` seconds, then raise LockTimeout."""
    path = lock_path(target)
    ensure_dir(path.parent)
    fd = _open_lock_file(path)
    try:
        _acquire(fd, path, Path(target), timeout)
        with contextlib.suppress(OSError):  # a lock file we may only read still locks; it just names no one
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_line().encode(), 0)
        yield
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _open_lock_file(path: Path) -> int:
    """The lock file open (created if needed), never through a link; an odd file in its place is moved aside."""
    with contextlib.suppress(FileNotFoundError):
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            try:
                moved = quarantine(path, f"{path} was not a plain lock file (a link or a special file); moved aside")
            except OSError as exc:
                raise storage_error(path, exc) from None
            log.warning("%s was not a plain lock file; moved it aside to %s", path, moved)
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, public_file_mode())
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | flags)  # another user's lock file: flock needs no write access
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"cannot lock {path}: it became a symbolic link; remove it and rerun") from None
        raise storage_error(path, exc) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise StorageError(f"cannot lock {path}: it is not a plain file; remove it and rerun")
    return fd


def _acquire(fd: int, path: Path, target: Path, timeout: float) -> None:
    started = time.monotonic()
    pause = _FIRST_PAUSE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as exc:
            raise StorageError(
                f"cannot lock {path}: {exc.strerror or exc}; the filesystem that holds the artifacts root must "
                "support file locks (on NFS, run the lock daemon), or point `[pipeline] artifacts_root` elsewhere"
            ) from None
        waited = time.monotonic() - started
        if waited >= timeout:
            raise LockTimeout(
                f"{target}: another process is building it and has held its lock {path} for more than "
                f"{timeout:g} s ({_holder(fd)}); wait for it to finish and rerun, or stop it if it hangs"
            )
        if pause == _FIRST_PAUSE:
            # On stderr, not through logging: a worker's console shows luigi's own logger only, and a
            # wait for another host's run can be long.
            print(f"waiting for {target}: another process is building it ({_holder(fd)})", file=sys.stderr, flush=True)
        time.sleep(min(pause, timeout - waited))
        pause = min(pause * 2, _LONGEST_PAUSE)


def _holder_line() -> str:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"pid {os.getpid()} on host {socket.gethostname()} since {since}\n"


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return f"held by {text}" if text else "its holder left no name"
