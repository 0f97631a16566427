"""Getting the bytes of one raw file from one source into `<raw_dir>/<name>.part`.

A local directory or `file://` source is copied; an `http(s)://` source is downloaded with a timeout,
retries with exponential backoff, and resume of a cut download by a `Range` request (RFC 9110 §14.2),
starting afresh when the server ignores Range. The `.part` file and its small sidecar (the URL and its
validator) survive a failed or killed run, so the next run resumes from the same URL only.
`tasks.data.fetch` decides which source to try and verifies what lands here.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from tasks.core.storage import quarantine, storage_error, write_json_atomic

log = logging.getLogger(__name__)

ALLOWED_SCHEMES = ("file", "http", "https")
CHUNK_BYTES = 1 << 20
USER_AGENT = "fmnist-pipeline (tasks.data.transfer)"
CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


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


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: urllib alone would also follow one to ftp://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise SourceFailed(f"redirected ({code}) to {newurl!r}, which is not http(s); refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_RedirectHandler)


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


def copy_local(source: Path, part: Path, name: str, *, max_bytes: int) -> None:
    """Copy (never link: the source may change or vanish) a local file into `part`."""
    try:
        handle = open(source, "rb")
    except FileNotFoundError:
        where = "not found" if source.parent.is_dir() else f"directory {source.parent} does not exist"
        raise SourceFailed(where) from None
    except OSError as exc:
        raise SourceFailed(f"cannot read it: {exc.strerror or exc}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise SourceFailed(f"it has {size} bytes, more than max_bytes={max_bytes}; refused")
        sidecar_path(part).unlink(missing_ok=True)  # the partial of an HTTP source is overwritten now
        with _open_part(part, "wb") as out, _progress(name, size, 0) as bar:
            try:
                _pump(handle.read, out, part, already=0, announced=None, max_bytes=max_bytes, bar=bar)
            except OSError as exc:
                raise SourceFailed(f"cannot read it: {exc.strerror or exc}") from None


def download_http(
    url: str, part: Path, name: str, *, timeout: float, retries: int, backoff: float, max_bytes: int
) -> None:
    """Download `url` into `part`, retrying transient failures and resuming what a cut left."""
    tries = retries + 1
    for attempt in range(tries):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _http_attempt(url, part, name, timeout=timeout, max_bytes=max_bytes)
            return
        except SourceFailed as failure:
            if not failure.transient:
                raise
            last = failure
            if attempt + 1 < tries:
                log.info("%s: %s; retry %d of %d", url, failure, attempt + 1, retries)
    raise SourceFailed(f"{last} (gave up after {tries} {'try' if tries == 1 else 'tries'})")


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
        raise SourceFailed(f"malformed URL: {exc}") from None
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
        discard_part(part)
        raise SourceFailed("the server refused to resume (416); restarting from the beginning", transient=True)
    reason = f"{error.code} {error.reason}".strip()
    transient = error.code >= 500 or error.code in (408, 429)
    raise SourceFailed(reason, transient=transient)


def _receive(response: http.client.HTTPResponse, url: str, part: Path, name: str, offset: int, max_bytes: int) -> None:
    """Write the response body into `part`: append after a 206, start again after a 200."""
    headers = response.headers
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    length = None if chunked else _content_length(headers.get("Content-Length"))
    if response.status == 206 and offset:
        content_range = headers.get("Content-Range", "")
        match = CONTENT_RANGE.match(content_range.strip())
        start, end = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
        total = match.group(3) if match else "*"
        if (
            start != offset
            or (length is not None and length != end - start + 1)
            or (total != "*" and int(total) != end + 1)
        ):
            discard_part(part)
            raise SourceFailed(
                f"bad Content-Range {content_range!r} for a resume at byte {offset}; restarting", transient=True
            )
        mode = "ab"
    elif response.status == 200:
        if offset:
            log.info("%s ignored the Range request; downloading it again from the start", url)
        offset = 0
        mode = "wb"
    else:
        discard_part(part)
        raise SourceFailed(f"unexpected HTTP status {response.status} {response.reason}")

    if length is not None and offset + length > max_bytes:
        raise SourceFailed(f"the server announces {offset + length} bytes, more than max_bytes={max_bytes}; refused")
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
        raise SourceFailed(f"connection cut after {offset + received} of {offset + length} bytes", transient=True)


def _pump(
    read: Callable[[int], bytes],
    out: BinaryIO,
    part: Path,
    *,
    already: int,
    announced: int | None,
    max_bytes: int,
    bar: tqdm,
) -> int:
    """Copy chunks from `read` to `out` until EOF, refusing more than announced or than `max_bytes`."""
    received = 0
    while True:
        chunk = read(CHUNK_BYTES)
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


def _network_failure(exc: BaseException, timeout: float) -> SourceFailed:
    """A retryable failure with a short reason, instead of a urllib traceback."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return SourceFailed(f"timed out after {timeout:g} s without data from the server", transient=True)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return SourceFailed(f"TLS certificate rejected: {reason.verify_message}")
    if isinstance(reason, ConnectionRefusedError):
        return SourceFailed("connection refused", transient=True)
    if isinstance(reason, (http.client.IncompleteRead, http.client.RemoteDisconnected)):
        return SourceFailed("the server closed the connection early", transient=True)
    if isinstance(reason, OSError) and reason.strerror:
        return SourceFailed(reason.strerror[:1].lower() + reason.strerror[1:], transient=True)
    return SourceFailed(str(reason) or type(reason).__name__, transient=True)


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise SourceFailed(f"malformed Content-Length {value!r}")
    return int(value)


# -- the partial download and its sidecar ------------------------------------------------------


def sidecar_path(part: Path) -> Path:
    """Which URL (and version of it) `part` came from; a partial is only resumed from the same one."""
    return part.with_name(part.name + ".json")


def _write_sidecar(part: Path, url: str, validator: str) -> None:
    write_json_atomic(sidecar_path(part), {"url": url, "validator": validator})


def _resume_point(part: Path, url: str) -> tuple[int, str]:
    """(bytes already in `part` from this very URL, its validator); 0 when there is nothing to resume."""
    try:
        origin = json.loads(sidecar_path(part).read_text(encoding="utf-8"))
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0, ""
    if not isinstance(origin, dict) or origin.get("url") != url:
        return 0, ""  # bytes from another mirror may be a different gzip of the same payload
    return size, str(origin.get("validator", ""))


def discard_part(part: Path) -> None:
    """Drop a partial download that cannot be resumed (not bad data: just unusable)."""
    part.unlink(missing_ok=True)
    sidecar_path(part).unlink(missing_ok=True)


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


def quarantine_part(part: Path, name: str, shown: str, reason: str) -> Path:
    sidecar_path(part).unlink(missing_ok=True)
    try:
        return quarantine(part, f"{name} from {shown}: {reason}")
    except OSError as exc:
        raise storage_error(part, exc) from None


def promote_part(part: Path, final: Path) -> None:
    """Move the verified file onto its final name; fsync first so that a crash cannot leave it empty."""
    try:
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(part, final)
    except OSError as exc:
        raise storage_error(final, exc) from None
