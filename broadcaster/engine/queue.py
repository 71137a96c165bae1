"""Send tasks on a worker engine: Procrastinate, in the PostgreSQL log's own database.

`broadcaster run --workers external` fires occurrences and hands their send tasks to
the queue; `broadcaster worker` processes (as many as wanted, on any host that reaches
the database) take them. A job carries plain `SendTask` data (delivery keys, never a
number or a text), bundled up to `BUNDLE_KEYS` deliveries of one channel; it is
inserted in the same transaction that lets the deliveries go from the scheduler's
claim, so a crash can neither lose a task nor queue one for deliveries still held.

Whatever happens to a job, a delivery is sent at most once: a worker claims each
delivery in the log before sending it (the claim outlives neither the worker nor its
lease), so a job run twice, or a job of a killed worker run again, sends only what
nobody sent. Deliveries whose job vanished are found by the scheduler's sweep once
`QUEUE_GRACE` has passed, and queued again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broadcaster.engine.executor import SendTask, TaskReport
from broadcaster.errors import BroadcasterError

if TYPE_CHECKING:
    import procrastinate

    from broadcaster.log import DeliveryLog

__all__ = [
    "BUNDLE_KEYS",
    "MAX_ATTEMPTS",
    "QUEUE",
    "TASK_NAME",
    "QueueExecutor",
    "QueueStats",
    "WorkerStats",
    "conninfo",
    "queue_app",
    "queue_stats",
]

log = logging.getLogger(__name__)

TASK_NAME = "broadcaster.send"
QUEUE = "sends"
BUNDLE_KEYS = 200  # deliveries per job: a job's tasks run side by side in one worker
MAX_ATTEMPTS = 3  # a job that keeps raising is recorded as failed after this many runs
HELD_RETRIES = 20  # how often a job runs again for deliveries still waiting after it ran
STALLED_SECONDS = 10.0  # a worker silent this long (it beats every 2 s) is taken for dead
QUEUE_GRACE = dt.timedelta(minutes=15)
QUEUE_CONNECTIONS = 4  # the queue's connections per process (PostgreSQL allows 100 by default)
SCHEMA_LOCK = 0x62726F6164  # advisory lock taken while Procrastinate's schema is created  # a handed-over delivery nobody took is queued again


class NotSentYetError(Exception):
    """Deliveries of a job still waiting after it ran: another process held them (a killed
    worker's claim, a scheduler resuming) or their send could not begin (the log busy);
    the job runs again once that claim can have run out, or in a moment."""

    def __init__(self, count: int, wait: float):
        super().__init__(f"{count} deliveries still waiting; again in {wait:.0f} s")
        self.wait = wait


def retry_strategy() -> Any:
    """When a failed job runs again: held deliveries after their claim, a failure at most
    `MAX_ATTEMPTS` times in all."""
    import procrastinate
    from procrastinate.retry import RetryDecision

    class SendRetry(procrastinate.BaseRetryStrategy):
        def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
            if isinstance(exception, NotSentYetError):
                if job.attempts >= HELD_RETRIES:
                    return None  # the sweep takes them up after QUEUE_GRACE
                return RetryDecision(retry_in={"seconds": max(1, round(exception.wait))})
            if job.attempts + 1 >= MAX_ATTEMPTS:
                return None
            return RetryDecision(retry_in={"seconds": 2})

    return SendRetry()


class QueueUnavailableError(BroadcasterError):
    """The worker engine cannot be used (not installed, or not on PostgreSQL)."""


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (search_path kept)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise QueueUnavailableError(
            "外部工作进程需要 PostgreSQL 日志 external workers need the log on PostgreSQL"
            " (--db postgresql+psycopg://…)"
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def queue_app(url: str, run_bundle: Callable[..., Any] | None = None) -> procrastinate.App:
    """The Procrastinate app on the log's database; with `run_bundle`, the send task too."""
    try:
        import procrastinate
    except ImportError:
        raise QueueUnavailableError(
            "缺少工作进程组件 the worker engine is not installed: pip install 'broadcaster[workers]'"
        ) from None
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(url), min_size=1, max_size=QUEUE_CONNECTIONS
    )
    app = procrastinate.App(connector=connector)
    if run_bundle is not None:
        app.task(
            name=TASK_NAME,
            queue=QUEUE,
            pass_context=True,
            retry=retry_strategy(),
        )(run_bundle)
    return app


def ensure_schema(app: procrastinate.App, url: str) -> None:
    """Create Procrastinate's tables beside the log's on first use (one process does it,
    under an advisory lock, however many start at once)."""
    import psycopg

    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        try:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NULL").fetchone()
            if row is not None and row[0]:
                app.schema_manager.apply_schema()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))


def bundles(tasks: Sequence[SendTask], size: int = BUNDLE_KEYS) -> list[list[SendTask]]:
    """Tasks grouped per channel into jobs of at most `size` deliveries (a task is never cut)."""
    out: list[list[SendTask]] = []
    current: dict[str, tuple[list[SendTask], int]] = {}
    for task in tasks:
        group, n = current.get(task.channel_id, ([], 0))
        if group and n + len(task.keys) > size:
            out.append(group)
            group, n = [], 0
        group.append(task)
        current[task.channel_id] = (group, n + len(task.keys))
    out += [group for group, _ in current.values() if group]
    return out


class QueueExecutor:
    """Hands send tasks to Procrastinate, in the transaction that releases their claims."""

    local = False

    def __init__(self, url: str):
        self.app = queue_app(url)
        self.app.open()
        ensure_schema(self.app, url)
        self._closed = False

    def hand_over(
        self, tasks: Sequence[SendTask], log_store: DeliveryLog, now: dt.datetime
    ) -> list[Future[TaskReport]]:
        """Queue `tasks`; their deliveries leave this process's claim in the same transaction."""
        from procrastinate import jobs

        if self._closed:
            raise RuntimeError("the executor is shut down")
        groups = bundles(tasks)
        queued = [
            jobs.Job(
                id=None,
                queue=QUEUE,
                task_name=TASK_NAME,
                lock=None,
                queueing_lock=None,
                task_kwargs={"tasks": [dataclasses.asdict(t) for t in group]},
            )
            for group in groups
        ]
        manager = self.app.job_manager

        def enqueue(connection: Any) -> None:
            manager.batch_defer_jobs(queued, connection=connection)

        keys = [k for t in tasks for k in t.keys]
        log_store.hand_over(keys, now + QUEUE_GRACE, enqueue)
        done: Future[TaskReport] = Future()
        done.set_result(TaskReport({"queued": len(keys)}))
        return [done]

    def submit(self, task: SendTask) -> Future[TaskReport]:
        raise NotImplementedError("QueueExecutor queues through hand_over()")

    def retry_stalled(self, seconds_since_heartbeat: float = STALLED_SECONDS) -> int:
        """Put the jobs of workers that stopped beating (killed, cut off) back in the queue."""
        from procrastinate import sql

        connector = self.app.connector.get_sync_connector()
        rows = connector.execute_query_all(
            sql.queries["select_stalled_jobs_by_heartbeat"],
            seconds_since_heartbeat=seconds_since_heartbeat,
            queue=QUEUE,
            task_name=None,
        )
        for row in rows:
            self.app.job_manager.retry_job_by_id(row["id"], retry_at=dt.datetime.now(dt.UTC))
        return len(rows)

    def shutdown(self, wait: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self.app.close()


@dataclass(frozen=True)
class WorkerStats:
    """One worker process as the queue sees it."""

    id: int
    heartbeat_seconds: float  # since its last heartbeat
    doing: int  # jobs it runs now
    jobs_recent: int  # jobs it finished within the window
    deliveries_recent: int  # deliveries those jobs carried


@dataclass(frozen=True)
class QueueStats:
    """The send queue: depth, age of the oldest waiting job, and the workers' rates."""

    todo: int
    doing: int
    failed: int
    oldest_seconds: float
    window_seconds: float
    workers: tuple[WorkerStats, ...]


_STATS_SQL = {
    "jobs": """
        SELECT status::text AS status, count(*) AS n,
               coalesce(extract(epoch FROM now() - min(e.at)), 0) AS oldest
          FROM procrastinate_jobs j
          LEFT JOIN LATERAL (
               SELECT at FROM procrastinate_events
                WHERE job_id = j.id AND type = 'deferred' LIMIT 1) e ON j.status = 'todo'
         WHERE queue_name = %(queue)s
         GROUP BY status""",
    "workers": """
        SELECT w.id, extract(epoch FROM now() - w.last_heartbeat) AS heartbeat,
               (SELECT count(*) FROM procrastinate_jobs d
                 WHERE d.worker_id = w.id AND d.status = 'doing') AS doing
          FROM procrastinate_workers w ORDER BY w.id""",
    "recent": """
        SELECT j.worker_id, count(*) AS jobs,
               coalesce(sum((SELECT sum(jsonb_array_length(t -> 'keys'))
                               FROM jsonb_array_elements(j.args -> 'tasks') t)), 0) AS deliveries
          FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
         WHERE e.type = 'succeeded' AND e.at > now() - make_interval(secs => %(window)s)
           AND j.queue_name = %(queue)s
         GROUP BY j.worker_id""",
}


def queue_stats(url: str, window_seconds: float = 300.0) -> QueueStats:
    """Read the queue's figures (for `broadcaster workers`, the console and /metrics)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(conninfo(url), row_factory=dict_row, autocommit=True) as conn:
        absent = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NULL AS a").fetchone()
        if absent is None or absent["a"]:
            return QueueStats(0, 0, 0, 0.0, window_seconds, ())
        by_status = {r["status"]: r for r in conn.execute(_STATS_SQL["jobs"], {"queue": QUEUE})}
        recent = {
            r["worker_id"]: r
            for r in conn.execute(_STATS_SQL["recent"], {"queue": QUEUE, "window": window_seconds})
        }
        found = []
        for w in conn.execute(_STATS_SQL["workers"]):
            mine = recent.get(w["id"], {})
            found.append(
                WorkerStats(
                    w["id"],
                    float(w["heartbeat"]),
                    int(w["doing"]),
                    int(mine.get("jobs", 0)),
                    int(mine.get("deliveries", 0)),
                )
            )

    def count(status: str) -> int:
        return int(by_status[status]["n"]) if status in by_status else 0

    oldest = float(by_status["todo"]["oldest"]) if "todo" in by_status else 0.0
    return QueueStats(
        count("todo"), count("doing"), count("failed"), oldest, window_seconds, tuple(found)
    )
