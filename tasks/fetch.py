"""Get one raw Fashion-MNIST file from an ordered list of sources, and verify it.

A source is a local directory, a `file://` URL of a directory or an `http(s)://` URL of a directory;
the file name is appended to it. HTTP requests time out, are retried with exponential backoff, and a
cut download resumes with a `Range` request (RFC 9110 §14.2). The partial download lives in
`<raw_dir>/<name>.part`, which is never a finished target.

A file is accepted when its `.gz` md5 is the upstream one (fast path) or when the sha256 of its
decompressed IDX payload matches: the Debian package recompressed the files, so only the payload is
the same everywhere. A file that fails is quarantined (never deleted) and the next source is tried. The
record `<name>.json` is written before the `.gz` lands, so the `.gz` marks completion.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from tqdm import tqdm

from tasks.dataset import DEBIAN_DIR, RAW_FILE_NAMES, RAW_FILES
from tasks.errors import DataError, FetchError
from tasks.faults import crash_point
from tasks.storage import storage_error, ensure_dir, quarantine, sha256_file, write_json_atomic

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("file", "http", "https")
CHUNK_BYTES = 1 << 20
USER_AGENT = "fmnist-pipeline (tasks.fetch)"
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib parses the gzip header and trailer (RFC 1952) itself
CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
FIX_HINT = (
    "To fix it, install the Debian package dataset-fashion-mnist (it puts the files in "
    f"{DEBIAN_DIR}), or set `[pipeline] sources` in luigi.cfg to a mirror that has the file."
)
RECORD_KEYS = ("name", "source", "gz_sha256", "gz_bytes", "payload_sha256", "payload_bytes", "verified_by")


class _SourceFailed(Exception):
    """One source could not give a good file; the message says why.

    `transient` failures are retried on the same source; `bad_part` means the partial file holds bad
    bytes from this source and is quarantined as evidence.
    """

    def __init__(self, reason: str, *, transient: bool = False, bad_part: bool = False):
        super().__init__(reason)
        self.transient = transient
        self.bad_part = bad_part


@dataclass(frozen=True)
class _Location:
    """Where one source keeps the file: `path` for local sources, `url` for HTTP."""

    shown: str
    path: Path | None = None
    url: str | None = None


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: urllib alone would also follow one to ftp://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise _SourceFailed(f"redirected ({code}) to {newurl!r}, which is not http(s); refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_RedirectHandler)


def record_path(raw_dir: str | os.PathLike, name: str) -> Path:
    """The JSON record written beside a fetched file."""
    return Path(raw_dir) / f"{name}.json"


def fetch_raw_file(
    name: str,
    sources: Sequence[str],
    raw_dir: Path,
    *,
    expected_payload_sha256: str,
    expected_gz_md5: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.5,
    max_bytes: int = 200 * 2**20,
    max_payload_bytes: int | None = None,
) -> dict:
    """Fetch `name` from the first source that gives a verified copy; return its record.

    The file lands atomically at `raw_dir/<name>` and its record at `raw_dir/<name>.json`.
    `max_payload_bytes` caps the decompressed size (a gzip bomb is refused); by default it is the size
    of the published payload of that name, which no correct file exceeds.
    """
    if name not in RAW_FILES:
        raise FetchError(f"unknown raw file name {name!r}: expected one of {', '.join(RAW_FILE_NAMES)}")
    expected_payload_sha256 = _hex_digest(expected_payload_sha256, 64, "expected_payload_sha256", name)
    if expected_gz_md5 is not None:
        expected_gz_md5 = _hex_digest(expected_gz_md5, 32, "expected_gz_md5", name)
    if timeout <= 0 or retries < 0 or backoff < 0 or max_bytes <= 0:
        raise FetchError(
            f"{name}: bad fetch settings timeout={timeout}, retries={retries}, backoff={backoff}, "
            f"max_bytes={max_bytes}; expected timeout > 0, retries >= 0, backoff >= 0, max_bytes > 0"
        )
    if isinstance(sources, str):  # a bare string would be tried character by character
        sources = [sources]
    if not sources:
        raise FetchError(f"cannot fetch {name}: no sources are configured. {FIX_HINT}")
    payload_cap = RAW_FILES[name].payload_bytes if max_payload_bytes is None else max_payload_bytes

    raw_dir = ensure_dir(raw_dir)
    part = raw_dir / f"{name}.part"
    failures: list[tuple[str, str]] = []
    for source in sources:
        shown = str(source)
        try:
            location = _locate(str(source), name)
            shown = location.shown
            log.info("fetching %s from %s", name, shown)
            if location.url is not None:
                _download_http(location.url, part, name, timeout=timeout, retries=retries, backoff=backoff,
                               max_bytes=max_bytes)
            else:
                _copy_local(location.path, part, name, max_bytes=max_bytes)
            crash_point("fetch.part-written")
            record = _verify(part, expected_payload_sha256, expected_gz_md5, payload_cap)
        except _SourceFailed as failure:
            reason = str(failure)
            if failure.bad_part and part.exists() and part.stat().st_size > 0:
                reason += f"; quarantined to {_quarantine(part, name, shown, reason)}"
            elif failure.bad_part:
                _discard(part)  # nothing of it was kept: there is no evidence to quarantine
            failures.append((shown, reason))
            log.warning("cannot use %s for %s: %s", shown, name, reason)
            continue
        record = {"name": name, "source": shown, **record}
        write_json_atomic(record_path(raw_dir, name), record)
        _promote(part, raw_dir / name)
        _sidecar(part).unlink(missing_ok=True)
        log.info("fetched %s from %s (verified by %s)", name, shown, record["verified_by"])
        return record

    listing = "\n".join(f"  - {shown}: {reason}" for shown, reason in failures)
    raise FetchError(f"cannot fetch {name} from any of {len(failures)} source(s):\n{listing}\n{FIX_HINT}")


def verify_raw_file(path: str | os.PathLike, record: dict) -> None:
    """Check cheaply (size, then `.gz` sha256; no decompression) that `path` is the file `record` describes."""
    path = Path(path)
    missing = [key for key in ("gz_sha256", "gz_bytes") if key not in record]
    if missing:
        raise DataError(f"{path}: its fetch record lacks {', '.join(missing)}; delete {path} and its .json and rerun")
    redo = f"move {path} and {path.name}.json aside and rerun FetchFile({path.name}) to fetch and verify it again"
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


# -- sources ------------------------------------------------------------------------------------


def _locate(source: str, name: str) -> _Location:
    """Where `source` keeps `name`; refuse schemes outside the allowlist."""
    if not source.strip():
        raise _SourceFailed("empty source; remove it from `[pipeline] sources`")
    parsed = urllib.parse.urlsplit(source)
    scheme = parsed.scheme.lower()
    if not scheme:
        path = Path(source) / name
        return _Location(shown=str(path), path=path)
    if scheme not in ALLOWED_SCHEMES:
        raise _SourceFailed(f"unsupported URL scheme {scheme!r} (allowed: {', '.join(ALLOWED_SCHEMES)})")
    url = source.rstrip("/") + "/" + urllib.parse.quote(name)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise _SourceFailed(f"file:// URL names the host {parsed.netloc!r}; only local files are supported")
        directory = Path(urllib.request.url2pathname(parsed.path))
        return _Location(shown=url, path=directory / name)
    if not parsed.hostname:
        raise _SourceFailed("the URL names no host")
    return _Location(shown=url, url=url)


def _copy_local(source: Path, part: Path, name: str, *, max_bytes: int) -> None:
    """Copy (never link: the source may change or vanish) a local file into `part`."""
    try:
        handle = open(source, "rb")
    except FileNotFoundError:
        where = "not found" if source.parent.is_dir() else f"directory {source.parent} does not exist"
        raise _SourceFailed(where) from None
    except OSError as exc:
        raise _SourceFailed(f"cannot read it: {exc.strerror or exc}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise _SourceFailed(f"it has {size} bytes, more than max_bytes={max_bytes}; refused")
        _sidecar(part).unlink(missing_ok=True)  # the partial of an HTTP source is overwritten now
        with _open_part(part, "wb") as out, _progress(name, size, 0) as bar:
            try:
                _pump(handle.read, out, part, already=0, announced=None, max_bytes=max_bytes, bar=bar)
            except OSError as exc:
                raise _SourceFailed(f"cannot read it: {exc.strerror or exc}") from None


def _download_http(url: str, part: Path, name: str, *, timeout: float, retries: int, backoff: float,
                   max_bytes: int) -> None:
    """Download `url` into `part`, retrying transient failures and resuming what a cut left."""
    tries = retries + 1
    for attempt in range(tries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _http_attempt(url, part, name, timeout=timeout, max_bytes=max_bytes)
            return
        except _SourceFailed as failure:
            if not failure.transient:
                raise
            last = failure
            if attempt + 1 < tries:
                log.info("%s: %s; retry %d of %d", url, failure, attempt + 1, retries)
    raise _SourceFailed(f"{last} (gave up after {tries} {'try' if tries == 1 else 'tries'})")


def _http_attempt(url: str, part: Path, name: str, *, timeout: float, max_bytes: int) -> None:
    offset, validator = _resume_point(part, url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            # If the file changed on the server, If-Range makes it send the new file whole (200).
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        with error:
            _http_error(error, part, offset)
        return
    except ValueError as exc:
        raise _SourceFailed(f"malformed URL: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _network_failure(exc, timeout) from None
    with response:
        try:
            _receive(response, url, part, name, offset, max_bytes)
        except (OSError, http.client.HTTPException) as exc:
            raise _network_failure(exc, timeout) from None


def _http_error(error: urllib.error.HTTPError, part: Path, offset: int) -> None:
    """Turn an HTTP error status into a source failure; 404 and other 4xx are not retried."""
    if error.code == 416 and offset:
        total = error.headers.get("Content-Range", "").rpartition("/")[2]
        if total.isdigit() and int(total) == offset:
            return  # the partial file is already whole; verification decides
        _discard(part)
        raise _SourceFailed("the server refused to resume (416); restarting from the beginning", transient=True)
    reason = f"{error.code} {error.reason}".strip()
    transient = error.code >= 500 or error.code in (408, 429)
    raise _SourceFailed(reason, transient=transient)


def _receive(response: http.client.HTTPResponse, url: str, part: Path, name: str, offset: int,
             max_bytes: int) -> None:
    """Write the response body into `part`: append after a 206, start again after a 200."""
    headers = response.headers
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    length = None if chunked else _content_length(headers.get("Content-Length"))
    if response.status == 206 and offset:
        content_range = headers.get("Content-Range", "")
        match = CONTENT_RANGE.match(content_range.strip())
        start, end = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
        total = match.group(3) if match else "*"
        if (start != offset or (length is not None and length != end - start + 1)
                or (total != "*" and int(total) != end + 1)):
            _discard(part)
            raise _SourceFailed(f"bad Content-Range {content_range!r} for a resume at byte {offset}; restarting",
                                transient=True)
        mode = "ab"
    elif response.status == 200:
        if offset:
            log.info("%s ignored the Range request; downloading it again from the start", url)
        offset = 0
        mode = "wb"
    else:
        _discard(part)
        raise _SourceFailed(f"unexpected HTTP status {response.status} {response.reason}")

    if length is not None and offset + length > max_bytes:
        raise _SourceFailed(f"the server announces {offset + length} bytes, more than max_bytes={max_bytes}; "
                            "refused")
    # http.client stops reading at Content-Length and so hides a server that sends more. Read the
    # socket stream itself to EOF (urllib sends `Connection: close`) and refuse any excess.
    read = response.fp.read1 if length is not None and response.fp is not None else response.read
    with _open_part(part, mode) as out, _progress(name, None if length is None else offset + length, offset) as bar:
        if mode == "wb":  # truncated first, so the sidecar never vouches for older bytes
            validator = headers.get("ETag", "")
            if not validator or validator.startswith("W/"):  # a weak ETag may not be used in If-Range
                validator = headers.get("Last-Modified", "")
            _write_sidecar(part, url, validator)
        try:
            received = _pump(read, out, part, already=offset, announced=length, max_bytes=max_bytes, bar=bar)
        except TimeoutError:
            if length is None or out.tell() < offset + length:
                raise
            received = length  # all announced bytes came; only the server's close was late
    if length is not None and received < length:
        raise _SourceFailed(f"connection cut after {offset + received} of {offset + length} bytes", transient=True)


def _pump(read: Callable[[int], bytes], out: BinaryIO, part: Path, *, already: int, announced: int | None,
          max_bytes: int, bar: tqdm) -> int:
    """Copy chunks from `read` to `out` until EOF, refusing more than announced or than `max_bytes`."""
    received = 0
    while True:
        chunk = read(CHUNK_BYTES)
        if not chunk:
            return received
        if announced is not None and received + len(chunk) > announced:
            raise _SourceFailed(f"the server sent more bytes than the {announced} its Content-Length announced; "
                                "refused", bad_part=True)
        if already + received + len(chunk) > max_bytes:
            raise _SourceFailed(f"the body exceeds max_bytes={max_bytes}; refused", bad_part=True)
        try:
            out.write(chunk)
        except OSError as exc:
            raise storage_error(part, exc) from None
        received += len(chunk)
        bar.update(len(chunk))


def _network_failure(exc: BaseException, timeout: float) -> _SourceFailed:
    """A retryable failure with a short reason, instead of a urllib traceback."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return _SourceFailed(f"timed out after {timeout:g} s without data from the server", transient=True)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return _SourceFailed(f"TLS certificate rejected: {reason.verify_message}")
    if isinstance(reason, ConnectionRefusedError):
        return _SourceFailed("connection refused", transient=True)
    if isinstance(reason, (http.client.IncompleteRead, http.client.RemoteDisconnected)):
        return _SourceFailed("the server closed the connection early", transient=True)
    if isinstance(reason, OSError) and reason.strerror:
        return _SourceFailed(reason.strerror[:1].lower() + reason.strerror[1:], transient=True)
    return _SourceFailed(str(reason) or type(reason).__name__, transient=True)


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise _SourceFailed(f"malformed Content-Length {value!r}")
    return int(value)


# -- the partial download and its sidecar ------------------------------------------------------


def _sidecar(part: Path) -> Path:
    """Which URL (and version of it) `part` came from; a partial is only resumed from the same one."""
    return part.with_name(part.name + ".json")


def _write_sidecar(part: Path, url: str, validator: str) -> None:
    write_json_atomic(_sidecar(part), {"url": url, "validator": validator})


def _resume_point(part: Path, url: str) -> tuple[int, str]:
    """(bytes already in `part` from this very URL, its validator); 0 when there is nothing to resume."""
    try:
        origin = json.loads(_sidecar(part).read_text(encoding="utf-8"))
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0, ""
    if not isinstance(origin, dict) or origin.get("url") != url:
        return 0, ""  # bytes from another mirror may be a different gzip of the same payload
    return size, str(origin.get("validator", ""))


def _discard(part: Path) -> None:
    """Drop a partial download that cannot be resumed (not bad data: just unusable)."""
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


@contextlib.contextmanager
def _open_part(part: Path, mode: str) -> Iterator[BinaryIO]:
    """`part` open for writing; a full or read-only disk, at open or at the final flush, is a StorageError.

    OSErrors from the body pass through unchanged: the HTTP code tells network failures apart by them.
    """
    try:
        handle = open(part, mode)
    except OSError as exc:
        raise storage_error(part, exc) from None
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


def _progress(name: str, total: int | None, initial: int) -> tqdm:
    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)


def _quarantine(part: Path, name: str, shown: str, reason: str) -> Path:
    _sidecar(part).unlink(missing_ok=True)
    try:
        return quarantine(part, f"{name} from {shown}: {reason}")
    except OSError as exc:
        raise storage_error(part, exc) from None


def _promote(part: Path, final: Path) -> None:
    """Move the verified file onto its final name; fsync first so that a crash cannot leave it empty."""
    try:
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(part, final)
    except OSError as exc:
        raise storage_error(final, exc) from None


# -- verification -------------------------------------------------------------------------------


def _verify(part: Path, payload_sha256: str, gz_md5: str | None, payload_cap: int) -> dict:
    """The record fields of a verified `part`; raise _SourceFailed(bad_part=True) otherwise."""
    gz_sha256, gz_md5_found, gz_bytes = _gz_digests(part)
    if gz_md5 is not None and gz_md5_found == gz_md5:
        return {"gz_sha256": gz_sha256, "gz_bytes": gz_bytes, "payload_sha256": payload_sha256,
                "payload_bytes": _gzip_isize(part), "verified_by": "gz-md5"}
    payload_sha256_found, payload_bytes = _payload_digest(part, payload_cap)
    if payload_sha256_found != payload_sha256:
        raise _SourceFailed(f"payload sha256 mismatch: expected {payload_sha256}, found {payload_sha256_found}",
                            bad_part=True)
    return {"gz_sha256": gz_sha256, "gz_bytes": gz_bytes, "payload_sha256": payload_sha256,
            "payload_bytes": payload_bytes, "verified_by": "payload-sha256"}


def _gz_digests(path: Path) -> tuple[str, str, int]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise storage_error(path, exc) from None
    return sha256.hexdigest(), md5.hexdigest(), size


def _gzip_isize(path: Path) -> int:
    """The uncompressed size from the gzip trailer (RFC 1952 ISIZE; the published files are one member)."""
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        return int.from_bytes(handle.read(4), "little")


def _payload_digest(path: Path, cap: int) -> tuple[str, int]:
    """sha256 and size of the decompressed payload, streamed in bounded chunks and capped at `cap` bytes."""
    digest, size = hashlib.sha256(), 0
    member = zlib.decompressobj(GZIP_WBITS)
    try:
        with open(path, "rb") as handle:
            for data in iter(lambda: handle.read(CHUNK_BYTES), b""):
                while True:
                    if member.eof and data:  # concatenated gzip members are one stream (RFC 1952 §2.2)
                        member = zlib.decompressobj(GZIP_WBITS)
                    produced = member.decompress(data, CHUNK_BYTES)
                    size += len(produced)
                    if size > cap:
                        raise _SourceFailed(f"the decompressed payload exceeds {cap} bytes (a gzip bomb or the "
                                            "wrong file); refused", bad_part=True)
                    digest.update(produced)
                    data = member.unused_data if member.eof else member.unconsumed_tail
                    # With all input consumed, zlib may still hold output: loop until it yields nothing.
                    if not data and (member.eof or not produced):
                        break
    except zlib.error as exc:
        raise _SourceFailed(f"corrupt gzip stream ({exc})", bad_part=True) from None
    except OSError as exc:
        raise storage_error(path, exc) from None
    if not member.eof:
        raise _SourceFailed("truncated gzip stream (it ends before the gzip trailer)", bad_part=True)
    return digest.hexdigest(), size


def _hex_digest(value: str, length: int, what: str, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(rf"[0-9a-fA-F]{{{length}}}", value):
        raise FetchError(f"{name}: {what} must be {length} hex digits, found {value!r}; fix the checksums setting")
    return value.lower()
