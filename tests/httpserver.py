"""A real HTTP server on 127.0.0.1 for tests, with misbehaviours on demand.

Each served path is a `Route`: its body plus how to misbehave (cut the connection mid-file, ignore
`Range`, corrupt bytes, send more than `Content-Length` announces, answer late, trickle a byte at a
time, send a chunked body with no length, fail with 5xx). Range
requests are answered by hand (206 + `Content-Range`, RFC 9110 §14) so that a test controls exactly
what the client sees. Every request is logged for assertions.

    with HttpTestServer() as server:
        server.add("data/file.gz", body, cut_after=100)
        url = server.url("data")          # a directory URL; the client appends the file name
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE_PATTERN = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Route:
    """What one path serves, and how it misbehaves."""

    body: bytes
    status: int = 200  # anything but 200 is sent as an error with a short text body
    location: str | None = None  # answer 302 with this Location instead of the body
    honor_range: bool = True  # False: always 200 with the whole body, as some mirrors do
    cut_after: int | None = None  # announce the full length, send this many bytes, close
    cut_times: int = 1  # how many requests (the first ones) are cut
    fail_first: int = 0  # answer the first requests with 503
    corrupt_at: int | None = None  # flip the byte at this offset of the body
    extra: bytes = b""  # sent after the body, beyond the announced Content-Length
    delay: float = 0.0  # seconds to wait before answering (for client timeouts)
    linger: float = 0.0  # seconds to hold the connection open after the body, despite `Connection: close`
    trickle: float = 0.0  # send the body one byte every this many seconds (no socket timeout ever fires)
    trickle_head: bool = False  # with `trickle`: the status line and headers too, byte by byte
    chunked: bool = False  # `Transfer-Encoding: chunked`, no Content-Length (the size is unknown up front)
    served: int = 0  # requests seen so far (updated by the server)


@dataclass(frozen=True)
class RequestLog:
    path: str
    range: str | None
    status: int


class HttpTestServer:
    """A threaded `http.server` on 127.0.0.1 and an ephemeral port, in a background thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[RequestLog] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -------------------------------------------------------------------------------
    def add(self, path: str, body: bytes, **behaviour) -> Route:
        route = Route(body=body, **behaviour)
        self.routes["/" + path.lstrip("/")] = route
        return route

    def url(self, path: str = "") -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{path.lstrip('/')}"

    def requests_for(self, path: str) -> list[RequestLog]:
        wanted = "/" + path.lstrip("/")
        with self._lock:
            return [request for request in self.requests if request.path == wanted]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> HttpTestServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True  # a handler stuck in a slow route must not block shutdown
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes slow handlers so that they leave without writing
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpTestServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------------
    def _next_request(self, path: str) -> tuple[Route | None, int]:
        with self._lock:
            route = self.routes.get(path)
            if route is None:
                return None, 0
            route.served += 1
            return route, route.served

    def _log(self, path: str, range_header: str | None, status: int) -> None:
        with self._lock:
            self.requests.append(RequestLog(path, range_header, status))


def serve() -> Iterator[HttpTestServer]:
    """Generator for a pytest fixture: `server = pytest.fixture(serve)`."""
    with HttpTestServer() as server:
        yield server


def _make_handler(owner: HttpTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            pass  # keep test output clean; the owner keeps its own log

        def do_GET(self):
            self.close_connection = True
            path = self.path.split("?", 1)[0]
            range_header = self.headers.get("Range")
            route, count = owner._next_request(path)
            if route is None:
                return self._error(path, range_header, 404, "Not Found")
            if route.delay and owner._stopping.wait(route.delay):
                return  # the server is stopping: the client gave up long ago
            if count <= route.fail_first:
                return self._error(path, range_header, 503, "Service Unavailable")
            if route.location is not None:
                owner._log(path, range_header, 302)
                self.send_response(302)
                self.send_header("Location", route.location)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                return
            if route.status != 200:
                return self._error(path, range_header, route.status, self.responses.get(route.status, ("",))[0])

            body = bytearray(route.body)
            if route.corrupt_at is not None:
                body[route.corrupt_at] ^= 0xFF
            start = 0
            status = 200
            if range_header and route.honor_range:
                match = RANGE_PATTERN.match(range_header)
                if match is None:
                    return self._error(path, range_header, 400, "Bad Request")
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(body) - 1
                if start >= len(body):
                    owner._log(path, range_header, 416)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                body = body[start : min(end, len(body) - 1) + 1]
                status = 206

            owner._log(path, range_header, status)
            if route.trickle_head:
                return self._trickle(route, self._raw_head(status, len(body)) + bytes(body))
            self.send_response(status)
            self.send_header("Content-Type", "application/gzip")
            if route.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(route.body)}")
            else:
                self.send_header("Accept-Ranges", "bytes" if route.honor_range else "none")
            self.send_header("Connection", "close")
            self.end_headers()
            if route.trickle:
                return self._trickle(route, bytes(body))
            if route.chunked:
                for start in range(0, len(body), 1 << 16):
                    piece = bytes(body[start : start + (1 << 16)])
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            if route.cut_after is not None and count <= route.cut_times:
                self.wfile.write(bytes(body[: route.cut_after]))
                self.wfile.flush()
                return  # close_connection: the client sees EOF before Content-Length
            self.wfile.write(bytes(body) + route.extra)
            if route.linger:
                self.wfile.flush()
                owner._stopping.wait(route.linger)

        def _raw_head(self, status: int, length: int) -> bytes:
            reason = self.responses.get(status, ("",))[0]
            return (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/gzip\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
            ).encode()

        def _trickle(self, route: Route, data: bytes) -> None:
            for index in range(len(data)):
                if owner._stopping.wait(route.trickle):
                    return  # the server is stopping
                try:
                    self.wfile.write(data[index : index + 1])
                except OSError:
                    return  # the client gave up: that is what a deadline is for

        def _error(self, path: str, range_header: str | None, status: int, reason: str) -> None:
            owner._log(path, range_header, status)
            text = f"{status} {reason}\n".encode()
            self.send_response(status, reason)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(text)

    return Handler
