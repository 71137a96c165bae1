"""`DeliveryLog`: the delivery log on SQLite (WAL) or PostgreSQL, written by group commit.

Every write (deliveries, events, occurrence records) goes through one writer thread
per log: callers queue their rows and block; the writer drains the queue, writes
everything waiting in one transaction, commits once and wakes the callers (or
hands each of them the error). Two hundred threads appending one event each cost a
handful of commits, not two hundred, and SQLite never sees two writers from one
process. Reads run on the calling thread from a separate connection pool.

"Committed" means: on PostgreSQL, durable; on SQLite (WAL, synchronous=NORMAL),
safe from a crash of the process, while a power cut may lose the last commits.
Lock waits are bounded by `busy_timeout` (SQLite's busy timeout, PostgreSQL's
lock_timeout); every database failure surfaces as a bilingual `LogStoreError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from broadcaster.channel import ErrorClass, Status
from broadcaster.errors import LogStoreError
from broadcaster.log.engines import (
    RefusedError,
    Target,
    mask,
    migrate,
    parse_url,
    pg_engine,
    sqlite_engine,
    sqlite_path,
)
from broadcaster.log.models import deliveries, delivery_events, messages, occurrences
from broadcaster.log.records import (
    CoverageRow,
    DeliveryRecord,
    DeliveryState,
    Event,
    OccurrenceState,
)

__all__ = ["DeliveryLog", "default_url"]

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for a lock held by another process
UNFINISHED = (Status.PLANNED, Status.SENDING, Status.INTERRUPTED, Status.UNKNOWN)
OCCURRENCE_RECORDS = frozenset({"done", "missed", "skipped", "failed"})
_CHUNK = 900  # rows per IN (...) lookup and per multi-row INSERT
_MAX_GROUP = 2000  # queued writes committed together at most
_ID_CACHE = 200_000  # delivery key -> row id, remembered by the writer
log = logging.getLogger("broadcaster.log")


def default_url(state_dir: Path) -> str:
    """The SQLite log inside the state folder."""
    return f"sqlite:///{Path(state_dir) / 'delivery-log.sqlite3'}"


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _aware(value: dt.datetime, what: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ValueError(f"{what} 需要带时区的时间 must be an aware datetime, got {value!r}")


@dataclass(eq=False)
class _Job:
    """One caller's write: events to append, or a function run inside the group's transaction."""

    events: Sequence[Event] | None = None
    work: Callable[[Connection], Any] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: LogStoreError | None = None
    detached: bool = False  # nobody waits: a failure is kept for flush()


class DeliveryLog:
    """The append-only delivery log. Open with `DeliveryLog.open(url, hash_key=...)`."""

    def __init__(self, target: Target, writer: Engine, reader: Engine, hash_key: bytes) -> None:
        """Use `DeliveryLog.open()`."""
        self.url_display = target.display
        self._target = target
        self._dialect = writer.dialect.name
        self._writer = writer
        self._reader = reader
        self._hash_key = hash_key
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._async_errors: list[LogStoreError] = []  # failures of writes nobody waited for
        self._ids: dict[str, int] = {}  # delivery key -> row id; only the writer thread uses it
        self._thread = threading.Thread(target=self._write_loop, name="delivery-log", daemon=True)
        self._thread.start()

    # --- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str, *, hash_key: bytes, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> DeliveryLog:
        """Open (creating if needed) the log at `url` and migrate it to the newest schema."""
        if not isinstance(hash_key, bytes) or not hash_key:
            raise ValueError("hash_key 须为非空字节串 must be non-empty bytes")
        parsed = parse_url(url)
        path = sqlite_path(parsed, mask(url)) if parsed.get_backend_name() == "sqlite" else None
        target = Target(parsed, path, busy_timeout)
        if path is not None:
            writer = sqlite_engine(parsed, busy_timeout, immediate=True, pool_size=1)
            reader = sqlite_engine(parsed, busy_timeout, immediate=False, pool_size=8)
        else:
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise LogStoreError(
                    f"缺少 PostgreSQL 驱动 PostgreSQL driver missing for {target.display}"
                    " (pip install 'broadcaster[postgres]')"
                ) from None
            writer = pg_engine(parsed, busy_timeout, pool_size=1)
            # Several queries of one read see one snapshot.
            reader = pg_engine(parsed, busy_timeout, pool_size=8, isolation="REPEATABLE READ")
        try:
            migrate(writer)
        except Exception as exc:
            writer.dispose()
            reader.dispose()
            raise target.translate(exc) from exc
        return cls(target, writer, reader, hash_key)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Commit what is queued, stop the writer and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        self._writer.dispose()
        self._reader.dispose()
        if self._async_errors:
            error = self._async_errors[0]
            raise LogStoreError(str(error)) from error.__cause__

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeliveryLog({self.url_display!r})"

    # --- hashing -------------------------------------------------------------------------------

    def recipient_hash(self, address: str) -> str:
        """Keyed hash (HMAC-SHA256, hex) of an address as normalised by the caller (E.164)."""
        return hmac.new(self._hash_key, address.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- occurrences ---------------------------------------------------------------------------

    def begin_occurrence(
        self,
        occurrence_id: str,
        rule_id: str,
        scheduled_at: dt.datetime,
        at: dt.datetime,
        reason: str = "",
    ) -> bool:
        """Record that an occurrence fires; False (nothing written) if it already fired.

        `reason` is kept with the record: a one-off send stores what it sends to, so a
        restart can finish it.
        """
        _aware(scheduled_at, "scheduled_at")
        _aware(at, "at")
        row = _occurrence_row(occurrence_id, rule_id, scheduled_at, "fired", reason, at)
        insert = self._insert(occurrences).on_conflict_do_nothing().returning(occurrences.c.id)
        seen = (
            sa.select(sa.literal(1))
            .where(occurrences.c.occurrence_id == occurrence_id)
            .where(occurrences.c.status.in_(("fired", "done")))
            .limit(1)
        )

        def work(conn: Connection) -> bool:
            if conn.execute(seen).first() is not None:
                return False
            return conn.execute(insert, row).first() is not None

        return bool(self._submit(_Job(work=work)))

    def record_occurrence(
        self,
        occurrence_id: str,
        rule_id: str,
        scheduled_at: dt.datetime,
        status: str,
        reason: str,
        at: dt.datetime,
    ) -> None:
        """Append an occurrence record: done, missed, skipped or failed."""
        if status not in OCCURRENCE_RECORDS:
            raise ValueError(f"未知状态 unknown occurrence status {status!r}")
        _aware(scheduled_at, "scheduled_at")
        _aware(at, "at")
        row = _occurrence_row(occurrence_id, rule_id, scheduled_at, str(status), reason, at)
        self._submit(_Job(work=lambda conn: conn.execute(occurrences.insert(), row)))

    def occurrence_states(self, start: dt.datetime, end: dt.datetime) -> dict[str, OccurrenceState]:
        """Latest record of every occurrence scheduled in [start, end)."""
        o, o2 = occurrences, occurrences.alias("o2")
        newest = sa.select(sa.func.max(o2.c.id)).where(o2.c.occurrence_id == o.c.occurrence_id)
        query = (
            sa.select(o)
            .where(o.c.scheduled_at >= start, o.c.scheduled_at < end)
            .where(o.c.id == newest.scalar_subquery())
            .order_by(o.c.scheduled_at, o.c.occurrence_id)
        )
        rows = self._read(lambda conn: conn.execute(query).all())
        return {
            r.occurrence_id: OccurrenceState(
                r.occurrence_id, r.rule_id, r.scheduled_at, r.status, r.reason, r.at
            )
            for r in rows
        }

    def fired_reason(self, occurrence_id: str) -> str | None:
        """The reason written when an occurrence fired, or None if it never fired."""
        o = occurrences
        query = (
            sa.select(o.c.reason)
            .where(o.c.occurrence_id == occurrence_id, o.c.status == "fired")
            .order_by(o.c.id)
            .limit(1)
        )
        return self._read(lambda conn: conn.execute(query).scalar())

    def last_occurrence_at(self) -> dt.datetime | None:
        """When the latest scheduled occurrence on record was due (ad-hoc `now-*` sends excluded):
        where `run` resumes checking after a restart."""
        o = occurrences
        query = sa.select(sa.func.max(o.c.scheduled_at)).where(
            sa.not_(o.c.rule_id.startswith("now-"))
        )
        return self._read(lambda conn: conn.execute(query).scalar())

    # --- deliveries ----------------------------------------------------------------------------

    def add_deliveries(
        self, records: Sequence[DeliveryRecord], at: dt.datetime
    ) -> dict[str, DeliveryState]:
        """Insert planned deliveries (existing keys untouched) in one transaction.

        Each new delivery gets a PLANNED event at `at`; returns the latest state of
        every key passed, new or old.
        """
        _aware(at, "at")
        texts: dict[str, str] = {}
        rows: dict[str, dict[str, Any]] = {}
        for r in records:
            if r.key in rows:
                continue
            _aware(r.scheduled_at, "scheduled_at")
            if r.text_sha256 not in texts:
                if hashlib.sha256(r.text.encode("utf-8")).hexdigest() != r.text_sha256:
                    raise ValueError(f"文本哈希不符 text_sha256 does not match the text of {r.key}")
                texts[r.text_sha256] = r.text
            rows[r.key] = {c.name: getattr(r, c.name) for c in deliveries.columns if c.name != "id"}
        if not rows:
            return {}
        insert_messages = self._insert(messages).on_conflict_do_nothing()
        insert_deliveries = (
            self._insert(deliveries).on_conflict_do_nothing().returning(deliveries.c.id)
        )
        existing = sa.select(deliveries.c.key)

        def work(conn: Connection) -> int:
            keys = list(rows)
            known: set[str] = set()
            for chunk in _chunks(keys):
                known.update(conn.scalars(existing.where(deliveries.c.key.in_(chunk))))
            fresh = [rows[k] for k in keys if k not in known]
            used = dict.fromkeys(r["text_sha256"] for r in fresh)
            _insert_many(conn, insert_messages, [{"sha256": s, "text": texts[s]} for s in used])
            # ON CONFLICT still guards against another process adding the same keys.
            new_ids = _insert_many(conn, insert_deliveries, fresh)
            planned = [_event_row(i, Status.PLANNED, at) for i in sorted(new_ids)]
            _insert_many(conn, delivery_events.insert(), planned)
            return len(new_ids)

        self._submit(_Job(work=work))
        return self.latest(list(rows))

    def append(self, events: Sequence[Event], *, wait: bool = True) -> None:
        """Append status changes; durable when this returns. Safe from many threads.

        `wait=False` queues them and returns at once (an outcome after its `sending` event,
        say): they are committed in order before any later write, and a failure is raised by
        the next `flush()` or `close()`.
        """
        for e in events:  # checked here, so a bad event never fails someone else's commit
            _aware(e.at, "Event.at")
            Status(e.status)
            if e.error_class is not None:
                ErrorClass(e.error_class)
        if events:
            self._submit(_Job(events=list(events)), wait=wait)

    def flush(self) -> None:
        """Wait until everything queued is committed; raise the first failure of a queued write."""
        self._submit(_Job(work=lambda conn: None))
        with self._lock:
            failed, self._async_errors = self._async_errors, []
        if failed:
            raise LogStoreError(str(failed[0])) from failed[0].__cause__

    def latest(self, keys: Iterable[str]) -> dict[str, DeliveryState]:
        """Latest state of each known key (unknown keys are left out)."""
        keys = list(dict.fromkeys(keys))
        d = deliveries

        def read(conn: Connection) -> dict[str, DeliveryState]:
            found: dict[str, DeliveryState] = {}
            for chunk in _chunks(keys):
                for row in conn.execute(_state_query().where(d.c.key.in_(chunk))):
                    found[row.key] = _state(row)
            return found

        return self._read(read)

    def unfinished(
        self, *, channel_id: str | None = None, statuses: Iterable[Status] = UNFINISHED
    ) -> list[DeliveryState]:
        """Deliveries whose latest event has one of `statuses`, by scheduled time."""
        return self.deliveries(channel=channel_id, status=list(statuses))

    def deliveries(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        rule: str | None = None,
        channel: str | None = None,
        target: str | None = None,
        status: Status | Iterable[Status] | None = None,
        occurrence: str | None = None,
        recipient_hash: str | None = None,
        limit: int | None = None,
    ) -> list[DeliveryState]:
        """Deliveries scheduled in [since, until) matching every filter given, in order."""
        d = deliveries
        query = _filtered(
            _state_query(), since, until, rule, channel, target, occurrence, recipient_hash
        )
        if status is not None:
            wanted = [status] if isinstance(status, Status) else list(status)
            query = query.where(delivery_events.c.status.in_([Status(s).value for s in wanted]))
        query = query.order_by(d.c.scheduled_at, d.c.key).limit(limit)
        return self._read(lambda conn: [_state(r) for r in conn.execute(query)])

    def coverage(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        rule: str | None = None,
        channel: str | None = None,
        target: str | None = None,
        occurrence: str | None = None,
    ) -> list[CoverageRow]:
        """Per occurrence and channel: targeted, and how many reached each latest status."""
        base = _filtered(_state_query(), since, until, rule, channel, target, occurrence).subquery()

        def count(*wanted: Status) -> sa.ColumnElement[Any]:
            hit = base.c.status.in_([s.value for s in wanted])
            return sa.func.coalesce(sa.func.sum(sa.case((hit, 1), else_=0)), 0)

        when = sa.func.min(base.c.scheduled_at)
        query = (
            sa.select(
                base.c.occurrence_id,
                sa.func.min(base.c.rule_id),
                base.c.channel_id,
                when,
                sa.func.count(),
                count(Status.ACCEPTED, Status.DELIVERED),
                count(Status.DELIVERED),
                count(Status.FAILED),
                count(Status.UNKNOWN, Status.SENDING, Status.INTERRUPTED, Status.PLANNED),
                count(Status.SKIPPED),
            )
            .group_by(base.c.occurrence_id, base.c.channel_id)
            .order_by(when, base.c.occurrence_id, base.c.channel_id)
        )
        rows = self._read(lambda conn: conn.execute(query).all())
        return [CoverageRow(r[0], r[1], r[2], r[3], *(int(n) for n in r[4:])) for r in rows]

    def events(self, key: str) -> list[Event]:
        """Every event of one delivery, oldest first."""
        e, d = delivery_events, deliveries
        query = (
            sa.select(e)
            .select_from(e.join(d, d.c.id == e.c.delivery_id))
            .where(d.c.key == key)
            .order_by(e.c.id)
        )
        rows = self._read(lambda conn: conn.execute(query).all())
        return [
            Event(
                key,
                Status(r.status),
                r.at,
                ErrorClass(r.error_class) if r.error_class else None,
                r.reason,
                r.provider_id,
                r.attempt,
            )
            for r in rows
        ]

    def text(self, sha256: str) -> str | None:
        """The exact text with this sha256, if any delivery used it."""
        query = sa.select(messages.c.text).where(messages.c.sha256 == sha256)
        return self._read(lambda conn: conn.execute(query).scalar_one_or_none())

    # --- group commit --------------------------------------------------------------------------

    def _submit(self, job: _Job, *, wait: bool = True) -> Any:
        """Queue a write and wait until it is committed; re-raise its error here."""
        with self._lock:
            if self._closed:
                raise LogStoreError(f"日志已关闭 delivery log is closed: {self.url_display}")
            job.detached = not wait
            self._queue.put(job)
        if not wait:
            return None
        job.done.wait()
        if job.error is not None:
            raise LogStoreError(str(job.error)) from job.error.__cause__
        return job.result

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < _MAX_GROUP:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                group.append(job)
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        """Write a group in one transaction; if one caller's rows are refused, retry one by one."""
        try:
            results = self._write(group)
        except BaseException as exc:
            error = self._target.translate(exc)
            if isinstance(error, RefusedError) and len(group) > 1:
                for job in group:
                    self._commit([job])
                return
            if error is not exc:
                error.__cause__ = exc
            for job in group:
                job.error = error
                if job.detached:
                    log.error("queued log write failed: %s", error)
                    with self._lock:
                        self._async_errors.append(error)
                job.done.set()
            return
        for job, result in zip(group, results, strict=True):
            job.result = result
            job.done.set()

    def _write(self, group: list[_Job]) -> list[Any]:
        results: list[Any] = []
        pending: list[Event] = []
        found: dict[str, int] = {}  # delivery ids looked up in this transaction
        with self._writer.begin() as conn:
            for job in group:
                if job.events is not None:
                    pending.extend(job.events)  # consecutive appends share one INSERT
                    results.append(None)
                    continue
                if pending:
                    _insert_events(conn, pending, self._ids, found)
                    pending = []
                assert job.work is not None
                results.append(job.work(conn))
            if pending:
                _insert_events(conn, pending, self._ids, found)
        if len(self._ids) > _ID_CACHE:
            self._ids.clear()
        self._ids.update(found)  # only once committed: a rolled-back id is never reused
        return results

    # --- helpers -------------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with ON CONFLICT DO NOTHING support)."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self._reader.connect() as conn:
                return fn(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise self._target.translate(exc) from exc


# --- rows and queries ---------------------------------------------------------------------------


def _occurrence_row(
    occurrence_id: str,
    rule_id: str,
    scheduled_at: dt.datetime,
    status: str,
    reason: str,
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "occurrence_id": occurrence_id,
        "rule_id": rule_id,
        "scheduled_at": scheduled_at,
        "status": status,
        "reason": reason,
        "at": at,
    }


def _event_row(
    delivery_id: int,
    status: Status,
    at: dt.datetime,
    error_class: ErrorClass | None = None,
    reason: str = "",
    provider_id: str | None = None,
    attempt: int = 0,
) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "status": Status(status).value,
        "at": at,
        "error_class": ErrorClass(error_class).value if error_class else None,
        "reason": reason,
        "provider_id": provider_id,
        "attempt": attempt,
    }


def _insert_events(
    conn: Connection, events: Sequence[Event], known: Mapping[str, int], found: dict[str, int]
) -> None:
    """Insert events in the order given; the row id is the global order.

    Delivery ids come from `known` (committed earlier) or are looked up and added to `found`.
    """
    keys = list(dict.fromkeys(e.key for e in events))
    ids: dict[str, int] = {k: known[k] for k in keys if k in known}
    ids.update((k, found[k]) for k in keys if k in found)
    lookup = sa.select(deliveries.c.key, deliveries.c.id)
    for chunk in _chunks([k for k in keys if k not in ids]):
        pairs = [(k, i) for k, i in conn.execute(lookup.where(deliveries.c.key.in_(chunk)))]
        ids.update(pairs)
        found.update(pairs)
    missing = [k for k in keys if k not in ids]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise RefusedError(f"日志中没有这些投递 unknown delivery keys: {shown}")
    rows = [
        _event_row(ids[e.key], e.status, e.at, e.error_class, e.reason, e.provider_id, e.attempt)
        for e in events
    ]
    _insert_many(conn, delivery_events.insert(), rows)


def _insert_many(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Run an INSERT over `rows` in chunks; the values it RETURNs, if any."""
    returned: list[Any] = []
    for chunk in _chunks(rows):
        result = conn.execute(stmt, list(chunk))
        if result.returns_rows:
            returned.extend(result.scalars())
    return returned


def _state_query() -> sa.Select[Any]:
    """Deliveries joined to their latest event (max id: one probe of the events index)."""
    d, e, e2 = deliveries, delivery_events, delivery_events.alias("e2")
    newest = (
        sa.select(sa.func.max(e2.c.id))
        .where(e2.c.delivery_id == d.c.id)
        .correlate(d)
        .scalar_subquery()
    )
    return sa.select(
        *(c for c in d.columns if c.name != "id"),
        e.c.status,
        e.c.at.label("status_at"),
        e.c.error_class,
        e.c.reason,
        e.c.provider_id,
        e.c.attempt,
    ).select_from(d.join(e, e.c.id == newest))


def _filtered(
    query: sa.Select[Any],
    since: dt.datetime | None,
    until: dt.datetime | None,
    rule: str | None,
    channel: str | None,
    target: str | None,
    occurrence: str | None,
    recipient_hash: str | None = None,
) -> sa.Select[Any]:
    d = deliveries
    if since is not None:
        query = query.where(d.c.scheduled_at >= since)
    if until is not None:
        query = query.where(d.c.scheduled_at < until)
    equal: Mapping[str, str | None] = {
        "rule_id": rule,
        "channel_id": channel,
        "target_id": target,
        "occurrence_id": occurrence,
        "recipient_hash": recipient_hash,
    }
    for column, value in equal.items():
        if value is not None:
            query = query.where(d.c[column] == value)
    return query


def _state(row: Row[Any]) -> DeliveryState:
    m = row._mapping
    error_class = ErrorClass(m["error_class"]) if m["error_class"] else None
    return DeliveryState(**{**m, "status": Status(m["status"]), "error_class": error_class})
