"""Getting the bytes of one raw file from one source into `<raw_dir>/<name>.part`.

A local directory or `file://` source is copied; an `http(s)://` source is downloaded by
`tasks.data.download`; the `.part` itself is `tasks.data.partfile`. `tasks.data.fetch` decides which
source to try and verifies what lands here.

A source must be a regular file: a FIFO, a device or a folder is refused without being opened for a
blocking read. Every transfer has a deadline, after which that source fails and the next is tried.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from tasks.core.storage import storage_error
from tasks.data.partfile import file_kind, open_part, sidecar_path

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("file", "http", "https")
CHUNK_BYTES = 1 << 20


class SourceFailed(Exception):
    """One source could not give a good file; the message says why.

    `transient` failures are retried on the same source; `bad_part` means the partial file holds bad
    bytes from this source and is quarantined as evidence.
    """

    def __init__(self, reason: str, *, transient: bool = False, bad_part: bool = False):
        super().__init__(reason)
        self.transient = transient
        self.bad_part = bad_part


@dataclass(frozen=True)
class Location:
    """Where one source keeps the file: `path` for local sources, `url` for HTTP."""

    shown: str
    path: Path | None = None
    url: str | None = None


class Deadline:
    """The overall time one source gets (`[pipeline] fetch_deadline`), retries included."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def left(self) -> float:
        return self.ends - time.monotonic()

    def failure(self) -> SourceFailed:
        return SourceFailed(
            f"not finished within the deadline of {self.seconds:g} s (`[pipeline] fetch_deadline`); "
            "the source is too slow, or trickles on purpose"
        )

    def check(self) -> None:
        if self.left() <= 0:
            raise self.failure()


# -- sources ------------------------------------------------------------------------------------


def locate(source: str, name: str) -> Location:
    """Where `source` keeps `name`; refuse schemes outside the allowlist."""
    if not source.strip():
        raise SourceFailed("empty source; remove it from `[pipeline] sources`")
    parsed = urllib.parse.urlsplit(source)
    scheme = parsed.scheme.lower()
    if not scheme:
        path = Path(source) / name
        return Location(shown=str(path), path=path)
    if scheme not in ALLOWED_SCHEMES:
        raise SourceFailed(f"unsupported URL scheme {scheme!r} (allowed: {', '.join(ALLOWED_SCHEMES)})")
    url = source.rstrip("/") + "/" + urllib.parse.quote(name)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise SourceFailed(f"file:// URL names the host {parsed.netloc!r}; only local files are supported")
        directory = Path(urllib.request.url2pathname(parsed.path))
        return Location(shown=url, path=directory / name)
    if not parsed.hostname:
        raise SourceFailed("the URL names no host")
    return Location(shown=url, url=url)


def copy_local(source: Path, part: Path, name: str, *, max_bytes: int, deadline: Deadline) -> None:
    """Copy (never link: the source may change or vanish) a local regular file into `part`."""
    handle = _open_source(source)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise SourceFailed(f"it has {size} bytes, more than max_bytes={max_bytes}; refused")
        sidecar_path(part).unlink(missing_ok=True)  # the partial of an HTTP source is overwritten now
        with open_part(part, "wb") as out, progress_bar(name, size, 0) as bar:
            try:
                pump(handle.read, out, part, already=0, announced=None, max_bytes=max_bytes, bar=bar, deadline=deadline)
            except OSError as exc:
                raise SourceFailed(f"cannot read it: {exc.strerror or exc}") from None


def _open_source(source: Path) -> BinaryIO:
    """`source` open for reading, if it is a regular file: a FIFO would block and a device has side effects."""
    fd = None
    try:
        kind = file_kind(os.stat(source).st_mode)  # a link to a file is fine to read: it is only read
        if kind is None:
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            kind = file_kind(os.fstat(fd).st_mode)  # it may have been swapped since the stat
    except FileNotFoundError:
        where = "not found" if source.parent.is_dir() else f"directory {source.parent} does not exist"
        raise SourceFailed(where) from None
    except OSError as exc:
        raise SourceFailed(f"cannot read it: {exc.strerror or exc}") from None
    if kind is not None:
        if fd is not None:
            os.close(fd)
        raise SourceFailed(f"it is {kind}, not a regular file; refused without reading it")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return open(fd, "rb")


def pump(
    read: Callable[[int], bytes],
    out: BinaryIO,
    part: Path,
    *,
    already: int,
    announced: int | None,
    max_bytes: int,
    bar: tqdm,
    deadline: Deadline,
) -> int:
    """Copy chunks from `read` to `out` until EOF, refusing more than announced or than `max_bytes`."""
    received = 0
    while True:
        chunk = read(CHUNK_BYTES)
        deadline.check()  # a source that trickles a byte at a time never trips a socket timeout
        if not chunk:
            return received
        if announced is not None and received + len(chunk) > announced:
            raise SourceFailed(
                f"the server sent more bytes than the {announced} its Content-Length announced; refused", bad_part=True
            )
        if already + received + len(chunk) > max_bytes:
            raise SourceFailed(f"the body exceeds max_bytes={max_bytes}; refused", bad_part=True)
        try:
            out.write(chunk)
        except OSError as exc:
            raise storage_error(part, exc) from None
        received += len(chunk)
        bar.update(len(chunk))


def progress_bar(name: str, total: int | None, initial: int) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )
