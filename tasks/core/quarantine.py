"""Quarantine: a bad file is moved aside into `<its folder>/quarantine/`, never deleted, never followed
through a link and never read when it is not a regular file, and a `.reason.txt` beside it says why and
what it was (size and sha256)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import time
from pathlib import Path

from tasks.core.errors import StorageError
from tasks.core.storage import QUARANTINE_DIR, refuse_linked_folders, storage_error


def quarantine(path: str | os.PathLike, reason: str, *, keep_bytes: int | None = None) -> Path:
    """Move a bad file into `<its dir>/quarantine/`, never deleting it, and record why beside it.

    The moved file is made private (never more readable than it was, at most 0600: it may be a copy
    of something only its owner could read), and its size and sha256 go into the `.reason.txt`. With
    `keep_bytes`, a larger file keeps only its first `keep_bytes` bytes, so that repeated bad downloads
    cannot fill the disk. A symbolic link is moved as the link itself, never followed. Returns the new
    location so that the caller can name it in its error message.
    """
    source = Path(path)
    refuse_linked_folders(source, folder=False)
    target_dir = _quarantine_dir(source.parent)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = target_dir / f"{source.name}.{stamp}"
    counter = 1
    while os.path.lexists(target) or os.path.lexists(_reason_path(target)):
        target = target_dir / f"{source.name}.{stamp}.{counter}"
        counter += 1
    shutil.move(str(source), str(target))
    evidence = _seal_quarantined(target, keep_bytes)
    reason_path = _reason_path(target)
    try:  # a new file only: never through a link or over a file someone put there since the name was chosen
        fd = os.open(reason_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise storage_error(reason_path, exc) from None
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(f"{reason}\n{evidence}\n")
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
