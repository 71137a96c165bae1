"""`DeliveryLog`: the delivery log on SQLite (WAL) or PostgreSQL.

Writes go through one group-commit writer thread per log (`writer.py`); reads run on
the calling thread from a separate connection pool. Beside the append-only events
the writer keeps, in the same transaction, each delivery's current state: status,
when the engine looks at it next, and which process holds it (its lease). The status
follows the state machine in `broadcaster.vocab`: an event that would regress it, or
repeat it, is refused and not written.

Claims are what keeps two processes from sending one delivery: a delivery is sent
only by the process holding its unexpired lease, taken in one statement that checks
the lease (row locks on PostgreSQL, `BEGIN IMMEDIATE` on SQLite). A process renews
its leases while it lives; when it dies they expire and another process takes over.

"Committed" means: on PostgreSQL, durable; on SQLite (WAL, synchronous=NORMAL),
safe from a crash of the process, while a power cut may lose the last commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broadcaster.errors import LogKeyMismatchError, LogStoreError
from broadcaster.log import chain
from broadcaster.log import queries as q
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
from broadcaster.log.models import (
    deliveries,
    delivery_state,
    feed_cursors,
    leases,
    log_meta,
    messages,
    occurrences,
    payloads,
    relay_hops,
)
from broadcaster.log.records import (
    AreaCoverageRow,
    Claim,
    CoverageRow,
    DeliveryRecord,
    DeliveryState,
    Event,
    LeaseState,
    OccurrenceState,
    roll_up,
)
from broadcaster.log.relay import RelayHop
from broadcaster.log.scrub import Scrubber
from broadcaster.log.writer import GroupWriter, Job
from broadcaster.vocab import UNFINISHED, ErrorClass, OccurrenceStatus, Status, can_follow

__all__ = ["DeliveryLog", "OutcomeTally", "default_url"]

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds a writer waits for a lock held by another process
_CHUNK = 900  # rows per IN (...) lookup and per multi-row INSERT
_ID_CACHE = 200_000  # delivery key -> row id, remembered by the writer
KEY_ID_NAME = "key_id"


DELIVERY_COLUMNS = tuple(c.name for c in deliveries.columns if c.name != "id")
# an event row as the writer inserts it, with each column's PostgreSQL type
EVENT_COLUMNS = (
    ("delivery_id", "bigint"),
    ("status", "text"),
    ("at", "timestamptz"),
    ("error_class", "text"),
    ("reason", "text"),
    ("provider_id", "text"),
    ("attempt", "int"),
    ("step", "int"),
    ("detail", "text"),
    ("actor", "text"),
)
# what a new delivery's current state is written with (the rest take their defaults)
NEW_STATE_COLUMNS = (
    "delivery_id",
    "campaign",
    "channel_id",
    "status",
    "since",
    "next_check",
    "error_class",
    "reason",
    "recipient_hash",
    "lease_owner",
    "lease_until",
)
_STATES_SQL = (
    "SELECT d.key, d.campaign, d.occurrence_id, d.rule_id, d.channel_id, d.endpoint,"
    " d.target_id, d.recipient_display, d.recipient_hash, d.kind, d.template, d.template_sha,"
    " d.text_sha256, d.scheduled_at, d.target_path, d.payload_sha256, s.status, s.since,"
    " s.error_class, s.reason, s.provider_id, s.attempts, s.resends, s.parts_done,"
    " s.next_check, s.lease_owner, s.lease_until"
    " FROM deliveries d JOIN delivery_state s ON s.delivery_id = d.id"
)


class _Rows:
    """A PostgreSQL statement over many rows sent as one array a column: `{rows}` in the
    template becomes `unnest(...) WITH ORDINALITY` (rows kept in order) of the given
    column types; cheaper than executemany (a statement a row) or a VALUES list. The
    arrays go in binary (`%b`): a third of the client's work of quoting them as text."""

    def __init__(self, template: str, columns: Sequence[tuple[str, str]]) -> None:
        names = ", ".join(c for c, _ in columns)
        arrays = ", ".join(f"%b::{t}[]" for _, t in columns)
        self.text = template.replace(
            "{rows}",
            f"(SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS v({names}, n) ORDER BY n)",
        )

    def run(self, driver: Any, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """Run it for every row, `_CHUNK` rows a statement; the rows it returned, if any."""
        out: list[Any] = []
        for chunk in _chunks(rows):
            cursor = driver.execute(self.text, [list(c) for c in zip(*chunk, strict=True)])
            if cursor.description is not None:
                out += cursor.fetchall()
        return out


class _HotSql:
    """The statements every send runs, as plain SQL in the driver's parameter style (the
    writer runs them for a whole group at once; SQLAlchemy's per-row work is skipped)."""

    def __init__(self, dialect: str):
        self.pg = dialect == "postgresql"
        mark = "%s" if self.pg else "?"
        self.mark = mark
        event_names = ", ".join(c for c, _ in EVENT_COLUMNS)
        self.insert_event = (
            f"INSERT INTO delivery_events ({event_names}) VALUES ("
            + ", ".join([mark] * len(EVENT_COLUMNS))
            + ")"
        )
        columns = (
            "status",
            "provider_id",
            "attempts",
            "resends",
            "parts_done",
            "lease_owner",
            "lease_until",
            "since",
            "next_check",
            "error_class",
            "reason",
        )
        self.update_state = (
            "UPDATE delivery_state SET "
            + ", ".join(f"{c} = {mark}" for c in columns)
            + f" WHERE delivery_id = {mark}"
        )
        self.insert_state = (
            f"INSERT INTO delivery_state ({', '.join(NEW_STATE_COLUMNS)}) VALUES ("
            + ", ".join([mark] * len(NEW_STATE_COLUMNS))
            + ")"
        )
        # one statement: the due rows (oldest first, through the index), taken in place
        self.claim_due = (
            f"UPDATE delivery_state SET lease_owner = {mark}, lease_until = {mark}"
            " WHERE delivery_id IN (SELECT delivery_id FROM delivery_state"
            f" WHERE campaign = {mark} AND next_check IS NOT NULL AND next_check <= {mark}"
            f" AND (lease_owner IS NULL OR lease_until < {mark})"
            f" ORDER BY next_check LIMIT {mark}"
            + (" FOR UPDATE SKIP LOCKED" if self.pg else "")
            + ") RETURNING delivery_id"
        )
        names = ", ".join(DELIVERY_COLUMNS)
        self.insert_delivery = (
            f"INSERT INTO deliveries ({names}) VALUES ("
            + ", ".join([mark] * len(DELIVERY_COLUMNS))
            + ")"
        )
        # PostgreSQL: one statement for a whole group, each column an array (executemany
        # would send and account for one statement a row)
        self.insert_events_pg = _Rows(
            f"INSERT INTO delivery_events ({event_names}) {{rows}}", EVENT_COLUMNS
        )
        types = dict(EVENT_COLUMNS) | {
            "attempts": "int",
            "resends": "int",
            "parts_done": "int",
            "lease_owner": "text",
            "lease_until": "timestamptz",
            "since": "timestamptz",
            "next_check": "timestamptz",
        }
        self.update_states_pg = _Rows(
            "UPDATE delivery_state AS s SET "
            + ", ".join(f"{c} = v.{c}" for c in columns)
            + " FROM {rows} AS v WHERE s.delivery_id = v.delivery_id",
            [(c, types[c]) for c in (*columns, "delivery_id")],
        )
        self.insert_deliveries_pg = _Rows(
            f"INSERT INTO deliveries ({names}) {{rows}}"
            " ON CONFLICT (key) DO NOTHING RETURNING id, key",
            [(c, "timestamptz" if c == "scheduled_at" else "text") for c in DELIVERY_COLUMNS],
        )
        self.insert_states_pg = _Rows(
            f"INSERT INTO delivery_state ({', '.join(NEW_STATE_COLUMNS)}) {{rows}}",
            [(c, types.get(c, "text")) for c in NEW_STATE_COLUMNS],
        )
        self._selects: dict[int, str] = {}

    def insert_deliveries(self, driver: Any, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """Insert delivery rows (columns as `DELIVERY_COLUMNS`) whose key is new; their ids.
        On SQLite the writer holds the only write lock: the new rows are those after the
        last id. On PostgreSQL a key another process added meanwhile is left out."""
        if self.pg:
            return {str(k): int(i) for i, k in self.insert_deliveries_pg.run(driver, rows)}
        last = driver.execute("SELECT coalesce(max(id), 0) FROM deliveries").fetchone()[0]
        driver.cursor().executemany(self.insert_delivery, rows)
        found = driver.execute(f"SELECT id, key FROM deliveries WHERE id > {int(last)}")
        return {str(k): int(i) for i, k in found.fetchall()}

    def _many(self, driver: Any, pg: _Rows, sqlite: str, rows: list[tuple[Any, ...]]) -> None:
        """One statement over all rows on PostgreSQL; `executemany` on SQLite."""
        if self.pg:
            pg.run(driver, rows)
        else:
            driver.cursor().executemany(sqlite, rows)

    def write_new_states(self, driver: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert the current states of new deliveries (columns as `insert_state`)."""
        self._many(driver, self.insert_states_pg, self.insert_state, rows)

    def write_events(self, driver: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert event rows (in the column order of `insert_event`), ids in that order."""
        self._many(driver, self.insert_events_pg, self.insert_event, rows)

    def write_states(self, driver: Any, rows: list[tuple[Any, ...]]) -> None:
        """Update current states (rows in the column order of `update_state`, id last)."""
        self._many(driver, self.update_states_pg, self.update_state, rows)

    def select_state(self, n: int) -> str:
        found = self._selects.get(n)
        if found is None:
            found = (
                "SELECT delivery_id, status, provider_id, attempts, resends, parts_done,"
                " lease_owner, lease_until FROM delivery_state WHERE delivery_id IN ("
                + ", ".join([self.mark] * n)
                + ") ORDER BY delivery_id"  # rows locked in one order: no deadlock
                + (" FOR UPDATE" if self.pg else "")
            )
            self._selects[n] = found
        return found

    def states(self, conn: Connection, by: str, values: Sequence[Any]) -> list[DeliveryState]:
        """Deliveries with their current state, by row id ("d.id") or key ("d.key")."""
        found: list[DeliveryState] = []
        when = self.time
        for chunk in _chunks(list(values)):
            if self.pg:  # one array parameter: nothing to parse per value
                sql, params = _STATES_SQL + f" WHERE {by} = ANY(%s)", (list(chunk),)
            else:
                sql = _STATES_SQL + f" WHERE {by} IN (" + ", ".join("?" * len(chunk)) + ")"
                params = tuple(chunk)
            for row in conn.exec_driver_sql(sql, params):
                v: list[Any] = list(row)
                v[13], v[17], v[24], v[26] = when(v[13]), when(v[17]), when(v[24]), when(v[26])
                v[16] = Status(v[16])
                v[18] = ErrorClass(v[18]) if v[18] else None
                found.append(DeliveryState(*v))
        return found

    def time(self, value: Any) -> dt.datetime | None:
        """A stored time, aware and in UTC."""
        if value is None:
            return None
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        stored: dt.datetime = value
        return stored.astimezone(dt.UTC)

    def stamp(self, value: dt.datetime | None) -> Any:
        """A time as the column stores it: timestamptz on PostgreSQL, UTC text on SQLite."""
        if value is None or self.pg:
            return value
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


log = logging.getLogger("broadcaster.log")


def default_url(state_dir: Path) -> str:
    """The SQLite log inside the state folder."""
    return f"sqlite:///{Path(state_dir) / 'delivery-log.sqlite3'}"


def key_id(hash_key: bytes) -> str:
    """A short public fingerprint of the log key: tells keys apart, reveals nothing."""
    return hmac.new(hash_key, b"broadcaster log key id v1", hashlib.sha256).hexdigest()[:16]


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _aware(value: dt.datetime | None, what: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise LogStoreError(f"{what} 需要带时区的时间 must be an aware datetime, got {value!r}")


def _check_events(events: Sequence[Event]) -> None:
    """Refuse a bad event before it is queued: it never fails someone else's commit."""
    for e in events:
        _aware(e.at, "Event.at")
        if e.next_check is not None:
            _aware(e.next_check, "Event.next_check")
        Status(e.status)
        if e.error_class is not None:
            ErrorClass(e.error_class)


@dataclass(frozen=True)
class OutcomeTally:
    """What recording a set of late outcomes came to."""

    recorded: int  # matched and written
    repeated: int  # matched, but the delivery already had that outcome or a later one
    unmatched: int  # no delivery of this channel matches: refused


class DeliveryLog:
    """The append-only delivery log. Open with `DeliveryLog.open(url, hash_key=...)`."""

    def __init__(self, target: Target, writer: Engine, reader: Engine, hash_key: bytes) -> None:
        """Use `DeliveryLog.open()`."""
        self.url_display = target.display
        self.target = target
        self.dialect = writer.dialect.name
        self._writer_engine = writer
        self._reader = reader
        self._hash_key = hash_key
        self.key_id = key_id(hash_key)
        self.scrub = Scrubber()
        self._ids: dict[str, int] = {}  # delivery key -> row id; only the writer thread uses it
        self._sql = _HotSql(self.dialect)
        self._writer = GroupWriter(
            writer,
            apply_events=self._apply_events,
            translate=target.translate,
            refused=RefusedError,
            after_commit=self._after_commit,
            begin=chain.lock,
            before_commit=chain.seal,
        )

    # --- opening and closing -------------------------------------------------------------------

    @classmethod
    def open(
        cls, url: str, *, hash_key: bytes, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> DeliveryLog:
        """Open (creating if needed) the log at `url`, migrate it and check the key id.

        A log written with another key refuses to open: every idempotency key and
        recipient hash would change, and everything would be sent again.
        """
        if not isinstance(hash_key, bytes) or not hash_key:
            raise LogStoreError("日志密钥须为非空字节串 the log key must be non-empty bytes")
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
            reader = pg_engine(parsed, busy_timeout, pool_size=4, isolation="REPEATABLE READ")
        try:
            migrate(writer)
            _check_key_id(writer, key_id(hash_key), target.display)
        except Exception as exc:
            writer.dispose()
            reader.dispose()
            raise target.translate(exc) from exc
        return cls(target, writer, reader, hash_key)

    @property
    def closed(self) -> bool:
        return self._writer._closed

    @property
    def alive(self) -> bool:
        """False once the writer thread died: the process must stop (see `dead`)."""
        return self._writer.alive

    @property
    def dead(self) -> LogStoreError | None:
        return self._writer.dead

    def close(self) -> None:
        """Commit what is queued, stop the writer and close every connection."""
        try:
            self._writer.close()
        finally:
            self._writer_engine.dispose()
            self._reader.dispose()

    def flush(self) -> None:
        """Wait until everything queued is committed; raise the first failure of a queued write."""
        self._writer.flush()

    def __enter__(self) -> DeliveryLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeliveryLog({self.url_display!r})"

    @property
    def url(self) -> sa.URL:
        """The database URL (with its password: never show it; `url_display` is for people),
        for a module that writes a table of its own beside the log (approvals, console)."""
        return self._writer_engine.url

    def connect_url(self) -> str:
        """The full URL, password included, for other parts on the same database (the
        worker engine, shared rate limits); never show it."""
        return self._writer_engine.url.render_as_string(hide_password=False)

    # --- hashing and scrubbing -----------------------------------------------------------------

    def recipient_hash(self, address: str) -> str:
        """Keyed hash (HMAC-SHA256, hex) of an address as normalised by the caller (E.164)."""
        return hmac.new(self._hash_key, address.encode("utf-8"), hashlib.sha256).hexdigest()

    def redact(self, secrets: Iterable[str]) -> None:
        """Secret values (tokens, keys) never to be stored, wherever a provider echoes them."""
        self.scrub.add(secrets)

    # --- occurrences ---------------------------------------------------------------------------

    def begin_occurrence(
        self,
        campaign: str,
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
        row = _occurrence_row(campaign, occurrence_id, rule_id, scheduled_at, "fired", reason, at)
        o = occurrences
        seen = (
            sa.select(sa.literal(1))
            .where(o.c.campaign == campaign, o.c.occurrence_id == occurrence_id)
            .where(o.c.status.in_(("fired", "done")))
            .limit(1)
        )
        insert = self._insert(o).on_conflict_do_nothing().returning(o.c.id)

        def work(conn: Connection, scratch: dict[str, Any]) -> bool:
            if conn.execute(seen).first() is not None:
                return False
            return conn.execute(insert, row).first() is not None

        return bool(self._writer.submit(Job(work=work)))

    def record_occurrence(
        self,
        campaign: str,
        occurrence_id: str,
        rule_id: str,
        scheduled_at: dt.datetime,
        status: str,
        reason: str,
        at: dt.datetime,
    ) -> None:
        """Append an occurrence record: done, missed, skipped or failed."""
        if status not in {s.value for s in OccurrenceStatus} - {"fired"}:
            raise LogStoreError(f"未知状态 unknown occurrence status {status!r}")
        _aware(scheduled_at, "scheduled_at")
        _aware(at, "at")
        row = _occurrence_row(
            campaign, occurrence_id, rule_id, scheduled_at, str(status), self.scrub(reason), at
        )
        self._writer.submit(Job(work=lambda conn, scratch: conn.execute(occurrences.insert(), row)))

    def occurrence_states(
        self, campaign: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, OccurrenceState]:
        """Latest record of every occurrence of `campaign` scheduled in [start, end)."""
        o = occurrences
        query = (
            q.latest_occurrences(campaign)
            .where(o.c.scheduled_at >= start, o.c.scheduled_at < end)
            .order_by(o.c.scheduled_at, o.c.occurrence_id)
        )
        rows = self._read(lambda conn: conn.execute(query).all())
        return {r.occurrence_id: q.occurrence_from_row(r) for r in rows}

    def fired_reason(self, campaign: str, occurrence_id: str) -> str | None:
        """The reason written when an occurrence fired, or None if it never fired."""
        o = occurrences
        query = (
            sa.select(o.c.reason)
            .where(o.c.campaign == campaign, o.c.occurrence_id == occurrence_id)
            .where(o.c.status == "fired")
            .order_by(o.c.id)
            .limit(1)
        )
        return self._read(lambda conn: conn.execute(query).scalar())

    def last_occurrence_at(self, campaign: str) -> dt.datetime | None:
        """When the latest scheduled occurrence of `campaign` on record was due (ad-hoc
        `now-*` sends excluded): where `run` resumes checking after a restart."""
        o = occurrences
        query = sa.select(sa.func.max(o.c.scheduled_at)).where(
            o.c.campaign == campaign, sa.not_(o.c.rule_id.startswith("now-"))
        )
        return self._read(lambda conn: conn.execute(query).scalar())

    def open_sends(self, campaign: str, rule_id: str) -> list[tuple[str, int]]:
        """Occurrences of `rule_id` not finished yet, newest first: (occurrence id, deliveries
        still unfinished). Not finished: fired but not done, or a delivery still unfinished."""
        o, d, s = occurrences, deliveries, delivery_state
        cut_short = q.latest_occurrences(campaign).where(
            o.c.rule_id == rule_id, o.c.status == "fired"
        )
        waiting = (
            sa.select(d.c.occurrence_id, sa.func.count())
            .select_from(d.join(s, s.c.delivery_id == d.c.id))
            .where(s.c.campaign == campaign, d.c.rule_id == rule_id)
            .where(s.c.status.in_([x.value for x in UNFINISHED]))
            .group_by(d.c.occurrence_id)
        )

        def read(conn: Connection) -> list[tuple[str, int]]:
            counts = {occ: int(n) for occ, n in conn.execute(waiting)}
            when = {r.occurrence_id: r.scheduled_at for r in conn.execute(cut_short)}
            for occ in counts:
                when.setdefault(occ, dt.datetime.min.replace(tzinfo=dt.UTC))
            order = sorted(when, key=lambda occ: (when[occ], occ), reverse=True)
            return [(occ, counts.get(occ, 0)) for occ in order]

        return self._read(read)

    # --- deliveries ----------------------------------------------------------------------------

    def add_deliveries(
        self,
        records: Sequence[DeliveryRecord],
        at: dt.datetime,
        *,
        owner: str | None = None,
        lease_until: dt.datetime | None = None,
        skip: Mapping[str, tuple[ErrorClass, str]] | None = None,
    ) -> Claim:
        """Insert planned deliveries (existing keys untouched) in one transaction.

        Each new delivery gets a PLANNED event at `at` (and a SKIPPED one when `skip`
        names it). With `owner`, new deliveries are claimed for it until `lease_until`,
        and existing planned or deferred ones that are due and that no other process holds.
        """
        _aware(at, "at")
        if owner is not None:
            _aware(lease_until, "lease_until")
        skip = skip or {}
        texts: dict[str, str] = {}
        blobs: dict[str, str] = {}
        rows: dict[str, DeliveryRecord] = {}
        for r in records:
            if r.key in rows:
                continue
            _aware(r.scheduled_at, "scheduled_at")
            if r.text_sha256 not in texts:
                if hashlib.sha256(r.text.encode("utf-8")).hexdigest() != r.text_sha256:
                    raise LogStoreError(
                        f"文本哈希不符 text_sha256 does not match the text of {r.key}"
                    )
                texts[r.text_sha256] = r.text
            if r.payload_sha256 and r.payload is not None:
                blobs[r.payload_sha256] = r.payload
            rows[r.key] = r
        if not rows:
            return Claim({}, {})
        pg = self.dialect == "postgresql"
        until = lease_until if owner is not None else None
        stamp = self._sql.stamp

        def work(conn: Connection, scratch: dict[str, Any]) -> tuple[dict[str, int], set[str]]:
            keys = list(rows)
            known = _ids_of(conn, keys)
            fresh = [rows[k] for k in keys if k not in known]
            used = dict.fromkeys(r.text_sha256 for r in fresh)
            bodies = dict.fromkeys(r.payload_sha256 for r in fresh if r.payload_sha256)
            _insert_missing(conn, messages, "sha256", {s: {"text": texts[s]} for s in used})
            _insert_missing(
                conn, payloads, "sha256", {s: {"body": blobs[s]} for s in bodies if s in blobs}
            )
            sql = self._sql
            driver = chain.driver(conn)
            new: dict[str, int] = {}
            for chunk in _chunks(fresh):
                new.update(
                    sql.insert_deliveries(
                        driver,
                        [
                            tuple(
                                stamp(r.scheduled_at) if c == "scheduled_at" else getattr(r, c)
                                for c in DELIVERY_COLUMNS
                            )
                            for r in chunk
                        ],
                    )
                )
            if pg and len(new) < len(fresh):  # another process added some meanwhile
                known.update(_ids_of(conn, [r.key for r in fresh if r.key not in new]))
            stamp_at, stamp_until = sql.stamp(at), sql.stamp(until)
            planned = Status.PLANNED.value
            events: list[tuple[Any, ...]] = []
            states: list[tuple[Any, ...]] = []
            for k, i in new.items():
                r = rows[k]
                events.append((i, planned, stamp_at, None, "", None, 0, 0, None, None))
                if k in skip:
                    error_class, reason = skip[k]
                    cls = error_class.value
                    events.append((i, "skipped", stamp_at, cls, reason, None, 0, 0, None, None))
                    states.append(
                        (
                            i,
                            r.campaign,
                            r.channel_id,
                            "skipped",
                            stamp_at,
                            None,
                            cls,
                            reason,
                            r.recipient_hash,
                            None,
                            None,
                        )
                    )
                else:
                    states.append(
                        (
                            i,
                            r.campaign,
                            r.channel_id,
                            planned,
                            stamp_at,
                            stamp_at,
                            None,
                            "",
                            r.recipient_hash,
                            owner,
                            stamp_until,
                        )
                    )
            if events:
                sql.write_events(driver, events)
                sql.write_new_states(driver, states)
            scratch.setdefault("ids", {}).update(new)
            scratch["ids"].update(known)
            held = {k for k in new if k not in skip} if owner is not None else set()
            if owner is not None and known:
                # only what is due now: a delivery waiting for a time (deferred, or handed to
                # worker processes) stays free for whoever takes it then
                held |= self._claim_ids(
                    conn, known, owner, at, until, (Status.PLANNED, Status.DEFERRED), due_by=at
                )
            return known, held

        known, held = self._writer.submit(Job(work=work))
        states: dict[str, DeliveryState] = {}
        if known:
            states = self.latest(known)
        for k in rows:
            if k not in known:
                r = rows[k]
                status = Status.SKIPPED if k in skip else Status.PLANNED
                reason = skip[k][1] if k in skip else ""
                error_class = skip[k][0] if k in skip else None
                states[k] = _fresh_state(
                    r, status, at, error_class, reason, k in held, owner, until
                )
        return Claim(
            {k: s for k, s in states.items() if k in held},
            {k: s for k, s in states.items() if k not in held},
        )

    def add_relay_hops(self, hops: Sequence[RelayHop]) -> None:
        """Record where relayed deliveries stand (parent, level, deadline); once per key."""
        for h in hops:
            _aware(h.due_at, "due_at")
        rows = {
            h.key: {
                "campaign": h.campaign,
                "occurrence_id": h.occurrence_id,
                "parent_key": h.parent_key,
                "level": h.level,
                "level_tag": h.level_tag,
                "due_at": h.due_at,
                "person": h.person,
                "confirm": h.confirm,
            }
            for h in hops
        }
        if rows:
            self._writer.submit(
                Job(work=lambda conn, scratch: _insert_missing(conn, relay_hops, "key", rows))
            )

    def append(
        self,
        events: Sequence[Event],
        *,
        wait: bool = True,
        on_error: Callable[[], None] | None = None,
    ) -> list[str | None]:
        """Append status changes; durable when this returns. Safe from many threads.

        Returns, per event, None when written or why it was refused (the status may not
        follow the delivery's current one). `wait=False` queues them and returns at once:
        they are committed in order before any later write, and a failure is raised by
        the next `flush()` or `close()` (and `on_error` is called at once).
        """
        _check_events(events)
        if not events:
            return []
        result = self._writer.submit(Job(events=list(events), on_error=on_error), wait=wait)
        if result is None:
            return [None] * len(events)
        return [None if isinstance(o, int) else o for o in result]

    def start_attempt(
        self,
        events: Sequence[Event],
        *,
        owner: str,
        lease_until: dt.datetime,
    ) -> dict[str, int]:
        """Write SENDING events for the deliveries `owner` still holds; return their keys, each
        with the number of this attempt.

        The lease is checked and extended in the same transaction: a delivery another
        process took over meanwhile, or one already sending or answered, is left alone.
        Many callers' attempts are written together, one commit for all of them.
        """
        _aware(lease_until, "lease_until")
        _check_events(events)
        if not events:
            return {}
        outcome = self._writer.submit(Job(events=list(events), lease=(owner, lease_until)))
        return {e.key: o for e, o in zip(events, outcome, strict=True) if isinstance(o, int)}

    def claim(
        self,
        keys: Sequence[str],
        *,
        owner: str,
        now: dt.datetime,
        lease_until: dt.datetime,
        statuses: Iterable[Status] = UNFINISHED,
    ) -> Claim:
        """Take the leases of `keys` that no other live process holds and whose status is
        one of `statuses`; return what is now held and the rest, with their states."""

        def work(conn: Connection, scratch: dict[str, Any]) -> set[str]:
            ids = self._known_ids(conn, keys, scratch)
            return self._claim_ids(conn, ids, owner, now, lease_until, statuses)

        held = self._writer.submit(Job(work=work, chained=False))
        states = self.latest(keys)
        return Claim(
            {k: s for k, s in states.items() if k in held},
            {k: s for k, s in states.items() if k not in held},
        )

    def claim_due(
        self,
        campaign: str,
        *,
        owner: str,
        now: dt.datetime,
        lease_until: dt.datetime,
        limit: int = 1000,
    ) -> list[DeliveryState]:
        """Claim deliveries of `campaign` whose next check is due and that nobody holds."""
        _aware(now, "now")
        _aware(lease_until, "lease_until")
        sql = self._sql
        stamp_now = sql.stamp(now)
        params = (owner, sql.stamp(lease_until), campaign, stamp_now, stamp_now, limit)

        def work(conn: Connection, scratch: dict[str, Any]) -> list[int]:
            return [row[0] for row in conn.exec_driver_sql(sql.claim_due, params)]

        ids = self._writer.submit(Job(work=work, chained=False))
        if not ids:
            return []
        found = self._read(lambda conn: self._sql.states(conn, "d.id", ids))
        return sorted(found, key=lambda x: (x.next_check or x.status_at, x.key))

    def renew_leases(self, owner: str, until: dt.datetime) -> int:
        """Extend every lease `owner` holds (deliveries and leadership); the count renewed."""
        _aware(until, "until")
        s = delivery_state

        def work(conn: Connection, scratch: dict[str, Any]) -> int:
            result = conn.execute(
                sa.update(s).where(s.c.lease_owner == owner).values(lease_until=until)
            )
            return int(result.rowcount or 0)

        return int(self._writer.submit(Job(work=work, chained=False)))

    def release_leases(self, owner: str, keys: Sequence[str] | None = None) -> None:
        """Give up the leases `owner` holds (on `keys` only, when given)."""
        s = delivery_state

        def work(conn: Connection, scratch: dict[str, Any]) -> None:
            base = sa.update(s).where(s.c.lease_owner == owner)
            free = {"lease_owner": None, "lease_until": None}
            if keys is None:
                conn.execute(base.values(**free))
                return
            ids = self._known_ids(conn, keys, scratch)
            for chunk in _chunks(list(ids.values())):
                conn.execute(base.where(s.c.delivery_id.in_(chunk)).values(**free))

        self._writer.submit(Job(work=work, chained=False))

    def hand_over(
        self,
        keys: Sequence[str],
        recheck_at: dt.datetime,
        enqueue: Callable[[Any], None] | None = None,
    ) -> None:
        """Give deliveries to other processes: their leases go, and the sweep looks at them
        again at `recheck_at` only if nobody took them. `enqueue(dbapi_connection)` runs in
        the same transaction: a job queue in this database gets the tasks exactly when the
        log lets them go."""
        _aware(recheck_at, "recheck_at")
        s = delivery_state

        def work(conn: Connection, scratch: dict[str, Any]) -> None:
            ids = self._known_ids(conn, keys, scratch)
            for chunk in _chunks(list(ids.values())):
                conn.execute(
                    sa.update(s)
                    .where(s.c.delivery_id.in_(chunk))
                    .values(next_check=recheck_at, lease_owner=None, lease_until=None)
                )
            if enqueue is not None:
                enqueue(conn.connection.driver_connection)

        self._writer.submit(Job(work=work))

    def set_next_check(self, keys: Sequence[str], when: dt.datetime | None) -> None:
        """When the engine looks at these deliveries again (None: never); no event is written."""
        s = delivery_state

        def work(conn: Connection, scratch: dict[str, Any]) -> None:
            ids = self._known_ids(conn, keys, scratch)
            for chunk in _chunks(list(ids.values())):
                conn.execute(
                    sa.update(s)
                    .where(s.c.delivery_id.in_(chunk))
                    .values(next_check=when, lease_owner=None, lease_until=None)
                )

        self._writer.submit(Job(work=work, chained=False))

    # --- late outcomes -------------------------------------------------------------------------

    def record_outcomes(
        self,
        channel_id: str,
        outcomes: Sequence[tuple[Event | None, str | None, str | None, str | None]],
        at: dt.datetime,
        *,
        feed: str | None = None,
        cursor: str | None = None,
    ) -> OutcomeTally:
        """Match late outcomes of one channel to deliveries and write them (with a feed's
        cursor, in the same transaction).

        Each item is (event template, key, provider id, recipient hash); the event's key is
        filled in from the match: by key, else provider id and recipient hash, else the
        provider id alone when only one delivery of the channel has it.
        """
        _aware(at, "at")

        def work(conn: Connection, scratch: dict[str, Any]) -> OutcomeTally:
            matched = _match_outcomes(conn, channel_id, outcomes)
            events = [
                _replace_key(template, key)
                for (template, *_), key in zip(outcomes, matched, strict=True)
                if key is not None and template is not None
            ]
            results = self._apply_events(conn, events, scratch, [None] * len(events))
            if feed is not None:
                _upsert(
                    conn,
                    self._insert(feed_cursors),
                    "name",
                    {"name": feed, "cursor": cursor, "at": at},
                )
            recorded = sum(1 for r in results if isinstance(r, int))
            return OutcomeTally(
                recorded, len(results) - recorded, sum(1 for k in matched if k is None)
            )

        tally: OutcomeTally = self._writer.submit(Job(work=work))
        return tally

    def write(self, fn: Callable[[Connection], T], *, wait: bool = True) -> T | None:
        """Run a write function in the writer's transaction (the tables of a feature that
        records beside the deliveries, e.g. LED fetches); without `wait`, queue it."""

        def work(conn: Connection, scratch: dict[str, Any]) -> T:
            return fn(conn)

        result: T | None = self._writer.submit(Job(work=work), wait=wait)
        return result

    def feed_cursor(self, name: str) -> str | None:
        """Where the outcome feed `name` resumes (None: from its start)."""
        query = sa.select(feed_cursors.c.cursor).where(feed_cursors.c.name == name)
        return self._read(lambda conn: conn.execute(query).scalar())

    # --- leadership ----------------------------------------------------------------------------

    def acquire_lease(
        self, name: str, owner: str, *, now: dt.datetime, until: dt.datetime, info: str
    ) -> LeaseState:
        """Take or renew the lease `name` unless another owner holds it unexpired."""
        _aware(now, "now")
        _aware(until, "until")
        table = leases
        stmt = self._insert(table).values(name=name, owner=owner, until=until, info=info)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={"owner": owner, "until": until, "info": info},
            where=sa.or_(table.c.until < now, table.c.owner == owner),
        ).returning(table.c.owner)
        current = sa.select(table).where(table.c.name == name)

        def work(conn: Connection, scratch: dict[str, Any]) -> LeaseState:
            got = conn.execute(stmt).first() is not None
            row = conn.execute(current).one()
            return LeaseState(name, row.owner, row.until, row.info, got)

        result: LeaseState = self._writer.submit(Job(work=work, chained=False))
        return result

    def release_lease(self, name: str, owner: str) -> None:
        table = leases
        expire = (
            sa.update(table)
            .where(table.c.name == name, table.c.owner == owner)
            .values(until=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        )
        self._writer.submit(Job(work=lambda conn, scratch: conn.execute(expire), chained=False))

    def lease(self, name: str) -> LeaseState | None:
        query = sa.select(leases).where(leases.c.name == name)
        row = self._read(lambda conn: conn.execute(query).first())
        return None if row is None else LeaseState(name, row.owner, row.until, row.info, False)

    # --- reads ---------------------------------------------------------------------------------

    def latest(self, keys: Iterable[str]) -> dict[str, DeliveryState]:
        """Current state of each known key (unknown keys are left out)."""
        wanted = list(dict.fromkeys(keys))
        found = self._read(lambda conn: self._sql.states(conn, "d.key", wanted))
        return {state.key: state for state in found}

    def unfinished(
        self, campaign: str | None = None, *, channel_id: str | None = None
    ) -> list[DeliveryState]:
        """Deliveries not finished yet (planned, deferred, sending, interrupted, unknown), by
        scheduled time. Found through the state index, never by scanning deliveries."""
        s = delivery_state
        ids = sa.select(s.c.delivery_id).where(s.c.status.in_([x.value for x in UNFINISHED]))
        if campaign is not None:
            ids = ids.where(s.c.campaign == campaign)
        if channel_id is not None:
            ids = ids.where(s.c.channel_id == channel_id)

        def read(conn: Connection) -> list[DeliveryState]:
            found = self._sql.states(conn, "d.id", list(conn.scalars(ids)))
            return sorted(found, key=lambda x: (x.scheduled_at, x.key))

        return self._read(read)

    def deliveries(
        self,
        *,
        campaign: str | None = None,
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
        wanted = [status] if isinstance(status, Status) else status
        query = q.filtered(
            q.state_query(),
            campaign=campaign,
            since=since,
            until=until,
            rule=rule,
            channel=channel,
            target=target,
            occurrence=occurrence,
            recipient_hash=recipient_hash,
            status=wanted,
        )
        query = query.order_by(deliveries.c.scheduled_at, deliveries.c.key).limit(limit)
        return self._read(lambda conn: [q.state_from_row(r) for r in conn.execute(query)])

    def coverage(
        self,
        *,
        campaign: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        rule: str | None = None,
        channel: str | None = None,
        target: str | None = None,
        occurrence: str | None = None,
    ) -> list[CoverageRow]:
        """Per occurrence and channel: targeted, and how many reached each current status."""
        base = q.filtered(
            q.state_query(),
            campaign=campaign,
            since=since,
            until=until,
            rule=rule,
            channel=channel,
            target=target,
            occurrence=occurrence,
        )
        rows = self._read(lambda conn: conn.execute(q.coverage_query(base)).all())
        return [q.coverage_row(r) for r in rows]

    def coverage_by_area(
        self,
        *,
        depth: int | None = None,
        campaign: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        rule: str | None = None,
        channel: str | None = None,
        target: str | None = None,
        occurrence: str | None = None,
    ) -> list[AreaCoverageRow]:
        """Per send, channel and area of the hierarchy (`depth` levels; None: every level)."""
        base = q.filtered(
            q.state_query(),
            campaign=campaign,
            since=since,
            until=until,
            rule=rule,
            channel=channel,
            target=target,
            occurrence=occurrence,
        )
        rows = self._read(lambda conn: conn.execute(q.area_coverage_query(base)).all())
        return roll_up((q.area_coverage_row(r) for r in rows), depth)

    def events(self, key: str) -> list[Event]:
        """Every event of one delivery, oldest first."""
        rows = self._read(lambda conn: conn.execute(q.history_query(key)).all())
        return [q.event_from_row(key, r) for r in rows]

    def text(self, sha256: str) -> str | None:
        """The exact text with this sha256, if any delivery used it (None once pruned)."""
        query = sa.select(messages.c.text).where(messages.c.sha256 == sha256)
        return self._read(lambda conn: conn.execute(query).scalar_one_or_none()) or None

    def payload(self, sha256: str) -> dict[str, Any] | None:
        """The params, parts and artefacts logged with a message, if any (None once pruned)."""
        query = sa.select(payloads.c.body).where(payloads.c.sha256 == sha256)
        body = self._read(lambda conn: conn.execute(query).scalar_one_or_none())
        return json.loads(body) if body else None  # '' once pruned

    # --- tamper evidence and retention (see `chain.py`) ----------------------------------------

    def chain_head(self) -> tuple[str, int]:
        """The hash of the chain's last link and how many records it covers: what every
        report and `verify-log` print, and what an anchor writes down."""
        found = self._read(chain.head)
        if found is None:
            raise LogStoreError("日志没有哈希链 the delivery log has no hash chain")
        return found.hash, found.records

    def chain_identity(self) -> tuple[str, int, str, int]:
        """(log id, link seq, head hash, records) in one snapshot: what an anchor holds."""

        def read(conn: Connection) -> tuple[str, int, str, int]:
            with conn.begin():
                found = chain.head(conn)
                if found is None:
                    raise LogStoreError("日志没有哈希链 the delivery log has no hash chain")
                return chain.log_id(conn), found.seq, found.hash, found.records

        return self._read(read)

    def verify(
        self,
        anchors: Sequence[chain.Anchor] = (),
        *,
        progress: Callable[[int], None] | None = None,
    ) -> chain.Verdict:
        """Check the whole log against its hash chain (and anchors), in one snapshot,
        streaming; the verdict names the first break."""
        # committed before the snapshot: what this process queued is in the chain
        self.flush()

        def read(conn: Connection) -> chain.Verdict:
            with conn.begin():
                return chain.verify(conn, anchors, progress=progress)

        return self._read(read)

    def prune(self, cutoff: dt.datetime, at: dt.datetime, actor: str) -> chain.PruneTally:
        """Drop the texts, payloads and masked numbers of deliveries scheduled before `cutoff`
        (hashes and counts stay; the chain still verifies); recorded as a chained prune."""
        _aware(cutoff, "cutoff")
        _aware(at, "at")
        tally: chain.PruneTally = self._writer.submit(
            Job(work=lambda conn, scratch: chain.begin_prune(conn, cutoff, at, actor[:64]))
        )
        while (
            self._writer.submit(  # in chunks: other writers never wait long
                Job(work=lambda conn, scratch: chain.prune_displays(conn, cutoff))
            )
            == chain.PRUNE_CHUNK
        ):
            pass
        return tally

    # --- the writer's side ---------------------------------------------------------------------

    def _after_commit(self, scratch: dict[str, Any]) -> None:
        ids = scratch.get("ids")
        if ids:
            if len(self._ids) > _ID_CACHE:
                self._ids.clear()
            self._ids.update(ids)  # only once committed: a rolled-back id is never reused

    def _known_ids(
        self, conn: Connection, keys: Iterable[str], scratch: dict[str, Any]
    ) -> dict[str, int]:
        """Row ids of keys (from the cache, or looked up); unknown keys are left out."""
        wanted = list(dict.fromkeys(keys))
        local: dict[str, int] = scratch.setdefault("ids", {})
        ids = {k: self._ids.get(k) or local[k] for k in wanted if k in self._ids or k in local}
        missing = [k for k in wanted if k not in ids]
        if missing:
            found = _ids_of(conn, missing)
            ids.update(found)
            local.update(found)
        return ids

    def _apply_events(
        self,
        conn: Connection,
        events: list[Event],
        scratch: dict[str, Any],
        leases: list[tuple[str, dt.datetime] | None],
    ) -> list[int | str]:
        """Write events that follow their delivery's current status; update its state.

        Returns per event the attempt it belongs to (written) or why it was refused: the
        status may not follow, or (with a lease condition) another owner holds the lease.
        Events of unknown keys fail the caller's write (RefusedError): a bug, not a race.
        The hot path of every send: plain SQL, one statement per kind for the whole group.
        """
        ids = self._known_ids(conn, (e.key for e in events), scratch)
        missing = [e.key for e in events if e.key not in ids]
        if missing:
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise RefusedError(f"日志中没有这些投递 unknown delivery keys: {shown}")
        sql = self._sql
        driver = chain.driver(conn)
        current: dict[int, list[Any]] = {}
        for chunk in _chunks(list(set(ids.values()))):
            for row in driver.execute(sql.select_state(len(chunk)), tuple(chunk)).fetchall():
                current[row[0]] = list(row[1:])
        inserts: list[tuple[Any, ...]] = []
        changed: dict[int, list[Any]] = {}
        outcome: list[int | str] = []
        scrub, stamp = self.scrub, sql.stamp
        for e, lease in zip(events, leases, strict=True):
            i = ids[e.key]
            # status, provider_id, attempts, resends, parts_done, lease_owner, lease_until
            state = current[i]
            now_status = Status(state[0])
            if lease is not None and state[5] != lease[0]:
                outcome.append("another process holds it")
                continue
            if not can_follow(now_status, e.status):
                outcome.append(f"{now_status.value} → {e.status.value}")
                continue
            sending = e.status is Status.SENDING
            attempts = state[2] + 1 if sending else state[2]
            at = stamp(e.at)
            reason = scrub(e.reason, 300) if e.reason else ""
            error_class = e.error_class.value if e.error_class else None
            inserts.append(
                (
                    i,
                    e.status.value,
                    at,
                    error_class,
                    reason,
                    e.provider_id,
                    e.attempt or attempts,
                    e.step,
                    scrub(e.detail) if e.detail else None,
                    e.actor or None,
                )
            )
            keep = sending or e.keep_lease
            if sending and now_status in (Status.UNKNOWN, Status.INTERRUPTED, Status.UNRESOLVED):
                state[3] += 1
            state[0] = e.status.value
            state[1] = e.provider_id or state[1]
            state[2] = attempts
            if not sending:
                state[4] = max(state[4], e.step)
            state[5] = state[5] if keep else None
            state[6] = (stamp(lease[1]) if lease else state[6]) if keep else None
            changed[i] = [*state, at, stamp(e.next_check), error_class, reason]
            outcome.append(attempts)
        if inserts:
            sql.write_events(driver, inserts)
        if changed:
            sql.write_states(driver, [(*values, i) for i, values in changed.items()])
        return outcome

    def _claim_ids(
        self,
        conn: Connection,
        ids: Mapping[str, int],
        owner: str,
        now: dt.datetime,
        until: dt.datetime | None,
        statuses: Iterable[Status],
        due_by: dt.datetime | None = None,
    ) -> set[str]:
        """Claim deliveries in `statuses` nobody else holds (and, with `due_by`, whose next
        check is not later)."""
        s = delivery_state
        wanted = [x.value for x in statuses]
        by_id = {i: k for k, i in ids.items()}
        held: set[str] = set()
        for chunk in _chunks(list(by_id)):
            take = (
                sa.update(s)
                .where(s.c.delivery_id.in_(chunk), s.c.status.in_(wanted))
                .where(
                    sa.or_(
                        s.c.lease_owner.is_(None), s.c.lease_until < now, s.c.lease_owner == owner
                    )
                )
                .values(lease_owner=owner, lease_until=until)
                .returning(s.c.delivery_id)
            )
            if due_by is not None:
                take = take.where(sa.or_(s.c.next_check.is_(None), s.c.next_check <= due_by))
            held.update(by_id[i] for i in conn.scalars(take))
        return held

    # --- helpers -------------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with ON CONFLICT support)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def read(self, fn: Callable[[Connection], T]) -> T:
        """Run a read-only query function on a pooled reader connection (the tables are in
        `broadcaster.log.models`); database failures come back as LogStoreError."""
        return self._read(fn)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self._reader.connect() as conn:
                return fn(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise self.target.translate(exc) from exc


# --- rows ---------------------------------------------------------------------------------------


def _check_key_id(engine: Engine, mine: str, where: str) -> None:
    """Record the key id in a new log; refuse a log written with another key."""
    with engine.begin() as conn:
        found = conn.execute(
            sa.select(log_meta.c.value).where(log_meta.c.name == KEY_ID_NAME)
        ).scalar()
        if found is None:
            has_rows = conn.execute(sa.select(deliveries.c.id).limit(1)).first() is not None
            conn.execute(log_meta.insert().values(name=KEY_ID_NAME, value=mine))
            if has_rows:
                log.warning("log %s predates key ids: recording key id %s", where, mine)
            return
    if found != mine:
        raise LogKeyMismatchError(
            f"日志密钥不符 the delivery log {where} was written with key id {found}, but this"
            f" process has key id {mine}: every idempotency key would change and everything"
            " would be sent again. Set BROADCASTER_LOG_KEY (or the key file) to the key the log"
            " was created with."
        )


def _occurrence_row(
    campaign: str,
    occurrence_id: str,
    rule_id: str,
    scheduled_at: dt.datetime,
    status: str,
    reason: str,
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "campaign": campaign,
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
    step: int = 0,
    detail: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "status": Status(status).value,
        "at": at,
        "error_class": ErrorClass(error_class).value if error_class else None,
        "reason": reason,
        "provider_id": provider_id,
        "attempt": attempt,
        "step": step,
        "detail": detail,
        "actor": actor,
    }


def _state_row(
    delivery_id: int,
    campaign: str,
    channel_id: str,
    recipient_hash: str,
    status: Status,
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "delivery_id": delivery_id,
        "campaign": campaign,
        "channel_id": channel_id,
        "recipient_hash": recipient_hash,
        "status": status.value,
        "since": at,
        "next_check": None,
        "error_class": None,
        "reason": "",
        "provider_id": None,
        "attempts": 0,
        "resends": 0,
        "parts_done": 0,
        "lease_owner": None,
        "lease_until": None,
    }


def _fresh_state(
    r: DeliveryRecord,
    status: Status,
    at: dt.datetime,
    error_class: ErrorClass | None,
    reason: str,
    held: bool,
    owner: str | None,
    until: dt.datetime | None,
) -> DeliveryState:
    return DeliveryState(
        key=r.key,
        campaign=r.campaign,
        occurrence_id=r.occurrence_id,
        rule_id=r.rule_id,
        channel_id=r.channel_id,
        endpoint=r.endpoint,
        target_id=r.target_id,
        recipient_display=r.recipient_display,
        recipient_hash=r.recipient_hash,
        kind=r.kind,
        template=r.template,
        template_sha=r.template_sha,
        text_sha256=r.text_sha256,
        scheduled_at=r.scheduled_at,
        target_path=r.target_path,
        payload_sha256=r.payload_sha256,
        status=status,
        status_at=at,
        error_class=error_class,
        reason=reason,
        provider_id=None,
        attempt=0,
        resends=0,
        parts_done=0,
        next_check=at if status is Status.PLANNED else None,
        lease_owner=owner if held else None,
        lease_until=until if held else None,
    )


_IDS_OF = sa.select(deliveries.c.key, deliveries.c.id).where(
    deliveries.c.key.in_(sa.bindparam("keys", expanding=True))
)


def _ids_of(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(list(keys)):
        found.update((k, i) for k, i in conn.execute(_IDS_OF, {"keys": list(chunk)}))
    return found


def _insert_missing(
    conn: Connection, table: sa.Table, key: str, rows: Mapping[str, Mapping[str, Any]]
) -> None:
    """Insert rows whose key is not there yet (no REPLACE, no conflict: the writer is alone);
    fill again a body a retention prune emptied."""
    if not rows:
        return
    column = table.c[key]
    others = [c for c in table.c if c.name != key]
    body = others[0] if len(others) == 1 else None  # texts and payloads: one body each
    there: set[str] = set()
    emptied: list[str] = []  # bodies a retention prune emptied: filled again when used again
    for chunk in _chunks(list(rows)):
        if body is None:
            there.update(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
            continue
        for k, value in conn.execute(sa.select(column, body).where(column.in_(chunk))):
            there.add(k)
            if value == "":
                emptied.append(k)
    for k in emptied:
        assert body is not None
        conn.execute(sa.update(table).where(column == k).values({body.name: rows[k][body.name]}))
    fresh = [{key: k, **v} for k, v in rows.items() if k not in there]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        _insert_many(conn, pg_insert(table).on_conflict_do_nothing(), fresh)
    else:
        _insert_many(conn, table.insert(), fresh)


def _insert_many(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for chunk in _chunks(rows):
        conn.execute(stmt, list(chunk))


def _upsert(conn: Connection, insert: Any, key: str, row: Mapping[str, Any]) -> None:
    stmt = insert.values(**row).on_conflict_do_update(
        index_elements=[key], set_={k: v for k, v in row.items() if k != key}
    )
    conn.execute(stmt)


def _replace_key(template: Event, key: str) -> Event:
    return replace(template, key=key)


def _match_outcomes(
    conn: Connection,
    channel_id: str,
    outcomes: Sequence[tuple[Event | None, str | None, str | None, str | None]],
) -> list[str | None]:
    """The delivery key each outcome belongs to, or None (see `record_outcomes`)."""
    d, s = deliveries, delivery_state
    keys = [k for _, k, _, _ in outcomes if k]
    by_key: set[str] = set()
    for chunk in _chunks(keys):
        by_key.update(
            conn.scalars(sa.select(d.c.key).where(d.c.key.in_(chunk), d.c.channel_id == channel_id))
        )
    provider_ids = [p for _, k, p, _ in outcomes if p and k not in by_key]
    by_provider: dict[str, list[tuple[str, str]]] = {}
    for chunk in _chunks(list(dict.fromkeys(provider_ids))):
        query = (
            sa.select(s.c.provider_id, s.c.recipient_hash, d.c.key)
            .select_from(s.join(d, d.c.id == s.c.delivery_id))
            .where(s.c.provider_id.in_(chunk), s.c.channel_id == channel_id)
        )
        for pid, rhash, key in conn.execute(query):
            by_provider.setdefault(pid, []).append((rhash, key))
    out: list[str | None] = []
    for _, key, pid, rhash in outcomes:
        if key and key in by_key:
            out.append(key)
            continue
        candidates = by_provider.get(pid or "", [])
        if rhash is not None:
            hit = [k for h, k in candidates if h == rhash]
            out.append(hit[0] if len(hit) == 1 else None)
        else:
            out.append(candidates[0][1] if len(candidates) == 1 else None)
    return out
