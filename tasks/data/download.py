"""Downloading one raw file over HTTP(S) into its `.part` file.

Each request has a socket timeout, transient failures are retried with exponential backoff, and a cut
download resumes with a `Range` request (RFC 9110 §14.2), starting afresh when the server ignores
Range. The whole download, retries included, has a deadline: a watchdog shuts the connection's socket
down when it passes, so that a server trickling a byte a second (which no socket timeout catches, in
the headers or in the body) fails this source and the next one is tried.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tasks.data.partfile import discard_part, open_part, resume_point, write_sidecar
from tasks.data.transfer import Deadline, SourceFailed, progress_bar, pump

log = logging.getLogger(__name__)

USER_AGENT = "fmnist-pipeline (tasks.data.download)"
CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")


class _Watchdog:
    """Shuts down the sockets of one download when its deadline passes."""

    def __init__(self, deadline: Deadline):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(deadline.left(), 0.0), self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)  # a blocked recv() in the downloading thread returns at once

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mix-in for urllib's HTTP(S) handlers: hand each new connection's socket to the request's watchdog."""

    def do_open(self, http_class, req, **kwargs):
        watchdog: _Watchdog | None = getattr(req, "watchdog", None)

        def connection(*args, **kw):
            conn = http_class(*args, **kw)
            connect = conn.connect

            def watched_connect():
                connect()
                if watchdog is not None:
                    watchdog.watch(conn.sock)

            conn.connect = watched_connect
            return conn

        return super().do_open(connection, req, **kwargs)


class _WatchedHTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    pass


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib alone would also follow one to ftp://), under the same watchdog."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise SourceFailed(f"redirected ({code}) to {newurl!r}, which is not http(s); refused")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.watchdog = getattr(req, "watchdog", None)
        return new


_OPENER = urllib.request.build_opener(_RedirectHandler, _WatchedHTTPHandler, _WatchedHTTPSHandler)


def download_http(
    url: str,
    part: Path,
    name: str,
    *,
    timeout: float,
    retries: int,
    backoff: float,
    max_bytes: int,
    deadline: Deadline,
) -> None:
    """Download `url` into `part`, retrying transient failures and resuming what a cut left, by `deadline`."""
    tries = retries + 1
    with _Watchdog(deadline) as watchdog:
        for attempt in range(tries):
            if attempt:
                pause = backoff * 2 ** (attempt - 1)
                if pause >= deadline.left():
                    raise deadline.failure()
                time.sleep(pause)
            try:
                deadline.check()
                _http_attempt(
                    url, part, name, timeout=timeout, max_bytes=max_bytes, watchdog=watchdog, deadline=deadline
                )
                return
            except SourceFailed as failure:
                if watchdog.expired:  # the failure is the shut socket, not the server
                    raise deadline.failure() from None
                if not failure.transient:
                    raise
                last = failure
                if attempt + 1 < tries:
                    log.info("%s: %s; retry %d of %d", url, failure, attempt + 1, retries)
    raise SourceFailed(f"{last} (gave up after {tries} {'try' if tries == 1 else 'tries'})")


def _http_attempt(
    url: str, part: Path, name: str, *, timeout: float, max_bytes: int, watchdog: _Watchdog, deadline: Deadline
) -> None:
    offset, validator = resume_point(part, url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            # If the file changed on the server, If-Range makes it send the new file whole (200).
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    request.watchdog = watchdog
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
            _receive(response, url, part, name, offset, max_bytes, deadline)
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


def _receive(
    response: http.client.HTTPResponse, url: str, part: Path, name: str, offset: int, max_bytes: int, deadline: Deadline
) -> None:
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
    total_bytes = None if length is None else offset + length
    with open_part(part, mode) as out, progress_bar(name, total_bytes, offset) as bar:
        if mode == "wb":  # truncated first, so the sidecar never vouches for older bytes
            validator = headers.get("ETag", "")
            if not validator or validator.startswith("W/"):  # a weak ETag may not be used in If-Range
                validator = headers.get("Last-Modified", "")
            write_sidecar(part, url, validator)
        try:
            received = pump(
                read, out, part, already=offset, announced=length, max_bytes=max_bytes, bar=bar, deadline=deadline
            )
        except TimeoutError:
            if length is None or out.tell() < offset + length:
                raise
            received = length  # all announced bytes came; only the server's close was late
    if length is not None and received < length:
        raise SourceFailed(f"connection cut after {offset + received} of {offset + length} bytes", transient=True)


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
