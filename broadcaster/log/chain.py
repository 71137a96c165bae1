"""The hash chain over the delivery log: tamper evidence that survives a rewrite.

Chained tables (rows only ever inserted; each row is covered exactly once):
    occurrences, deliveries, delivery_events   what was planned and what happened
    console_actions, console_logins            what people did in the console, login attempts
    log_prunes                                 each retention prune: when, and its cutoff

Left out: the derived, current-state tables (`delivery_state`, `leases`, `feed_cursors`,
`console_users`, `link_uses`) which change in place or may be rebuilt from the events,
and the content-addressed `messages` and `payloads`, keyed by the sha256 of their body:
a delivery row carries that sha256 (chained), and `verify` checks each body against its
key, so a body edited is caught; a prune empties a body ('') and its hash stays behind.

Canonical form of a row: a JSON array of its columns in a fixed order, times as
"YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC), NULL as `null`, booleans as 0/1, text verbatim.
`deliveries.recipient_display` (the masked number) enters as its sha256, so a prune may
drop it (`pruned:<sha256>` is left in its place) and the row still hashes the same.
A row's hash is sha256("<table>\\0<canonical JSON>"), without its id.

One link per committing transaction that wrote chained rows (a written batch of the
group writer, a console write, a prune): for each table the ids it covers (as runs), a
digest (sha256 over id and row hash, in id order) and the first 8 bytes of every row
hash (to name the row that breaks); the link's hash is sha256(prev hash, canonical
link, sha256 of those short hashes). Links are serialised through the one-row
`log_chain_head`: its row is locked (SELECT ... FOR UPDATE) at the start of every write
transaction on PostgreSQL, so ids grow in commit order and writers never fork the
chain; on SQLite `BEGIN IMMEDIATE` already gives one writer at a time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

__all__ = [
    "CHAINED",
    "GENESIS_PREV",
    "PRUNED",
    "Anchor",
    "Break",
    "ChainHead",
    "Verdict",
    "display_digest",
    "driver",
    "head",
    "lock",
    "seal",
    "seal_genesis",
    "shown_display",
    "verify",
]

log = logging.getLogger("broadcaster.log")

GENESIS_PREV = "0" * 64
PRUNED = "pruned:"  # recipient_display after a retention prune: "pruned:<sha256 of it>"
SHORT = 8  # bytes of each row hash kept in its link, to name the row that breaks
PAGE = 5000  # rows fetched at a time while sealing or verifying
VERSION = 1

TIME = "time"
BOOL = "bool"
DISPLAY = "display"
PLAIN = ""


@dataclass(frozen=True)
class ChainedTable:
    """A chained table: its columns in canonical order (id first, not hashed) and how to
    read each one."""

    name: str
    columns: tuple[tuple[str, str], ...]

    def select(self, dialect: str) -> str:
        """The query reading its rows; PostgreSQL formats times in canonical form itself
        (cheaper than a datetime per value in Python)."""
        names = ", ".join(
            _PG_TIME.format(c) if kind == TIME and dialect == "postgresql" else c
            for c, kind in self.columns
        )
        return f"SELECT id, {names} FROM {self.name}"


_PG_TIME = """to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


CHAINED: tuple[ChainedTable, ...] = (
    ChainedTable(
        "occurrences",
        (
            ("campaign", PLAIN),
            ("occurrence_id", PLAIN),
            ("rule_id", PLAIN),
            ("scheduled_at", TIME),
            ("status", PLAIN),
            ("reason", PLAIN),
            ("at", TIME),
        ),
    ),
    ChainedTable(
        "deliveries",
        (
            ("key", PLAIN),
            ("campaign", PLAIN),
            ("occurrence_id", PLAIN),
            ("rule_id", PLAIN),
            ("channel_id", PLAIN),
            ("endpoint", PLAIN),
            ("target_id", PLAIN),
            ("recipient_display", DISPLAY),
            ("recipient_hash", PLAIN),
            ("kind", PLAIN),
            ("template", PLAIN),
            ("template_sha", PLAIN),
            ("text_sha256", PLAIN),
            ("scheduled_at", TIME),
            ("target_path", PLAIN),
            ("payload_sha256", PLAIN),
        ),
    ),
    ChainedTable(
        "delivery_events",
        (
            ("delivery_id", PLAIN),
            ("status", PLAIN),
            ("at", TIME),
            ("error_class", PLAIN),
            ("reason", PLAIN),
            ("provider_id", PLAIN),
            ("attempt", PLAIN),
            ("step", PLAIN),
            ("detail", PLAIN),
            ("actor", PLAIN),
        ),
    ),
    ChainedTable(
        "console_actions",
        (
            ("at", TIME),
            ("actor", PLAIN),
            ("role", PLAIN),
            ("action", PLAIN),
            ("subject", PLAIN),
            ("detail", PLAIN),
            ("remote", PLAIN),
        ),
    ),
    ChainedTable(
        "console_logins",
        (("at", TIME), ("name", PLAIN), ("remote", PLAIN), ("ok", BOOL)),
    ),
    ChainedTable(
        "log_prunes",
        (
            ("at", TIME),
            ("cutoff", TIME),
            ("actor", PLAIN),
            ("texts", PLAIN),
            ("payloads", PLAIN),
            ("displays", PLAIN),
        ),
    ),
)
BY_NAME = {t.name: t for t in CHAINED}


# --- canonical form ------------------------------------------------------------------------------


def canonical_time(value: Any) -> str | None:
    """A stored time as "YYYY-MM-DDTHH:MM:SS.ffffffZ" in UTC (SQLite text or a datetime)."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":  # how the log stores times on SQLite
            return f"{value[:10]}T{value[11:]}Z"
        if len(value) == 27 and value[10] == "T" and value[26] == "Z":  # already canonical
            return value
        parsed = dt.datetime.fromisoformat(value)
        value = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if not isinstance(value, dt.datetime):
        raise TypeError(f"not a time: {value!r}")
    utc = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    return utc.isoformat(timespec="microseconds") + "Z"


def display_digest(value: str) -> str:
    """What the chain holds of a masked number: its sha256 (kept when a prune drops it)."""
    if value.startswith(PRUNED):
        return value[len(PRUNED) :]
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def shown_display(value: str) -> str:
    """A masked number as pages and exports show it (a pruned one says so)."""
    return "已过保留期 expired" if value.startswith(PRUNED) else value


def _not_json(value: Any) -> Any:
    raise TypeError(f"not a canonical value: {value!r}")


def _row_encoder() -> Callable[[list[Any]], str]:
    """JSON of a row as `json.dumps(values, ensure_ascii=False, separators=(",", ":"))`
    writes it; the C encoder made once, not once a row (half the cost of a row hash)."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encode = make(None, _not_json, encoder.encode_basestring, None, ":", ",", True, False, False)
    return lambda values: "".join(encode(values, 0))


_dumps_row = _row_encoder()


def _page(conn: Connection, table: ChainedTable, after: int, upto: int | None = None) -> list[Any]:
    """The next page of a table's rows after id `after` (up to id `upto`, when given), as
    plain tuples straight from the driver, inside the connection's transaction.

    The ids are written into the query (not parameters): PostgreSQL then plans it from the
    real index range every time, where a generic plan made early on an empty table
    scanned the whole table for each page. The upper bound matters as much: on a table
    not yet analysed, an open range `id > n` is guessed to hold a third of the rows, and
    PostgreSQL sorts a full scan for every seal; a closed range reads the index."""
    bound = f" AND id <= {int(upto)}" if upto is not None else ""
    sql = (
        f"{table.select(conn.dialect.name)} WHERE id > {int(after)}{bound} ORDER BY id LIMIT {PAGE}"
    )
    return list(driver(conn).execute(sql).fetchall())


def _row_hasher(table: ChainedTable) -> Callable[[Sequence[Any]], bytes]:
    """The function from a fetched row (id first) to its row hash."""
    kinds = [k for _, k in table.columns]
    times = [i + 1 for i, k in enumerate(kinds) if k == TIME]
    bools = [i + 1 for i, k in enumerate(kinds) if k == BOOL]
    displays = [i + 1 for i, k in enumerate(kinds) if k == DISPLAY]
    prefix = table.name.encode() + b"\0"
    dumps = _dumps_row
    sha = hashlib.sha256

    def row_hash(row: Sequence[Any]) -> bytes:
        values = list(row)
        for i in times:
            values[i] = canonical_time(values[i])
        for i in bools:
            values[i] = None if values[i] is None else int(values[i])
        for i in displays:
            values[i] = display_digest(values[i])
        return sha(prefix + dumps(values[1:]).encode("utf-8")).digest()

    return row_hash


HASHERS = {t.name: _row_hasher(t) for t in CHAINED}


def _runs(ids: Sequence[int]) -> list[list[int]]:
    """Ids as runs of consecutive ids: [[first, count], ...]."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return runs


def _expand(runs: Sequence[Sequence[int]]) -> Iterator[int]:
    for first, count in runs:
        yield from range(first, first + count)


def link_hash(prev: str, body: str, short: bytes) -> str:
    """The hash of a link: its predecessor's hash, its canonical body, its short row hashes."""
    blob = hashlib.sha256(short).hexdigest()
    return hashlib.sha256(f"{prev}\n{body}\n{blob}".encode()).hexdigest()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainHead:
    """The chain's current end: its last link and how many rows it covers."""

    seq: int
    hash: str
    records: int
    marks: dict[str, int] = field(default_factory=dict)  # per table: the last id covered


def _mark(conn: Connection) -> str:
    return "%s" if conn.dialect.name == "postgresql" else "?"


_HEAD_SQL = "SELECT seq, hash, records, marks FROM log_chain_head WHERE id = 1"


def driver(conn: Connection) -> Any:
    """The driver's own connection, inside the caller's transaction: the writer's statements
    go to it directly (SQLAlchemy's per-statement work would cost more than SQLite's)."""
    return conn.connection.driver_connection


def _head_of(row: Sequence[Any] | None) -> ChainHead | None:
    if row is None:
        return None
    return ChainHead(int(row[0]), str(row[1]), int(row[2]), json.loads(row[3]))


def head(conn: Connection) -> ChainHead | None:
    """The chain head as stored (None before the chain exists)."""
    return _head_of(driver(conn).execute(_HEAD_SQL).fetchone())


def _last_ids(conn: Connection) -> dict[str, int]:
    """The last id of each chained table as it stands (tables without rows left out)."""
    row = driver(conn).execute(_LAST_IDS).fetchone()
    return {t.name: int(v) for t, v in zip(CHAINED, row, strict=True) if v is not None}


def lock(conn: Connection) -> None:
    """Take the chain head for this transaction, before it writes any chained row, and note
    the last id of each chained table as it stands.

    On PostgreSQL this row lock orders every writer of the log (across processes): ids are
    handed out and committed in the order links are sealed. SQLite's `BEGIN IMMEDIATE` has
    done the same already. `seal` covers only rows after the ids noted here: a row someone
    slipped in behind the log's back is never swept into the next link. The head read here
    is the one `seal` extends: nobody else can move it while this transaction holds it.
    """
    sql = _HEAD_SQL + (" FOR UPDATE" if conn.dialect.name == "postgresql" else "")
    current = _head_of(driver(conn).execute(sql).fetchone())
    conn.info[_START] = (_last_ids(conn), current)


_START = "broadcaster.chain.start"
_LAST_IDS = "SELECT " + ", ".join(f"(SELECT max(id) FROM {t.name})" for t in CHAINED)


def _new_rows(
    conn: Connection, table: ChainedTable, after: int, upto: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """(id, row hash) of the rows after id `after` (up to `upto`), in id order, a page at
    a time."""
    hasher = HASHERS[table.name]
    while True:
        rows = _page(conn, table, after, upto)
        for row in rows:
            yield int(row[0]), hasher(row)
        if len(rows) < PAGE:
            return
        after = int(rows[-1][0])


def seal(conn: Connection, *, at: dt.datetime | None = None, extra: Any = None) -> ChainHead | None:
    """Append one link covering the chained rows written since the last one (this
    transaction's), inside the caller's transaction; None when there were none."""
    start, current = conn.info.pop(_START, (None, None))
    if current is None:
        current = head(conn)
    if current is None:
        return None  # the migration creating the chain has not run in this database
    if start:
        marks = dict(current.marks)
        for name, last in start.items():
            if last > marks.get(name, 0):
                log.error(
                    "rows of %s up to id %d were written outside the hash chain;"
                    " verify-log will name them",
                    name,
                    last,
                )
                marks[name] = last
        current = ChainHead(current.seq, current.hash, current.records, marks)
    return _append_link(conn, current, at, extra, _last_ids(conn))


def _append_link(
    conn: Connection,
    current: ChainHead,
    at: dt.datetime | None,
    extra: Any,
    last: dict[str, int] | None = None,
) -> ChainHead | None:
    """Seal the rows after the head's marks; `last` (each table's last id, when known)
    spares reading the tables that got no new row."""
    tables: dict[str, dict[str, Any]] = {}
    short = bytearray()
    marks = dict(current.marks)
    added = 0
    for table in CHAINED:
        if last is not None and last.get(table.name, 0) <= marks.get(table.name, 0):
            continue
        ids: list[int] = []
        digest = hashlib.sha256()
        upto = last.get(table.name) if last is not None else None
        for i, h in _new_rows(conn, table, marks.get(table.name, 0), upto):
            ids.append(i)
            digest.update(i.to_bytes(8, "big", signed=True) + h)
            short += h[:SHORT]
        if ids:
            tables[table.name] = {"runs": _runs(ids), "digest": digest.hexdigest()}
            marks[table.name] = ids[-1]
            added += len(ids)
    if not added and extra is None:
        return None
    seq = current.seq + 1 if current.hash else 0
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    body: dict[str, Any] = {
        "v": VERSION,
        "seq": seq,
        "at": canonical_time(when),
        "records": current.records + added,
        "tables": tables,
    }
    if extra is not None:
        body["genesis"] = extra
    text = _dumps(body)
    prev = current.hash or GENESIS_PREV
    new_hash = link_hash(prev, text, bytes(short))
    m = _mark(conn)
    raw = driver(conn)
    raw.execute(
        "INSERT INTO log_chain (seq, at, prev_hash, hash, records, body, short_hashes)"
        f" VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m})",
        (
            seq,
            _stamp(conn, when),
            prev,
            new_hash,
            current.records + added,
            text,
            bytes(short),
        ),
    )
    sealed = ChainHead(seq, new_hash, current.records + added, marks)
    raw.execute(
        f"UPDATE log_chain_head SET seq = {m}, hash = {m}, records = {m}, marks = {m} WHERE id = 1",
        (sealed.seq, sealed.hash, sealed.records, _dumps(marks)),
    )
    return sealed


def seal_genesis(conn: Connection, *, at: dt.datetime | None = None) -> ChainHead:
    """Create the chain head and its first link (seq 0), covering every row already there;
    the link names the log (a random log id) so that anchors tell logs apart."""
    conn.exec_driver_sql(
        "INSERT INTO log_chain_head (id, seq, hash, records, marks) VALUES (1, -1, '', 0, '{}')"
    )
    empty = ChainHead(-1, "", 0, {})
    sealed = _append_link(conn, empty, at, {"log_id": str(uuid.uuid4())})
    assert sealed is not None
    return sealed


# --- verifying -----------------------------------------------------------------------------------


BREAK_KINDS = {
    "edited": "被修改 edited",
    "deleted": "被删除 deleted",
    "inserted": "被插入 inserted",
    "reordered": "顺序被改 reordered",
    "broken-link": "链接断裂 broken link",
    "outside": "链外记录 outside the chain",
    "anchor": "与锚点不符 does not extend the anchor",
}


@dataclass(frozen=True)
class Break:
    """Where the log stops matching its chain."""

    kind: str  # edited, deleted, inserted, reordered, broken-link, outside, anchor
    table: str
    ident: str  # the row id (or sha256, or link seq)
    detail: str

    def __str__(self) -> str:
        label = BREAK_KINDS.get(self.kind, self.kind)
        return f"{label}: {self.table} {self.ident} — {self.detail}"


@dataclass(frozen=True)
class Anchor:
    """A chain head written down outside the database."""

    log_id: str
    key_id: str
    seq: int
    head: str
    records: int
    at: str


@dataclass
class Verdict:
    """What `verify` found: the head it reached and the first break, if any."""

    head: str = ""
    seq: int = -1
    records: int = 0
    log_id: str = ""
    links: int = 0
    anchors: int = 0
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


class _Stop(Exception):
    def __init__(self, found: Break) -> None:
        self.found = found


class _Rows:
    """One table's rows in id order, fetched a page at a time, with one row of look-ahead."""

    def __init__(self, conn: Connection, table: ChainedTable) -> None:
        self.conn = conn
        self.table = table
        self.page: list[Any] = []
        self.at = 0
        self.after = -(2**62)
        self.done = False

    def peek(self) -> Any:
        if self.at >= len(self.page):
            if self.done:
                return None
            self.page = _page(self.conn, self.table, self.after)
            self.at = 0
            if len(self.page) < PAGE:
                self.done = True
            if not self.page:
                return None
            self.after = int(self.page[-1][0])
        return self.page[self.at]

    def take(self) -> None:
        self.at += 1


def _links(conn: Connection) -> Iterator[Any]:
    m = _mark(conn)
    sql = (
        "SELECT seq, prev_hash, hash, records, body, short_hashes FROM log_chain"
        f" WHERE seq > {m} ORDER BY seq LIMIT 500"
    )
    after = -2
    while True:
        rows = conn.exec_driver_sql(sql, (after,)).all()
        yield from rows
        if len(rows) < 500:
            return
        after = int(rows[-1][0])


def verify(
    conn: Connection,
    anchors: Sequence[Anchor] = (),
    *,
    progress: Callable[[int], None] | None = None,
) -> Verdict:
    """Check the whole log against its chain, streaming (a page of rows at a time), inside
    the caller's transaction (one snapshot); the verdict names the first break."""
    verdict = Verdict()
    try:
        _verify(conn, anchors, verdict, progress)
    except _Stop as stop:
        verdict.broken = stop.found
    return verdict


def _verify(
    conn: Connection,
    anchors: Sequence[Anchor],
    verdict: Verdict,
    progress: Callable[[int], None] | None,
) -> None:
    streams = {t.name: _Rows(conn, t) for t in CHAINED}
    by_seq: dict[int, list[Anchor]] = {}
    for a in anchors:
        by_seq.setdefault(a.seq, []).append(a)
    prev = GENESIS_PREV
    expected_seq = 0
    records = 0
    for seq, prev_hash, stored_hash, link_records, body, short in _links(conn):
        seq = int(seq)
        short = bytes(short)
        if seq != expected_seq:
            missing = expected_seq if seq > expected_seq else seq
            raise _Stop(
                Break("broken-link", "log_chain", f"seq {missing}", "链接缺失 a link is missing")
            )
        if prev_hash != prev:
            raise _Stop(
                Break(
                    "broken-link",
                    "log_chain",
                    f"seq {seq}",
                    "前一哈希不符 prev_hash does not match the link before it",
                )
            )
        if link_hash(prev_hash, body, short) != stored_hash:
            raise _Stop(
                Break("broken-link", "log_chain", f"seq {seq}", "链接哈希不符 the link was edited")
            )
        parsed = json.loads(body)
        if seq == 0:
            verdict.log_id = str(parsed.get("genesis", {}).get("log_id", ""))
        offset = 0
        covered = 0
        for table in CHAINED:
            entry = parsed["tables"].get(table.name)
            if entry is None:
                continue
            n = sum(c for _, c in entry["runs"])
            _check_rows(streams[table.name], seq, entry, short[offset : offset + n * SHORT])
            offset += n * SHORT
            covered += n
        records += covered
        if offset != len(short) or records != int(link_records) or parsed["records"] != records:
            raise _Stop(
                Break(
                    "broken-link",
                    "log_chain",
                    f"seq {seq}",
                    "记录数不符 the link's record count does not add up",
                )
            )
        for anchor in by_seq.pop(seq, ()):
            _check_anchor(anchor, verdict.log_id, stored_hash, records)
            verdict.anchors += 1
        prev = stored_hash
        expected_seq = seq + 1
        verdict.seq, verdict.head, verdict.records = seq, stored_hash, records
        verdict.links += 1
        if progress is not None:
            progress(records)
    for name, stream in streams.items():
        row = stream.peek()
        if row is not None:
            raise _Stop(
                Break(
                    "outside",
                    name,
                    f"id {row[0]}",
                    "不在任何链接中 not covered by any link (written after the last one)",
                )
            )
    for pending in by_seq.values():
        _check_anchor(pending[0], verdict.log_id, None, None)
    _check_bodies(conn)
    stored = head(conn)
    if stored is None or (stored.seq, stored.hash) != (verdict.seq, verdict.head):
        raise _Stop(
            Break(
                "broken-link",
                "log_chain_head",
                f"seq {stored.seq if stored else '-'}",
                "链头与最后一个链接不符 the head does not match the last link",
            )
        )


def _check_rows(stream: _Rows, seq: int, entry: dict[str, Any], short: bytes) -> None:
    table = stream.table
    hasher = HASHERS[table.name]
    digest = hashlib.sha256()
    for position, wanted in enumerate(_expand(entry["runs"])):
        row = stream.peek()
        if row is not None and int(row[0]) < wanted:
            raise _Stop(
                Break(
                    "inserted",
                    table.name,
                    f"id {row[0]}",
                    f"不在链中 not covered by any link (link {seq} covers id {wanted} next)",
                )
            )
        if row is None or int(row[0]) > wanted:
            raise _Stop(
                Break(
                    "deleted",
                    table.name,
                    f"id {wanted}",
                    f"链接 {seq} 记录了它 link {seq} covers it",
                )
            )
        h = hasher(row)
        expected = short[position * SHORT : (position + 1) * SHORT]
        if h[:SHORT] != expected:
            elsewhere = [
                j
                for j in range(len(short) // SHORT)
                if short[j * SHORT : (j + 1) * SHORT] == h[:SHORT]
            ]
            if elsewhere:
                raise _Stop(
                    Break(
                        "reordered",
                        table.name,
                        f"id {wanted}",
                        f"内容属于链接 {seq} 的另一位置 its content belongs elsewhere in link {seq}",
                    )
                )
            raise _Stop(
                Break(
                    "edited",
                    table.name,
                    f"id {wanted}",
                    f"行哈希与链接 {seq} 不符 row hash differs from link {seq}",
                )
            )
        digest.update(wanted.to_bytes(8, "big", signed=True) + h)
        stream.take()
    if digest.hexdigest() != entry["digest"]:
        raise _Stop(
            Break(
                "edited",
                table.name,
                f"ids {entry['runs'][0][0]}…",
                f"链接 {seq} 的摘要不符 the digest of link {seq} differs",
            )
        )


def _check_anchor(anchor: Anchor, log_id: str, found: str | None, records: int | None) -> None:
    if anchor.log_id and log_id and anchor.log_id != log_id:
        raise _Stop(
            Break(
                "anchor",
                "log_chain",
                f"seq {anchor.seq}",
                f"锚点属于另一个日志 the anchor belongs to log {anchor.log_id}, this is {log_id}",
            )
        )
    if found is None:
        raise _Stop(
            Break(
                "anchor",
                "log_chain",
                f"seq {anchor.seq}",
                f"锚点 {anchor.at} 的链接不存在 the link of the anchor taken {anchor.at} is gone",
            )
        )
    if found != anchor.head or records != anchor.records:
        raise _Stop(
            Break(
                "anchor",
                "log_chain",
                f"seq {anchor.seq}",
                f"日志已被改写 the log was rewritten since the anchor taken {anchor.at}"
                f" (anchor {anchor.head[:16]}…, log {found[:16]}…)",
            )
        )


def prune_cutoff(conn: Connection) -> Any:
    """The latest cutoff of any prune, as stored (None: never pruned)."""
    return conn.exec_driver_sql("SELECT max(cutoff) FROM log_prunes").scalar()


def _check_bodies(conn: Connection) -> None:
    """Texts and payloads match the sha256 they are stored under (or were emptied by a
    prune); those of deliveries still within retention are there; masked numbers were
    dropped only from expired deliveries."""
    m = _mark(conn)
    for table, body in (("messages", "text"), ("payloads", "body")):
        sql = f"SELECT sha256, {body} FROM {table} WHERE sha256 > {m} ORDER BY sha256 LIMIT {PAGE}"
        after = ""
        while True:
            rows = conn.exec_driver_sql(sql, (after,)).all()
            for key, value in rows:
                if value and hashlib.sha256(value.encode("utf-8")).hexdigest() != key:
                    raise _Stop(
                        Break(
                            "edited",
                            table,
                            f"sha256 {key[:16]}…",
                            "内容与其哈希不符 the body does not match its sha256",
                        )
                    )
            if len(rows) < PAGE:
                break
            after = rows[-1][0]
    cutoff = prune_cutoff(conn)
    within = f" AND d.scheduled_at >= {m}" if cutoff is not None else ""
    params = (cutoff,) if cutoff is not None else ()
    for table, body, column in (
        ("messages", "text", "text_sha256"),
        ("payloads", "body", "payload_sha256"),
    ):
        row = conn.exec_driver_sql(
            f"SELECT d.id, d.{column} FROM deliveries d WHERE d.{column} IS NOT NULL{within}"
            f" AND NOT EXISTS (SELECT 1 FROM {table} b WHERE b.sha256 = d.{column}"
            f" AND b.{body} <> '')"
            " ORDER BY d.id LIMIT 1",
            params,
        ).first()
        if row is not None:
            raise _Stop(
                Break(
                    "deleted",
                    table,
                    f"sha256 {row[1][:16]}…",
                    f"投递 id {row[0]} 仍在保留期内 delivery id {row[0]} is still within"
                    " retention and needs it",
                )
            )
    row = conn.exec_driver_sql(
        f"SELECT d.id FROM deliveries d WHERE d.recipient_display LIKE {m}{within}"
        " ORDER BY d.id LIMIT 1",
        (PRUNED + "%", *params),
    ).first()
    if row is not None:
        raise _Stop(
            Break(
                "edited",
                "deliveries",
                f"id {row[0]}",
                "保留期未满却删除了号码显示 the masked number was dropped before retention ended",
            )
        )


def log_id(conn: Connection) -> str:
    """The log's identity, named by its genesis link ("" before the chain exists)."""
    body = conn.exec_driver_sql("SELECT body FROM log_chain WHERE seq = 0").scalar()
    if body is None:
        return ""
    return str(json.loads(body).get("genesis", {}).get("log_id", ""))


# --- retention -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneTally:
    """What a prune dropped."""

    texts: int
    payloads: int
    displays: int


PRUNE_CHUNK = 20_000  # masked numbers replaced per transaction: other writers wait for less


def _stamp(conn: Connection, value: dt.datetime) -> Any:
    utc = value.astimezone(dt.UTC)
    return (
        utc
        if conn.dialect.name == "postgresql"
        else utc.replace(tzinfo=None).isoformat(" ", "microseconds")
    )


def begin_prune(conn: Connection, cutoff: dt.datetime, at: dt.datetime, actor: str) -> PruneTally:
    """First transaction of a prune (chained): record it in `log_prunes` with what it will
    drop, and empty the texts and payloads used only by deliveries scheduled before
    `cutoff` (the rows and their sha256 stay: deliveries refer to them). The masked numbers
    follow in chunks (`prune_displays`); a prune cut short is finished by the next one.
    Row hashes do not change: the chain covers the bodies' hashes, not the bodies."""
    m = _mark(conn)
    before = _stamp(conn, cutoff)
    displays = int(
        conn.exec_driver_sql(
            f"SELECT count(*) FROM deliveries WHERE scheduled_at < {m}"
            f" AND recipient_display NOT LIKE {m}",
            (before, PRUNED + "%"),
        ).scalar_one()
    )
    conn.exec_driver_sql("INSERT INTO log_prune_permit (id) VALUES (1)")
    dropped: dict[str, int] = {}
    for table, body, column in (
        ("messages", "text", "text_sha256"),
        ("payloads", "body", "payload_sha256"),
    ):
        result = conn.exec_driver_sql(
            f"UPDATE {table} SET {body} = '' WHERE {body} <> '' AND sha256 IN"
            f" (SELECT {column} FROM deliveries WHERE scheduled_at < {m} AND {column} IS NOT NULL)"
            f" AND sha256 NOT IN (SELECT {column} FROM deliveries WHERE scheduled_at >= {m}"
            f" AND {column} IS NOT NULL)",
            (before, before),
        )
        dropped[table] = int(result.rowcount or 0)
    conn.exec_driver_sql("DELETE FROM log_prune_permit")
    conn.exec_driver_sql(
        "INSERT INTO log_prunes (at, cutoff, actor, texts, payloads, displays)"
        f" VALUES ({m}, {m}, {m}, {m}, {m}, {m})",
        (_stamp(conn, at), before, actor, dropped["messages"], dropped["payloads"], displays),
    )
    return PruneTally(dropped["messages"], dropped["payloads"], displays)


def prune_displays(conn: Connection, cutoff: dt.datetime, limit: int = PRUNE_CHUNK) -> int:
    """Replace up to `limit` masked numbers of deliveries scheduled before `cutoff` (whose
    prune is recorded) by `pruned:<their sha256>`; how many were replaced."""
    m = _mark(conn)
    rows = conn.exec_driver_sql(
        f"SELECT id, recipient_display FROM deliveries WHERE scheduled_at < {m}"
        f" AND recipient_display NOT LIKE {m} ORDER BY id LIMIT {int(limit)}",
        (_stamp(conn, cutoff), PRUNED + "%"),
    ).all()
    if rows:
        conn.exec_driver_sql("INSERT INTO log_prune_permit (id) VALUES (1)")
        conn.exec_driver_sql(
            f"UPDATE deliveries SET recipient_display = {m} WHERE id = {m}",
            [(PRUNED + display_digest(str(v)), int(i)) for i, v in rows],
        )
        conn.exec_driver_sql("DELETE FROM log_prune_permit")
    return len(rows)
