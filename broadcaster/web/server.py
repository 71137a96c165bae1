"""Running the service under uvicorn: alone (`broadcaster serve`), beside the scheduler
(`broadcaster run --serve`), or in a thread (tests, benchmarks).

The socket is bound before uvicorn starts, so port 0 works and the address is known
at once. No access log: paths may carry link tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

from broadcaster.engine.app import App, log_url
from broadcaster.engine.clock import Clock, SystemClock
from broadcaster.log import DeliveryLog
from broadcaster.web.service import WebService, create_app
from broadcaster.web.settings import WebOptions, web_secret
from broadcaster.web.source import EngineSource, RunnerSource, StandaloneSource

if TYPE_CHECKING:
    from broadcaster.engine.runner import Runner

__all__ = ["Server", "bind", "build_service", "start_beside_runner"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = info[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the command handles signals and exits 0
    (uvicorn re-raises a caught signal after shutting down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Server:
    """A uvicorn server on a bound socket."""

    asgi: Any
    sock: socket.socket
    options: WebOptions

    def __post_init__(self) -> None:
        config = uvicorn.Config(
            self.asgi,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=self.options.forwarded_allow_ips is not None,
            forwarded_allow_ips=self.options.forwarded_allow_ips,
            timeout_graceful_shutdown=5,
            limit_concurrency=1000,
        )
        self.uvicorn = _Uvicorn(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.sock.getsockname()[0]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def run(self) -> None:
        """Serve in the main thread until SIGINT or SIGTERM (or `stop()`); exit normally."""

        def on_signal(signum: int, _frame: Any) -> None:
            if self.uvicorn.should_exit:  # asked twice: stop waiting for open requests
                self.uvicorn.force_exit = True
            self.uvicorn.should_exit = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            asyncio.run(self.uvicorn.serve(sockets=[self.sock]))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.sock.close()

    def start(self, timeout: float = 30.0) -> Server:
        """Serve in a background thread; return once it accepts connections."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.uvicorn.serve(sockets=[self.sock])),
            name="broadcaster-web",
            daemon=True,
        )
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout * 20)):
            if self.uvicorn.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)
        if not self.uvicorn.started:
            raise RuntimeError("网页服务未能启动 the web service did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.sock.close()


def build_service(
    source: EngineSource,
    app: App,
    store: DeliveryLog,
    db: str | None,
    *,
    clock: Clock,
    options: WebOptions,
    environ: Mapping[str, str] | None = None,
) -> WebService:
    environ = app.environ if environ is None else environ
    return WebService(
        source,
        store,
        log_url(db, app.state_dir, environ),
        secret=web_secret(app.state_dir, environ),
        clock=clock,
        options=options,
    )


def standalone(
    app: App,
    store: DeliveryLog,
    key: bytes,
    db: str | None,
    options: WebOptions,
    clock: Clock | None = None,
) -> tuple[WebService, StandaloneSource]:
    clock = clock or SystemClock()
    source = StandaloneSource(app, store, key, clock)
    return build_service(source, app, store, db, clock=clock, options=options), source


def start_beside_runner(
    runner: Runner, store: DeliveryLog, db: str | None, options: WebOptions
) -> tuple[Server, WebService]:
    """`run --serve`: the service on the scheduler's app, dispatcher and log, in a thread."""
    service = build_service(
        RunnerSource(runner), runner.app, store, db, clock=runner.clock, options=options
    )
    server = Server(create_app(service), bind(options.host, options.port), options).start()
    return server, service
