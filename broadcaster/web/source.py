"""Where the web service gets the campaign and a dispatcher from.

`broadcaster serve` runs alone (`StandaloneSource`): it loads the config, keeps a
dispatcher of its own (for send-now and for recording pushed outcomes) and applies an
edited config once it validates, like `run`. `broadcaster run --serve` shares the
scheduler's (`RunnerSource`): the pages always show the config the scheduler runs,
and a send-now goes through the scheduler's rate limits.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from broadcaster.engine.app import App
from broadcaster.engine.clock import Clock
from broadcaster.engine.dispatch import Dispatcher
from broadcaster.engine.recovery import Recovery
from broadcaster.errors import ConfigError
from broadcaster.log import DeliveryLog

if TYPE_CHECKING:
    from broadcaster.engine.runner import Runner

__all__ = ["EngineSource", "RunnerSource", "StandaloneSource"]

log = logging.getLogger("broadcaster.web")
RELOAD_CHECK = 5.0  # seconds between looks at the config files' modification times


class EngineSource(Protocol):
    """The current app and the dispatcher that goes with it."""

    def current(self) -> tuple[App, Dispatcher, Recovery]: ...

    @property
    def config_error(self) -> str | None: ...  # an edit refused, if the last one was

    def close(self) -> None: ...


def _mtimes(app: App) -> dict[Path, float]:
    out: dict[Path, float] = {}
    for path in [app.config_path, *app.watched_files]:
        try:
            out[path] = path.stat().st_mtime
        except OSError:
            out[path] = -1.0
    return out


class StandaloneSource:
    """The service's own app and dispatcher; an edited config is applied once it validates."""

    def __init__(self, app: App, log_store: DeliveryLog, key: bytes, clock: Clock):
        self.log = log_store
        self.key = key
        self.clock = clock
        self._lock = threading.Lock()
        self._app = app
        self._dispatcher = app.dispatcher(log_store, key, clock=clock)
        self._recovery = Recovery(self._dispatcher)
        self._mtimes = _mtimes(app)
        self._checked = time.monotonic()
        self.config_error: str | None = None

    def current(self) -> tuple[App, Dispatcher, Recovery]:
        if time.monotonic() - self._checked >= RELOAD_CHECK:
            self._reload_if_changed()
        with self._lock:
            return self._app, self._dispatcher, self._recovery

    def _reload_if_changed(self) -> None:
        with self._lock:
            self._checked = time.monotonic()
            current = _mtimes(self._app)
            if current == self._mtimes:
                return
            self._mtimes = current
            try:
                app = self._app.reload(self.clock.now())
            except ConfigError as exc:
                self.config_error = str(exc)
                log.warning("config edit refused; the previous config keeps running")
                return
            old = self._dispatcher
            self._app = app
            self._dispatcher = app.dispatcher(self.log, self.key, clock=self.clock)
            self._recovery = Recovery(self._dispatcher)
            self._mtimes = _mtimes(app)
            self.config_error = None
        threading.Thread(target=old.close, name="close-old-dispatcher", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._dispatcher.stop()
            self._dispatcher.close()


class RunnerSource:
    """The scheduler's app and dispatcher (`run --serve`); the runner owns and closes them."""

    def __init__(self, runner: Runner):
        self.runner = runner
        self.config_error: str | None = None

    def current(self) -> tuple[App, Dispatcher, Recovery]:
        r = self.runner
        with r._lock:
            return r.app, r.dispatcher, r.recovery

    def close(self) -> None:
        return None
