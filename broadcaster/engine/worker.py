"""A process that runs send tasks handed to it (a process pool, and the worker engine of
issue 17): it loads the office's config and opens the log itself, and resolves every
task's deliveries from the log by their keys.

    start(config, db, state_dir, environ)   once per process
    run(task) -> TaskReport                  per task
"""

from __future__ import annotations

import atexit
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broadcaster.engine.executor import SendTask, TaskReport

__all__ = ["run", "start"]

_engine: dict[str, Any] = {}


def start(config: str, db: str, state_dir: str, environ: Mapping[str, str]) -> None:
    """Load the config, open the log and a dispatcher sending in this process."""
    from broadcaster.engine.app import App
    from broadcaster.engine.clock import SystemClock

    app = App.load(
        Path(config), now=dt.datetime.now(dt.UTC), environ=dict(environ), state_dir=Path(state_dir)
    )
    log, key = app.open_log(db)
    dispatcher = app.dispatcher(log, key, clock=SystemClock())
    _engine.update(app=app, log=log, dispatcher=dispatcher)
    atexit.register(stop)


def run(task: SendTask) -> TaskReport:
    """Claim the task's deliveries, send them, log every attempt and outcome."""
    report: TaskReport = _engine["dispatcher"].execute(task)
    return report


def stop() -> None:
    if "dispatcher" in _engine:
        _engine.pop("dispatcher").close()
        _engine.pop("log").close()
