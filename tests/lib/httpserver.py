"""A small threaded HTTP server for tests, on 127.0.0.1 with an OS-chosen port.

It serves in-memory bytes or files on disk, honours ``Range`` and ``If-Range``
(strong ETag or Last-Modified) the way a real static server does, logs every
request, and can misbehave on purpose (see :class:`Faults`) so the download code
can be tested against cut connections, stalls, lying headers and error statuses.

    with serve({"/x.iso": data}, cut_after=100, cut_times=1) as srv:
        download(srv.url("/x.iso"), dest, ...)
        assert srv.requests[1].headers["range"] == "bytes=100-"

``serve`` is a context manager; the ``http_serve`` fixture (import it into a test
module or list this module in ``pytest_plugins``) closes every server it started.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import pytest

DEFAULT_LAST_MODIFIED = "Sat, 01 Feb 2025 00:00:00 GMT"
_CHUNK = 64 * 1024


@dataclass
class Faults:
    """Ways the server misbehaves; mutate ``server.faults`` between calls to change them.

    The ``*_times`` counters limit a fault to the first N responses it applies to
    (``None``: every response), so "cut once, then serve" is ``cut_after=N, cut_times=1``.
    """

    status: int | None = None          # answer with this status and a short text body (404, 503, ...)
    status_times: int | None = None
    cut_after: int | None = None       # close the connection after this many body bytes
    cut_times: int | None = None
    stall_after: int | None = None     # stop sending after this many body bytes and hang (client timeout)
    stall_times: int | None = None
    ranges: bool = True                # False: ignore Range and send 200 (like SimpleHTTPRequestHandler)
    etag: bool = True                  # send a strong ETag derived from the content
    last_modified: str | None = DEFAULT_LAST_MODIFIED
    content_length: bool = True        # False: no Content-Length, the body ends when the connection closes
    range_skew: int = 0                # lie: Content-Range starts this many bytes off what is actually sent
    range_etag: str | None = None      # lie: this ETag on 206 responses (a resumed body claiming another file)
    extra_body: bytes = b""            # lie: bytes sent after the declared body (needs content_length=False to be seen)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302)


_TIMES = {"status": "status_times", "cut_after": "cut_times", "stall_after": "stall_times"}


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]


class TestServer:
    """State shared by the handler threads: files, faults, the request log."""

    __test__ = False  # not a pytest test class

    def __init__(self, files: dict[str, bytes | Path], faults: Faults) -> None:
        self.files: dict[str, bytes | Path] = dict(files)
        self.faults = faults
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}
        self._stop = threading.Event()
        handler = type("Handler", (_Handler,), {"state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def url(self, path: str) -> str:
        """Return the full URL of ``path`` on this server."""
        return self.base + path

    def start(self) -> TestServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; stalled responses are released so their threads end."""
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def take(self, fault: str) -> bool:
        """True when the fault named ``fault`` applies to this response (and count it)."""
        value = getattr(self.faults, fault)
        if value is None or value is False:
            return False
        limit = getattr(self.faults, _TIMES[fault])
        with self._lock:
            used = self._used.get(fault, 0)
            if limit is not None and used >= limit:
                return False
            self._used[fault] = used + 1
        return True

    def log(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def paths(self) -> list[str]:
        """Paths requested so far, in order."""
        return [r.path for r in self.requests]


def etag_for(content: bytes | Path) -> str:
    """The ETag the server sends for ``content`` (strong, quoted)."""
    if isinstance(content, Path):
        st = content.stat()
        return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    return '"' + hashlib.sha256(content).hexdigest()[:20] + '"'


def _open(content: bytes | Path) -> tuple[BinaryIO, int]:
    if isinstance(content, Path):
        fp = open(content, "rb")  # noqa: SIM115 - closed by the caller
        return fp, content.stat().st_size
    return io.BytesIO(content), len(content)


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    state: TestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def do_GET(self) -> None:
        self._respond(body=True)

    def _respond(self, body: bool) -> None:
        st = self.state
        f = st.faults
        st.log(RequestRecord(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.close_connection = True
        if self.path in f.redirects:
            self._simple(302, b"moved\n", {"Location": f.redirects[self.path]})
            return
        if f.status is not None and st.take("status"):
            self._simple(f.status, f"status {f.status}\n".encode())
            return
        content = st.files.get(self.path)
        if content is None:
            self._simple(404, b"not found\n")
            return
        etag = etag_for(content) if f.etag else None
        fp, length = _open(content)
        with fp:
            start, end, status = 0, length - 1, 200
            match = _RANGE.match(self.headers.get("Range", "").strip())
            if match and f.ranges and self._if_range_ok(etag):
                start = int(match.group(1))
                end = min(int(match.group(2)), length - 1) if match.group(2) else length - 1
                if start >= length or start > end:
                    self._simple(416, b"", {"Content-Range": f"bytes */{length}"})
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes" if f.ranges else "none")
            if status == 206 and f.range_etag:
                self.send_header("ETag", f.range_etag)
            elif etag:
                self.send_header("ETag", etag)
            if f.last_modified:
                self.send_header("Last-Modified", f.last_modified)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start + f.range_skew}-{end + f.range_skew}/{length}")
            if f.content_length:
                self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Connection", "close")
            self.end_headers()
            if body:
                fp.seek(start)
                self._send_body(fp, end - start + 1)

    def _if_range_ok(self, etag: str | None) -> bool:
        # RFC 9110 13.1.5: a Range is honoured only if If-Range still names the current representation.
        cond = self.headers.get("If-Range")
        if cond is None:
            return True
        cond = cond.strip()
        if cond.startswith(('"', "W/")):
            return etag is not None and cond == etag and not cond.startswith("W/")
        return cond == self.state.faults.last_modified

    def _send_body(self, fp: BinaryIO, count: int) -> None:
        st = self.state
        cut = st.faults.cut_after if st.take("cut_after") else None
        stall = st.faults.stall_after if st.take("stall_after") else None
        limit = min(x for x in (count, cut, stall) if x is not None)
        sent = 0
        try:
            while sent < limit:
                chunk = fp.read(min(_CHUNK, limit - sent))
                if not chunk:
                    break
                self.wfile.write(chunk)
                sent += len(chunk)
            if stall is not None and sent >= stall:
                self.wfile.flush()
                st._stop.wait(10)  # hang until the client gives up or the server closes
            elif cut is None and st.faults.extra_body:
                self.wfile.write(st.faults.extra_body)
            self.wfile.flush()
        except OSError:
            return  # the client went away (e.g. it timed out first)
        if cut is not None:
            # An abrupt close mid-body, as a dropped connection looks to the client.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _simple(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


@contextlib.contextmanager
def serve(files: dict[str, bytes | Path], **faults: Any) -> Iterator[TestServer]:
    """Serve ``files`` (URL path -> bytes or file) on 127.0.0.1; keyword args set :class:`Faults`."""
    server = TestServer(files, Faults(**faults)).start()
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    """Return a port nothing listens on (bound, then released), for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_serve() -> Iterator[Callable[..., TestServer]]:
    """Fixture: a ``serve``-like factory whose servers are closed after the test."""
    servers: list[TestServer] = []

    def start(files: dict[str, bytes | Path], **faults: Any) -> TestServer:
        server = TestServer(files, Faults(**faults)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
