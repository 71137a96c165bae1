"""A real HTTP server on 127.0.0.1, port 0, in a daemon thread: the base of every fake provider.

It records every request (method, path, query, headers, body, arrival order) and answers
with what `handle()` returns: a `Reply` to send, optionally after a delay, or an order
to hang (read the request, never answer until the server stops) or to close the
connection without answering. Subclass it and override `handle()` for a provider, or
queue replies on the base class:

    with FakeHTTPServer() as server:
        server.enqueue(Reply.json({"ok": True}), Reply.hang())
        ...
        assert server.requests[0].json() == {...}

Handlers run one thread per connection (HTTP/1.1 keep-alive), so a test can have
hundreds of requests in flight; `stop()` wakes hung handlers, closes every
connection and joins the threads, so no socket outlives the test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from requests.structures import CaseInsensitiveDict

__all__ = ["FakeHTTPServer", "RecordedRequest", "Reply"]

Action = Literal["answer", "hang", "close"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived."""

    seq: int  # arrival order, 1-based, over the server's lifetime
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: CaseInsensitiveDict[str]
    body: bytes
    received_at: float  # time.monotonic() when the body was read

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """What the server does with one request."""

    status: int = 200
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (real time: keep it short)
    action: Action = "answer"
    # answer with a Content-Length this many bytes larger than the body, then close:
    # the client sees the connection drop in the middle of the body
    short_by: int = 0

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> Reply:
        return cls(
            status,
            json.dumps(data, ensure_ascii=False),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
            **kw,
        )

    @classmethod
    def hang(cls) -> Reply:
        """Read the request, never answer until the server stops."""
        return cls(action="hang")

    @classmethod
    def close(cls) -> Reply:
        """Read the request, close the connection without a byte of answer."""
        return cls(action="close")

    def payload(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: the fake records requests itself

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        request = fake._record(
            self.command,
            url.path,
            parse_qs(url.query, keep_blank_values=True),
            CaseInsensitiveDict(self.headers.items()),
            self._read_body(),
        )
        try:
            reply = fake.handle(request)
        except Exception as exc:  # a bug in the fake: answer 500 and keep it for the test
            fake.errors.append(exc)
            reply = Reply(500, f"fake server error: {exc!r}")
        if (reply.delay and fake._stopping.wait(reply.delay)) or reply.action != "answer":
            if reply.action == "hang":
                fake._stopping.wait()
            self.close_connection = True
            return
        payload = reply.payload()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if not any(k.lower() == "content-type" for k in reply.headers):
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload) + reply.short_by))
        if reply.short_by:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: FakeHTTPServer, request_queue_size: int) -> None:
        self.fake = fake
        self.request_queue_size = request_queue_size  # listen() backlog, read in server_activate
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
                self._handler_threads.add(threading.current_thread())
            else:
                self._connections.discard(connection)
                self._handler_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None  # the client went away (timeout, reset): expected in these tests

    def close_all(self, timeout: float) -> None:
        """Shut every open connection down and wait for its handler thread."""
        with self._lock:
            connections, threads = list(self._connections), list(self._handler_threads)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class FakeHTTPServer:
    """A recording HTTP server; override `handle()` or use `enqueue()` / `default`."""

    request_queue_size = 1024  # listen backlog: benchmarks open hundreds of connections at once

    def __init__(self) -> None:
        self.default = Reply(200, b"")
        self.errors: list[BaseException] = []  # exceptions raised by handle(): fake bugs
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, self.request_queue_size)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake hung handlers, close every connection, join the threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_all(timeout=5.0)
        server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:41234."""
        return f"http://127.0.0.1:{self.port}"

    # -- recording

    def _record(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: CaseInsensitiveDict[str],
        body: bytes,
    ) -> RecordedRequest:
        with self._arrived:
            request = RecordedRequest(
                len(self._requests) + 1, method, path, query, headers, body, time.monotonic()
            )
            self._requests.append(request)
            self._arrived.notify_all()
        return request

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until `count` requests have arrived (e.g. a hung one); fail after `timeout`."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= count, timeout):
                raise AssertionError(
                    f"expected {count} requests within {timeout}s, got {len(self._requests)}"
                )
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._queue.clear()

    # -- answering

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, then with `default`."""
        with self._lock:
            self._queue.extend(replies)

    def handle(self, request: RecordedRequest) -> Reply:
        """Decide the reply; runs in the handler thread. Subclasses override this."""
        with self._lock:
            return self._queue.popleft() if self._queue else self.default


def serving(server: FakeHTTPServer) -> Iterator[FakeHTTPServer]:
    """Fixture body: start, yield, stop, and fail the test if the fake itself raised."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
    if server.errors:
        raise AssertionError(f"the fake server raised: {server.errors!r}")
