"""The partial download `<raw_dir>/<name>.part` and its sidecar, handled without ever following a link.

The `.part` is opened with O_NOFOLLOW and must be a regular file with one link: one that is not (a
symbolic link planted there, a FIFO, a hard link to some other file) is moved aside (quarantined),
never written through. It stays private (0600) until verified; a bad one is quarantined, cut to its
first MiB; a good one is made readable like any artifact and renamed onto its final name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tasks.core.errors import StorageError
from tasks.core.quarantine import quarantine
from tasks.core.storage import public_file_mode, storage_error, write_json_atomic

log = logging.getLogger(__name__)

# What quarantine keeps of a bad download: its first MiB (plus its size and sha256 in the reason file),
# so that a mirror serving 200 MiB of junk every night cannot fill the disk.
QUARANTINE_KEEP_BYTES = 1 << 20
_NO_FOLLOW = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is, in words."""
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISDIR: "a folder", stat.S_ISLNK: "a symbolic link"}
    kinds.update({stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"})
    return next((words for test, words in kinds.items() if test(mode)), "not a regular file")


def sidecar_path(part: Path) -> Path:
    """Which URL (and version of it) `part` came from; a partial is only resumed from the same one."""
    return part.with_name(part.name + ".json")


def write_sidecar(part: Path, url: str, validator: str) -> None:
    write_json_atomic(sidecar_path(part), {"url": url, "validator": validator})


def resume_point(part: Path, url: str) -> tuple[int, str]:
    """(bytes already in `part` from this very URL, its validator); 0 when there is nothing to resume."""
    try:
        origin = json.loads(sidecar_path(part).read_text(encoding="utf-8"))
        info = part.lstat()
    except (OSError, ValueError):
        return 0, ""
    if not isinstance(origin, dict) or origin.get("url") != url or _unsafe(info.st_mode, info.st_nlink):
        return 0, ""  # bytes from another mirror may be a different gzip of the same payload
    return info.st_size, str(origin.get("validator", ""))


def discard_part(part: Path) -> None:
    """Drop a partial download that cannot be resumed (not bad data: just unusable)."""
    part.unlink(missing_ok=True)
    sidecar_path(part).unlink(missing_ok=True)


def _unsafe(mode: int, links: int) -> str | None:
    """Why a `.part` with this mode and link count must not be written (None: it is safe)."""
    kind = file_kind(mode)
    if kind is not None:
        return kind
    return f"a file with {links} hard links" if links != 1 else None


def set_aside_unsafe_part(part: Path) -> Path | None:
    """Quarantine a `.part` that is not a plain file of ours (a symbolic link, a FIFO, a hard link)."""
    try:
        info = part.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(part, exc) from None
    why = _unsafe(info.st_mode, info.st_nlink)
    if why is None:
        return None
    sidecar_path(part).unlink(missing_ok=True)
    try:
        moved = quarantine(part, f"{part} was {why}: moved aside so that the download never writes through it")
    except OSError as exc:
        raise storage_error(part, exc) from None
    log.warning("%s was %s; moved it aside to %s", part, why, moved)
    return moved


@contextlib.contextmanager
def open_part(part: Path, mode: str) -> Iterator[BinaryIO]:
    """`part` open for writing ("wb" afresh, "ab" to resume), private, never through a link.

    A full or read-only disk, at open or at the final flush, is a StorageError. OSErrors from the body
    pass through unchanged: the HTTP code tells network failures apart by them.
    """
    try:
        if mode == "wb":
            part.unlink(missing_ok=True)  # a new inode: nothing that was linked here is truncated
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o600)
        else:
            fd = os.open(part, os.O_WRONLY | os.O_APPEND | _NO_FOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StorageError(f"cannot write {part}: it became a symbolic link; remove it and rerun") from None
        raise storage_error(part, exc) from None
    info = os.fstat(fd)
    why = _unsafe(info.st_mode, info.st_nlink)
    if why is not None:
        os.close(fd)
        raise StorageError(f"cannot write {part}: it is {why}, not a plain partial download; remove it and rerun")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    handle = open(fd, "wb" if mode == "wb" else "ab")
    try:
        yield handle
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    try:
        handle.close()  # flushes the last buffered bytes, so a full disk may first show here
    except OSError as exc:
        raise storage_error(part, exc) from None


def read_part(part: Path) -> BinaryIO:
    """`part` open for reading, never through a symbolic link."""
    try:
        return open(os.open(part, os.O_RDONLY | _NO_FOLLOW), "rb")
    except OSError as exc:
        raise storage_error(part, exc) from None


def quarantine_part(part: Path, name: str, shown: str, reason: str) -> Path:
    sidecar_path(part).unlink(missing_ok=True)
    try:
        return quarantine(part, f"{name} from {shown}: {reason}", keep_bytes=QUARANTINE_KEEP_BYTES)
    except OSError as exc:
        raise storage_error(part, exc) from None


def promote_part(part: Path, final: Path) -> None:
    """Move the verified file onto its final name, readable as any artifact; fsync first so that a
    crash cannot leave it empty."""
    try:
        fd = os.open(part, os.O_RDONLY | _NO_FOLLOW)
        try:
            os.fchmod(fd, public_file_mode())  # it is the published data: no longer private
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, final)
    except OSError as exc:
        raise storage_error(final, exc) from None
