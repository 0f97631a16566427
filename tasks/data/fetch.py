"""Get one raw Fashion-MNIST file from an ordered list of sources, and verify it.

A source is a local directory, a `file://` URL of a directory or an `http(s)://` URL of a directory;
the file name is appended to it. HTTP requests time out, are retried with exponential backoff, and a
cut download resumes with a `Range` request (RFC 9110 §14.2); each source has an overall deadline. The
partial download lives in `<raw_dir>/<name>.part`, which is never a finished target and never written
through a link (`tasks.data.transfer`, `tasks.data.download`, `tasks.data.partfile`).

A file is accepted when its `.gz` md5 is the upstream one (fast path) or when the sha256 of its
decompressed IDX payload matches: the Debian package recompressed the files, so only the payload is
the same everywhere. A file that fails is quarantined (never deleted; kept private and cut to its first
MiB, with its size and sha256 in the reason file) and the next source is tried. The
record `<name>.json` is written before the `.gz` lands, so the `.gz` marks completion.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import DataError, FetchError
from tasks.core.faults import crash_point
from tasks.core.layout import raw_record_path, record_beside
from tasks.core.storage import ensure_dir, sha256_file, storage_error, write_json_atomic
from tasks.data.dataset import DEBIAN_DIR, RAW_FILE_NAMES, RAW_FILES
from tasks.data.download import download_http
from tasks.data.gunzip import TRUNCATED, GunzipStream, GzipFormatError
from tasks.data.partfile import (
    discard_part,
    promote_part,
    quarantine_part,
    read_part,
    set_aside_unsafe_part,
    sidecar_path,
)
from tasks.data.transfer import CHUNK_BYTES, Deadline, Location, SourceFailed, copy_local, locate

log = logging.getLogger(__name__)

FIX_HINT = (
    "To fix it, install the Debian package dataset-fashion-mnist (it puts the files in "
    f"{DEBIAN_DIR}), or set `[pipeline] sources` in luigi.cfg to a mirror that has the file."
)
RECORD_KEYS = ("name", "source", "gz_sha256", "gz_bytes", "payload_sha256", "payload_bytes", "verified_by")


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one fetch may take: per HTTP request (`timeout`), retries with `backoff`, per
    source in all (`deadline`), the bytes of a download (`max_bytes`) and of its decompressed payload
    (`max_payload_bytes`; None: the size of the published payload of that name, which no correct file exceeds)."""

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    deadline: float = 600.0
    max_bytes: int = 200 * 2**20
    max_payload_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0 or self.deadline <= 0 or self.max_bytes <= 0:
            raise FetchError(
                f"bad fetch settings timeout={self.timeout}, retries={self.retries}, backoff={self.backoff}, "
                f"deadline={self.deadline}, max_bytes={self.max_bytes}; expected timeout > 0, retries >= 0, "
                "backoff >= 0, deadline > 0, max_bytes > 0 (`[pipeline] fetch_timeout`, `fetch_retries`, "
                "`fetch_deadline`)"
            )

    def payload_cap(self, name: str) -> int:
        return RAW_FILES[name].payload_bytes if self.max_payload_bytes is None else self.max_payload_bytes


def fetch_raw_file(
    name: str,
    sources: Sequence[str],
    raw_dir: Path,
    *,
    expected_payload_sha256: str,
    expected_gz_md5: str | None = None,
    limits: FetchLimits = FetchLimits(),
) -> dict:
    """Fetch `name` from the first source that gives a verified copy; return its record.

    The file lands atomically at `raw_dir/<name>` and its record at `raw_dir/<name>.json`. Each source
    gets `limits.deadline` seconds in all (retries included) before the next one is tried.
    """
    if name not in RAW_FILES:
        raise FetchError(f"unknown raw file name {name!r}: expected one of {', '.join(RAW_FILE_NAMES)}")
    expected = (
        _hex_digest(expected_payload_sha256, 64, "expected_payload_sha256", name),
        None if expected_gz_md5 is None else _hex_digest(expected_gz_md5, 32, "expected_gz_md5", name),
    )
    if isinstance(sources, str):  # a bare string would be tried character by character
        sources = [sources]
    if not sources:
        raise FetchError(f"cannot fetch {name}: no sources are configured. {FIX_HINT}")
    raw_dir = ensure_dir(raw_dir)
    part = raw_dir / f"{name}.part"
    set_aside_unsafe_part(part)
    failures: list[tuple[str, str]] = []
    for source in sources:
        shown = str(source)
        try:
            location = locate(str(source), name)
            shown = location.shown
            record = _fetch_from(location, name, part, expected, limits)
        except SourceFailed as failure:
            failures.append((shown, _set_aside(failure, part, name, shown)))
            log.warning("cannot use %s for %s: %s", shown, name, failures[-1][1])
            continue
        record = {"name": name, "source": shown, **record}
        write_json_atomic(raw_record_path(raw_dir, name), record)
        promote_part(part, raw_dir / name)
        sidecar_path(part).unlink(missing_ok=True)
        log.info("fetched %s from %s (verified by %s)", name, shown, record["verified_by"])
        return record
    listing = "\n".join(f"  - {shown}: {reason}" for shown, reason in failures)
    raise FetchError(f"cannot fetch {name} from any of {len(failures)} source(s):\n{listing}\n{FIX_HINT}")


def _fetch_from(
    location: Location, name: str, part: Path, expected: tuple[str, str | None], limits: FetchLimits
) -> dict:
    """The verified record's fields, once `part` holds a verified copy from `location`."""
    log.info("fetching %s from %s", name, location.shown)
    deadline = Deadline(limits.deadline)
    if location.url is not None:
        download_http(
            location.url,
            part,
            name,
            timeout=limits.timeout,
            retries=limits.retries,
            backoff=limits.backoff,
            max_bytes=limits.max_bytes,
            deadline=deadline,
        )
    else:
        copy_local(location.path, part, name, max_bytes=limits.max_bytes, deadline=deadline)
    crash_point("fetch.part-written")
    return _verify(part, *expected, limits.payload_cap(name))


def _set_aside(failure: SourceFailed, part: Path, name: str, shown: str) -> str:
    """Why a source failed; a bad part file is quarantined (with evidence) or discarded (without)."""
    reason = str(failure)
    if failure.bad_part and part.is_file() and part.stat().st_size > 0:
        reason += f"; quarantined to {quarantine_part(part, name, shown, reason)}"
    elif failure.bad_part:
        discard_part(part)  # nothing of it was kept: there is no evidence to quarantine
    return reason


def verify_raw_file(path: str | os.PathLike, record: dict) -> None:
    """Check cheaply (size, then `.gz` sha256; no decompression) that `path` is the file `record` describes."""
    path = Path(path)
    missing = [key for key in ("gz_sha256", "gz_bytes") if key not in record]
    if missing:
        raise DataError(
            f"{path}: its fetch record lacks {', '.join(missing)}; delete {path} and {record_beside(path)} and rerun"
        )
    redo = f"move {path} and {record_beside(path)} aside and rerun FetchFile({path.name}) to fetch and verify it again"
    if record.get("name", path.name) != path.name:
        raise DataError(f"{path}: the record describes {record['name']!r}, not this file; {redo}")
    try:
        size = path.stat().st_size
        gz_sha256 = sha256_file(path) if size == record["gz_bytes"] else None
    except FileNotFoundError:
        raise DataError(f"{path}: missing, though a fetch record exists; rerun FetchFile({path.name})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc}); fix its permissions and rerun") from None
    source = record.get("source", "its source")
    if gz_sha256 is None:
        raise DataError(
            f"{path}: changed since it was fetched from {source}: expected {record['gz_bytes']} bytes, "
            f"found {size}; {redo}"
        )
    if gz_sha256 != record["gz_sha256"]:
        raise DataError(
            f"{path}: changed since it was fetched from {source}: expected gz sha256 {record['gz_sha256']}, "
            f"found {gz_sha256}; {redo}"
        )


# -- verification -------------------------------------------------------------------------------


def _verify(part: Path, payload_sha256: str, gz_md5: str | None, payload_cap: int) -> dict:
    """The record fields of a verified `part`; raise SourceFailed(bad_part=True) otherwise."""
    gz_sha256, gz_md5_found, gz_bytes = _gz_digests(part)
    if gz_md5 is not None and gz_md5_found == gz_md5:
        return {
            "gz_sha256": gz_sha256,
            "gz_bytes": gz_bytes,
            "payload_sha256": payload_sha256,
            "payload_bytes": _gzip_isize(part),
            "verified_by": "gz-md5",
        }
    payload_sha256_found, payload_bytes = _payload_digest(part, payload_cap)
    if payload_sha256_found != payload_sha256:
        raise SourceFailed(
            f"payload sha256 mismatch: expected {payload_sha256}, found {payload_sha256_found}", bad_part=True
        )
    return {
        "gz_sha256": gz_sha256,
        "gz_bytes": gz_bytes,
        "payload_sha256": payload_sha256,
        "payload_bytes": payload_bytes,
        "verified_by": "payload-sha256",
    }


def _gz_digests(path: Path) -> tuple[str, str, int]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with read_part(path) as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise storage_error(path, exc) from None
    return sha256.hexdigest(), md5.hexdigest(), size


def _gzip_isize(path: Path) -> int:
    """The uncompressed size from the gzip trailer (RFC 1952 ISIZE; the published files are one member)."""
    with read_part(path) as handle:
        handle.seek(-4, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little")


def _payload_digest(path: Path, cap: int) -> tuple[str, int]:
    """sha256 and size of the decompressed payload, inflated a bounded chunk at a time and capped at `cap`."""
    digest, size = hashlib.sha256(), 0
    try:
        with read_part(path) as handle:
            stream = GunzipStream(handle)
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                if size > cap:
                    raise SourceFailed(
                        f"the decompressed payload exceeds {cap} bytes (a gzip bomb or the wrong file); refused",
                        bad_part=True,
                    )
                digest.update(chunk)
    except GzipFormatError as exc:
        what = "truncated" if exc.problem == TRUNCATED else "corrupt"
        raise SourceFailed(f"{what} gzip stream ({exc})", bad_part=True) from None
    except OSError as exc:
        raise storage_error(path, exc) from None
    return digest.hexdigest(), size


def _hex_digest(value: str, length: int, what: str, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9a-fA-F]{{{length}}}", value):
        raise FetchError(f"{name}: {what} must be {length} hex digits, found {value!r}; fix the checksums setting")
    return value.lower()
