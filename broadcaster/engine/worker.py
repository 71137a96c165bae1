"""A process that runs send tasks handed to it: a process pool's member, or `broadcaster
worker` on the worker engine. It loads the office's config and opens the log itself, and
resolves every task's deliveries from the log by their keys.

    start(config, db, state_dir, environ)   once per process
    run(task) -> TaskReport                  per task
    serve(...)                               `broadcaster worker`: run queued jobs until stopped
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broadcaster.engine.executor import SendTask, TaskReport, gather
from broadcaster.vocab import ErrorClass, Status

__all__ = ["PoisonedTaskError", "run", "run_bundle", "serve", "start"]

log = logging.getLogger(__name__)

_engine: dict[str, Any] = {}
RETRY_SECONDS = 2.0  # a job whose deliveries could not begin runs again this soon


class PoisonedTaskError(Exception):
    """A job none of whose tasks could run: retried a bounded number of times."""


def start(
    config: str,
    db: str | None,
    state_dir: str,
    environ: Mapping[str, str],
    *,
    shared_limits: bool = False,
) -> None:
    """Load the config, open the log and a dispatcher sending in this process; with
    `shared_limits`, rate limits are kept in the (PostgreSQL) log for every process."""
    from broadcaster.engine.app import App
    from broadcaster.engine.clock import SystemClock

    app = App.load(
        Path(config), now=dt.datetime.now(dt.UTC), environ=dict(environ), state_dir=Path(state_dir)
    )
    log_store, key = app.open_log(db)
    clock = SystemClock()
    limiter = None
    if shared_limits:
        from broadcaster.engine.shared_limits import SharedRateLimiter

        limiter = SharedRateLimiter(log_store.connect_url(), clock)
    dispatcher = app.dispatcher(log_store, key, clock=clock, limiter=limiter)
    _engine.update(app=app, log=log_store, dispatcher=dispatcher, limiter=limiter)
    atexit.register(stop)


def run(task: SendTask) -> TaskReport:
    """Claim the task's deliveries, send them, log every attempt and outcome."""
    report: TaskReport = _engine["dispatcher"].execute(task)
    return report


def run_bundle(context: Any, tasks: list[dict[str, Any]]) -> dict[str, int]:
    """The queued job: its tasks run side by side in this process's channel lanes.

    A job that raises, or none of whose tasks could run, is run again by the queue; after
    the last attempt its deliveries still waiting are recorded as failed, with the
    reason, so it neither blocks the queue nor comes back.
    """
    from broadcaster.engine.queue import MAX_ATTEMPTS

    keys: list[str] = []
    try:
        parsed = [SendTask(**{**t, "keys": tuple(t["keys"])}) for t in tasks]
        keys = [k for t in parsed for k in t.keys]
        dispatcher = _engine["dispatcher"]
        adopted = dispatcher.adopt(keys)  # one claim for the whole job
        report = gather([dispatcher.executor.submit(t) for t in parsed])
        for status, n in adopted.counts.items():
            report.add(status, n)
        if report.errors and not report.counts:
            raise PoisonedTaskError("; ".join(report.errors[:3]))
    except Exception as exc:
        if context.job.attempts + 1 >= MAX_ATTEMPTS and keys:
            _give_up(keys, MAX_ATTEMPTS, str(exc) or repr(exc))
        raise
    _still_waiting(keys)
    return report.counts


def _still_waiting(keys: list[str]) -> None:
    """Raise NotSentYetError when deliveries of this job are still planned after it ran:
    held under another process's live claim, or left when their send could not begin (a
    busy log). The job runs again when that claim can have run out, or in a moment, rather
    than leaving them to the sweep's much later look."""
    from broadcaster.engine.queue import NotSentYetError

    dispatcher = _engine["dispatcher"]
    now = dispatcher.clock.now()
    waits = []
    for s in dispatcher.log.latest(keys).values():
        if s.status is not Status.PLANNED:
            continue  # sent, failed, or deferred to a time the sweep keeps
        live = s.lease_until is not None and s.lease_until > now
        if s.lease_owner not in (None, dispatcher.owner) and live and s.lease_until:
            waits.append((s.lease_until - now).total_seconds() + 1)
        else:
            waits.append(RETRY_SECONDS)
    if waits:
        raise NotSentYetError(len(waits), max(waits))


def _give_up(keys: list[str], attempts: int, reason: str) -> None:
    """Record deliveries still waiting as failed: their job failed `attempts` times."""
    from broadcaster.log import Event

    dispatcher = _engine["dispatcher"]
    now = dispatcher.clock.now()
    claim = dispatcher.log.claim(
        keys,
        owner=dispatcher.owner,
        now=now,
        lease_until=now + dt.timedelta(seconds=dispatcher.lease),
        statuses=(Status.PLANNED, Status.DEFERRED),
    )
    text = f"发送任务失败 {attempts} 次 the send task failed {attempts} times: {reason}"
    events = [Event(k, Status.FAILED, now, ErrorClass.CONFIG, text) for k in claim.held]
    if events:
        dispatcher.log.append(events)
        dispatcher.log.flush()


def serve(
    config: str,
    db: str | None,
    state_dir: str,
    environ: Mapping[str, str],
    *,
    concurrency: int,
    name: str | None = None,
    wait: bool = True,
) -> None:
    """`broadcaster worker`: take queued send jobs until SIGTERM/SIGINT (or, without
    `wait`, until the queue is empty)."""
    from broadcaster.engine.queue import QUEUE, ensure_schema, queue_app

    start(config, db, state_dir, environ, shared_limits=True)
    url = _engine["log"].connect_url()
    app = queue_app(url, run_bundle)
    with app.open():
        ensure_schema(app, url)
        app.run_worker(
            queues=[QUEUE],
            concurrency=concurrency,
            name=name or f"{socket.gethostname()}:{os.getpid()}",
            wait=wait,
            delete_jobs="never",
            update_heartbeat_interval=2.0,
            stalled_worker_timeout=10.0,
            shutdown_graceful_timeout=30.0,
        )
    stop()


def stop() -> None:
    if "dispatcher" in _engine:
        _engine.pop("dispatcher").close()
        _engine.pop("log").close()
    limiter = _engine.pop("limiter", None)
    if limiter is not None:
        limiter.close()
