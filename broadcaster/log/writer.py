"""Group commit: one writer thread per log writes what many threads queue, one commit a group.

Callers queue a job and block; the writer drains the queue, runs everything waiting
in one transaction, commits once and wakes the callers (or hands each the error). Two
hundred threads appending one event each cost a handful of commits, not two hundred,
and SQLite never sees two writers from one process.

If the writer thread itself dies (not a failed write: the thread), every waiting and
later caller gets `LogWriterDeadError` at once, instead of waiting forever; what was
acknowledged before was committed, and nothing after is acknowledged.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Engine

from broadcaster.errors import LogStoreError, LogWriterDeadError

__all__ = ["GroupWriter", "Job"]

log = logging.getLogger("broadcaster.log")

MAX_GROUP = 2000  # queued jobs committed together at most
POLL = 1.0  # seconds between checks that the writer is alive while waiting


@dataclass(eq=False)
class Job:
    """One caller's write: events to apply, or a function run inside the group's transaction."""

    events: Sequence[Any] | None = None
    lease: Any = None  # events only: written only while this (owner, until) holds the lease
    work: Callable[[Connection, dict[str, Any]], Any] | None = None
    result: Any = None
    error: LogStoreError | None = None
    detached: bool = False  # nobody waits: a failure is kept for flush()
    on_error: Callable[[], None] | None = None  # detached: called when its write failed
    chained: bool = True  # False: writes no chained row (claims, leases), skips the chain head
    # held until the job is done: a plain lock is the cheapest one-shot signal between threads
    _pending: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._pending.acquire()

    def finish(self) -> None:
        self._pending.release()

    def wait(self, timeout: float) -> bool:
        if self._pending.acquire(timeout=timeout):
            self._pending.release()  # a later wait() sees it done too
            return True
        return False


class GroupWriter:
    """The writer thread of one log.

    `apply_events(conn, events, scratch, leases)` writes a run of consecutive event jobs
    (one statement for all of them; `leases` gives each event its job's lease condition)
    and returns what each event came to; `scratch` is a dict per transaction, handed to
    `after_commit` once it committed; `begin(conn)` runs first in every transaction and
    `before_commit(conn)` last (the hash chain: take its head, seal what was written), unless
    no job of the group is `chained`; `translate`
    turns a database failure into a `LogStoreError`; `refused` tells which errors belong
    to one job's content (the group is then retried job by job).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        apply_events: Callable[[Connection, list[Any], dict[str, Any], list[Any]], list[Any]],
        translate: Callable[[BaseException], LogStoreError],
        refused: type[LogStoreError],
        after_commit: Callable[[dict[str, Any]], None] = lambda scratch: None,
        begin: Callable[[Connection], Any] = lambda conn: None,
        before_commit: Callable[[Connection], Any] = lambda conn: None,
        name: str = "delivery-log",
    ) -> None:
        self._engine = engine
        self._apply_events = apply_events
        self._translate = translate
        self._refused = refused
        self._after_commit = after_commit
        self._begin = begin
        self._before_commit = before_commit
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._dead: LogWriterDeadError | None = None
        self._async_errors: list[LogStoreError] = []
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._dead is None and self._thread.is_alive()

    @property
    def dead(self) -> LogWriterDeadError | None:
        if self._dead is None and not self._thread.is_alive() and not self._closed:
            self._dead = LogWriterDeadError("日志写入线程已停止 the delivery log's writer stopped")
        return self._dead

    def submit(self, job: Job, *, wait: bool = True) -> Any:
        """Queue a write; with `wait`, block until it is committed and re-raise its error."""
        with self._lock:
            if self._dead is not None:
                raise self._dead
            if self._closed:
                raise LogStoreError("日志已关闭 the delivery log is closed")
            job.detached = not wait
            self._queue.put(job)
        if not wait:
            return None
        while not job.wait(POLL):
            dead = self.dead
            if dead is not None:
                raise dead
        if job.error is not None:
            raise job.error
        return job.result

    def flush(self) -> None:
        """Wait until everything queued is committed; raise the first failure of a queued write."""
        self.submit(Job(work=lambda conn, scratch: None, chained=False))
        with self._lock:
            failed, self._async_errors = self._async_errors, []
        if failed:
            raise failed[0]

    def close(self) -> None:
        """Commit what is queued, stop the thread; raise a queued write's failure, if any."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        failed = self._async_errors or ([self._dead] if self._dead else [])
        if failed:
            raise failed[0]

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    group.append(job)
                self._commit(group)
        except BaseException as exc:  # the thread itself failed: nobody may wait for it again
            log.critical("delivery log writer died: %r", exc)
            dead = LogWriterDeadError(
                f"日志写入线程已停止 the delivery log's writer stopped: {type(exc).__name__}: {exc}"
            )
            with self._lock:
                self._dead = dead
            self._fail_queued(dead)

    def _fail_queued(self, error: LogStoreError) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.error = error
                job.finish()

    def _commit(self, group: list[Job]) -> None:
        """Write a group in one transaction; if one caller's rows are refused, retry one by one."""
        scratch: dict[str, Any] = {}
        try:
            results = self._write(group, scratch)
        except Exception as exc:
            error = self._translate(exc)
            if isinstance(error, self._refused) and len(group) > 1:
                for job in group:
                    self._commit([job])
                return
            for job in group:
                job.error = error
                if job.detached:
                    log.error("queued log write failed: %s", error)
                    with self._lock:
                        self._async_errors.append(error)
                    if job.on_error is not None:
                        try:
                            job.on_error()
                        except Exception:  # the writer must go on whatever a caller does
                            log.exception("on_error of a queued write failed")
                job.finish()
            return
        self._after_commit(scratch)
        for job, result in zip(group, results, strict=True):
            job.result = result
            job.finish()

    def _write(self, group: list[Job], scratch: dict[str, Any]) -> list[Any]:
        results: list[Any] = [None] * len(group)
        pending: list[tuple[int, Sequence[Any], Any]] = []  # (job index, events, lease) in a run

        def flush_events(conn: Connection) -> None:
            if not pending:
                return
            outcomes = self._apply_events(
                conn,
                [e for _, events, _ in pending for e in events],
                scratch,
                [lease for _, events, lease in pending for _ in events],
            )
            offset = 0
            for index, events, _ in pending:
                results[index] = outcomes[offset : offset + len(events)]
                offset += len(events)
            pending.clear()

        chained = any(job.chained for job in group)
        with self._engine.begin() as conn:
            if chained:
                self._begin(conn)
            for index, job in enumerate(group):
                if job.events is not None:
                    pending.append((index, job.events, job.lease))
                    continue
                flush_events(conn)
                assert job.work is not None
                results[index] = job.work(conn, scratch)
            flush_events(conn)
            if chained:
                self._before_commit(conn)
        return results
