"""The hash chain: every write is covered, and an intruder with SQL (triggers dropped
first) who edits, deletes, inserts or reorders rows is named by `verify`, on SQLite and
PostgreSQL; anchors catch a rewrite of the whole database; retention prunes bodies and
the chain still verifies; two processes writing at once leave one chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from broadcaster.engine.clock import ManualClock
from broadcaster.log import DeliveryLog, chain
from broadcaster.vocab import Status
from broadcaster.web.store import ConsoleStore

from .fixtures import HASH_KEY, postgres_schema, raw_connection
from .test_store import T0, TEXT, record, walk

UTC = dt.UTC


def fill(log: DeliveryLog) -> None:
    """A small log written the way the engine writes it: several commits, several tables."""
    log.begin_occurrence("mini", "occ-1", "rule-1", T0, T0)
    log.add_deliveries([record(log, f"k{i}") for i in range(1, 5)], T0)
    log.append(walk("k1", Status.DELIVERED))  # one commit: sending, accepted, delivered
    log.append(walk("k2", Status.FAILED))
    log.append(walk("k3", Status.UNKNOWN))
    log.record_occurrence("mini", "occ-1", "rule-1", T0, "done", "", T0 + dt.timedelta(hours=1))


def rows_in_log(url: str) -> int:
    with raw_connection(url) as conn:
        return sum(
            int(conn.exec_driver_sql(f"SELECT count(*) FROM {t.name}").scalar() or 0)
            for t in chain.CHAINED
        )


def event_id(conn: sa.Connection, key: str, status: str) -> int:
    return int(
        conn.exec_driver_sql(
            "SELECT e.id FROM delivery_events e JOIN deliveries d ON d.id = e.delivery_id"
            f" WHERE d.key = '{key}' AND e.status = '{status}'"
        ).scalar_one()
    )


@contextmanager
def intruder(url: str) -> Iterator[sa.Connection]:
    """A plain SQL connection with every trigger of the log dropped first, in a transaction."""
    with raw_connection(url) as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            for (name,) in names.all():
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        else:
            found = conn.exec_driver_sql(
                "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
            ).all()
            assert found, "the log has triggers to drop"
            for name, table in found:
                conn.exec_driver_sql(f"DROP TRIGGER {name} ON {table}")
        yield conn


def verdict(url: str, anchors: tuple[chain.Anchor, ...] = ()) -> chain.Verdict:
    with DeliveryLog.open(url, hash_key=HASH_KEY) as log:
        return log.verify(anchors)


# --- what is chained -----------------------------------------------------------------------------


def test_every_write_is_chained_and_the_log_verifies(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        genesis, none = log.chain_head()
        assert none == 0 and len(genesis) == 64
        fill(log)
        head, records = log.chain_head()
        found = log.verify()
    assert found.ok, found.broken
    # 2 occurrences, 4 deliveries, 4 planned + 3 + 2 + 2 events
    assert records == rows_in_log(log_url) == 2 + 4 + 4 + 7
    assert (found.head, found.records) == (head, records) and head != genesis
    assert found.links == 7  # genesis + one per commit that wrote chained rows
    with raw_connection(log_url) as conn:
        links = conn.exec_driver_sql("SELECT seq, prev_hash, hash FROM log_chain ORDER BY seq")
        rows = links.all()
    assert [r[0] for r in rows] == list(range(7))
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))


def test_a_write_that_changes_no_chained_row_adds_no_link(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1")], T0)
    before = log.chain_head()
    log.set_next_check(["k1"], T0 + dt.timedelta(hours=1))  # delivery_state only
    log.renew_leases("nobody", T0 + dt.timedelta(hours=1))
    assert log.chain_head() == before


def test_console_actions_and_logins_are_chained(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        console = ConsoleStore(log, log_url, ManualClock(T0))
        try:
            console.record("admin", "admin", "approve", "tpl/a.j2", {"note": "ok"}, "10.0.0.1")
            console.record_login("admin", "10.0.0.1", True)
        finally:
            console.close()
        assert log.chain_head()[1] == 2
        assert log.verify().ok
    with intruder(log_url) as conn:
        conn.exec_driver_sql("UPDATE console_logins SET ok = (1 = 0)")
    broken = verdict(log_url).broken
    assert broken is not None
    assert (broken.kind, broken.table) == ("edited", "console_logins")


# --- an intruder with SQL ------------------------------------------------------------------------


def _edit_event(conn: sa.Connection) -> str:
    i = event_id(conn, "k2", "failed")
    conn.exec_driver_sql(f"UPDATE delivery_events SET status = 'accepted' WHERE id = {i}")
    return f"edited delivery_events id {i}"


def _edit_delivery(conn: sa.Connection) -> str:
    i = conn.exec_driver_sql("SELECT id FROM deliveries WHERE key = 'k3'").scalar_one()
    conn.exec_driver_sql(f"UPDATE deliveries SET target_id = 'elsewhere' WHERE id = {i}")
    return f"edited deliveries id {i}"


def _delete_event(conn: sa.Connection) -> str:
    i = event_id(conn, "k1", "accepted")
    conn.exec_driver_sql(f"DELETE FROM delivery_events WHERE id = {i}")
    return f"deleted delivery_events id {i}"


def _delete_occurrence(conn: sa.Connection) -> str:
    i = conn.exec_driver_sql("SELECT min(id) FROM occurrences").scalar_one()
    conn.exec_driver_sql(f"DELETE FROM occurrences WHERE id = {i}")
    return f"deleted occurrences id {i}"


def _insert_before(conn: sa.Connection) -> str:
    """A forged event slipped in under an id no link covers."""
    d = conn.exec_driver_sql("SELECT id FROM deliveries WHERE key = 'k4'").scalar_one()
    at = "2026-03-02 01:30:00.000000" if conn.dialect.name == "sqlite" else "2026-03-02T01:30Z"
    conn.exec_driver_sql(
        "INSERT INTO delivery_events (id, delivery_id, status, at, reason, attempt, step)"
        f" VALUES (0, {d}, 'delivered', '{at}', '', 1, 0)"
    )
    return "inserted delivery_events id 0"


def _insert_after(conn: sa.Connection) -> str:
    """A forged event appended after the last link, under the next id."""
    d = conn.exec_driver_sql("SELECT id FROM deliveries WHERE key = 'k4'").scalar_one()
    at = "2026-03-02 01:30:00.000000" if conn.dialect.name == "sqlite" else "2026-03-02T01:30Z"
    i = conn.exec_driver_sql(
        "INSERT INTO delivery_events (delivery_id, status, at, reason, attempt, step)"
        f" VALUES ({d}, 'delivered', '{at}', '', 1, 0) RETURNING id"
    ).scalar_one()
    return f"outside delivery_events id {i}"


def _reorder_events(conn: sa.Connection) -> str:
    """Two events of one commit swap places (their contents trade ids)."""
    a, b = event_id(conn, "k1", "sending"), event_id(conn, "k1", "accepted")
    cols = "delivery_id, status, at, error_class, reason, provider_id, attempt, step, detail, actor"
    rows = {
        i: conn.exec_driver_sql(f"SELECT {cols} FROM delivery_events WHERE id = {i}").one()
        for i in (a, b)
    }
    sets = ", ".join(f"{c.strip()} = :{c.strip()}" for c in cols.split(","))
    for i, other in ((a, b), (b, a)):
        conn.execute(
            sa.text(f"UPDATE delivery_events SET {sets} WHERE id = :id"),
            {**rows[other]._mapping, "id": i},
        )
    return f"reordered delivery_events id {a}"


def _edit_link(conn: sa.Connection) -> str:
    body = conn.exec_driver_sql("SELECT body FROM log_chain WHERE seq = 3").scalar_one()
    conn.execute(
        sa.text("UPDATE log_chain SET body = :b WHERE seq = 3"),
        {"b": body.replace('"records":', '"records": ')},
    )
    return "broken-link log_chain seq 3"


def _delete_link(conn: sa.Connection) -> str:
    conn.exec_driver_sql("DELETE FROM log_chain WHERE seq = 2")
    return "broken-link log_chain seq 2"


def _edit_text(conn: sa.Connection) -> str:
    conn.execute(sa.text("UPDATE messages SET text = :t"), {"t": TEXT.replace("110", "120")})
    return "edited messages"


def _delete_text(conn: sa.Connection) -> str:
    conn.exec_driver_sql("UPDATE messages SET text = ''")  # the row stays: deliveries refer to it
    return "deleted messages"


TAMPERING = {
    "edit an event": _edit_event,
    "edit a delivery": _edit_delivery,
    "delete an event": _delete_event,
    "delete an occurrence": _delete_occurrence,
    "insert an event under an uncovered id": _insert_before,
    "insert an event after the last link": _insert_after,
    "reorder two events": _reorder_events,
    "edit a link": _edit_link,
    "delete a link": _delete_link,
    "edit a message text": _edit_text,
    "delete a message text": _delete_text,
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=list(TAMPERING))
def test_verify_names_the_first_break(log_url: str, tamper: Any) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        fill(log)
        assert log.verify().ok
    with intruder(log_url) as conn:
        expected = tamper(conn)
    found = verdict(log_url)
    assert found.broken is not None, expected
    kind, table, *ident = expected.split(" ", 2)
    assert (found.broken.kind, found.broken.table) == (kind, table), found.broken
    if ident:
        assert found.broken.ident == ident[0], found.broken
    assert chain.BREAK_KINDS[kind] in str(found.broken)


def test_a_row_slipped_in_after_the_last_link_is_never_sealed_by_a_later_write(
    log_url: str,
) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        fill(log)
    with intruder(log_url) as conn:
        forged = _insert_after(conn).split()[-1]
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        log.append(walk("k4", Status.ACCEPTED))  # the next commit seals its own rows only
        broken = log.verify().broken
    assert broken is not None
    assert (broken.kind, broken.table, broken.ident) == (
        "inserted",
        "delivery_events",
        f"id {forged}",
    )


def test_the_database_still_refuses_what_the_chain_would_catch(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        fill(log)
    refused = [
        "UPDATE deliveries SET recipient_display = 'pruned:00'",
        "UPDATE deliveries SET target_id = 'x'",
        "DELETE FROM messages",
        "UPDATE messages SET text = ''",
        "UPDATE messages SET text = 'forged'",
        "DELETE FROM log_chain",
        "UPDATE log_chain SET hash = ''",
        "DELETE FROM log_chain_head",
    ]
    for sql in refused:
        with (
            raw_connection(log_url) as conn,
            pytest.raises(sa.exc.DatabaseError, match="append"),
            conn.begin(),
        ):
            conn.exec_driver_sql(sql)
    assert verdict(log_url).ok


# --- anchors -------------------------------------------------------------------------------------


def test_an_anchor_catches_a_rewrite_of_the_whole_database(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        fill(log)
        log_id, seq, head, records = log.chain_identity()
        anchor = chain.Anchor(log_id, log.key_id, seq, head, records, "2026-03-02T10:00Z")
        assert log.verify((anchor,)).ok
        log.append(walk("k4", Status.ACCEPTED))  # the log grows after the anchor: still fine
        grown = log.verify((anchor,))
        assert grown.ok and grown.anchors == 1 and grown.records == records + 2
    # someone with the whole database rewrites history and rebuilds a consistent chain
    with intruder(log_url) as conn:
        _edit_event(conn)
        conn.exec_driver_sql("DELETE FROM log_chain")
        conn.exec_driver_sql("DELETE FROM log_chain_head")
        conn.exec_driver_sql(
            "INSERT INTO log_chain_head (id, seq, hash, records, marks) VALUES (1, -1, '', 0, '{}')"
        )
        empty = chain.ChainHead(-1, "", 0, {})
        chain._append_link(conn, empty, None, {"log_id": log_id})
    assert verdict(log_url).ok  # without an anchor the rewrite is consistent
    broken = verdict(log_url, (anchor,)).broken
    assert broken is not None and broken.kind == "anchor", broken
    assert "2026-03-02T10:00Z" in str(broken)


def test_an_anchor_of_another_log_is_refused(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        _, seq, head, records = log.chain_identity()
        other = chain.Anchor("another-log", log.key_id, seq, head, records, "earlier")
        broken = log.verify((other,)).broken
    assert broken is not None and broken.kind == "anchor" and "another-log" in broken.detail


# --- retention -----------------------------------------------------------------------------------


def test_retention_prunes_bodies_and_masked_numbers_and_the_chain_still_verifies(
    log_url: str,
) -> None:
    old, new = T0 - dt.timedelta(days=400), T0
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        log.add_deliveries(
            [
                record(log, "old", scheduled_at=old, text="旧短信 old text"),
                record(log, "new", scheduled_at=new),
                record(log, "both-old", scheduled_at=old),
                record(log, "both-new"),
            ],
            old,
        )
        log.append(walk("old", Status.DELIVERED))
        _, before = log.chain_head()
        tally = log.prune(T0 - dt.timedelta(days=365), T0, "管理员 admin")
        assert (tally.texts, tally.displays) == (1, 2)  # TEXT is still used by recent ones
        head, records = log.chain_head()
        assert records == before + 1  # the prune itself is a chained record
        assert log.text(record(log, "old", text="旧短信 old text").text_sha256) is None
        assert log.text(record(log, "new").text_sha256) == TEXT
        shown = {k: s.recipient_display for k, s in log.latest(["old", "new"]).items()}
        assert shown["old"].startswith(chain.PRUNED) and "****" in shown["new"]
        assert chain.shown_display(shown["old"]) == "已过保留期 expired"
        found = log.verify()
        assert found.ok, found.broken
        assert (found.head, found.records) == (head, records)
        again = log.prune(T0 - dt.timedelta(days=365), T0, "admin")
        assert (again.texts, again.displays) == (0, 0)
        assert log.verify().ok
    # the same text sent again after its prune: its body is filled in again
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        again_text = "旧短信 old text"
        log.add_deliveries([record(log, "again", text=again_text)], T0)
        assert log.text(record(log, "again", text=again_text).text_sha256) == again_text
        assert log.verify().ok
    # a text still within retention removed behind the log's back is caught
    with intruder(log_url) as conn:
        conn.exec_driver_sql("UPDATE messages SET text = ''")
    broken = verdict(log_url).broken
    assert broken is not None and (broken.kind, broken.table) == ("deleted", "messages")


def test_a_prune_goes_in_chunks_and_one_cut_short_still_verifies(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = T0 - dt.timedelta(days=400)
    log.add_deliveries([record(log, f"k{i}", scheduled_at=old) for i in range(5)], old)
    cutoff = T0 - dt.timedelta(days=365)
    monkeypatch.setattr(chain, "PRUNE_CHUNK", 2)
    calls: list[int] = []
    real = chain.prune_displays

    def counted(conn: sa.Connection, before: dt.datetime, limit: int = 2) -> int:
        calls.append(real(conn, before, limit))
        return calls[-1]

    monkeypatch.setattr(chain, "prune_displays", counted)
    assert log.prune(cutoff, T0, "admin").displays == 5
    assert calls == [2, 2, 1]
    assert all(s.recipient_display.startswith(chain.PRUNED) for s in log.deliveries())
    assert log.verify().ok
    # recorded first, then cut short: what was pruned is covered by the record, the next
    # prune finishes the rest
    log.add_deliveries([record(log, f"m{i}", scheduled_at=old) for i in range(3)], old)
    monkeypatch.setattr(chain, "prune_displays", lambda conn, before, limit=2: 0)
    assert log.prune(cutoff, T0, "admin").displays == 3
    assert log.verify().ok
    monkeypatch.setattr(chain, "prune_displays", real)
    assert log.prune(cutoff, T0, "admin").displays == 3
    assert log.verify().ok


def test_a_masked_number_dropped_before_its_time_is_caught(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        log.add_deliveries([record(log, "k1")], T0)
    with intruder(log_url) as conn:
        display = conn.exec_driver_sql("SELECT recipient_display FROM deliveries").scalar_one()
        conn.execute(
            sa.text("UPDATE deliveries SET recipient_display = :d"),
            {"d": chain.PRUNED + chain.display_digest(display)},
        )
    broken = verdict(log_url).broken
    assert broken is not None and (broken.kind, broken.table) == ("edited", "deliveries")


# --- a log that predates the chain, and several writers --------------------------------------


def test_the_genesis_link_seals_a_log_written_before_the_chain(log_url: str) -> None:
    from .test_migrations import migrate_to

    migrate_to(log_url, "0003")
    sha = hashlib.sha256(TEXT.encode("utf-8")).hexdigest()
    at = "2026-03-02 01:00:00" if log_url.startswith("sqlite") else "2026-03-02T01:00Z"
    with raw_connection(log_url) as conn, conn.begin():
        conn.execute(sa.text("INSERT INTO messages VALUES (:s, :t)"), {"s": sha, "t": TEXT})
        for key in ("k1", "k2"):
            conn.execute(
                sa.text(
                    "INSERT INTO deliveries (key, campaign, occurrence_id, rule_id, channel_id,"
                    " endpoint, target_id, recipient_display, recipient_hash, kind, template,"
                    " template_sha, text_sha256, scheduled_at) VALUES (:key, 'mini', 'occ-1',"
                    " 'rule-1', 'sms', 'e', 'town', '138****0001', 'h', 'sms', 'sms/a.j2', 't',"
                    " :sha, :at)"
                ),
                {"key": key, "sha": sha, "at": at},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_events (delivery_id, status, at, reason, attempt)"
                    " SELECT id, 'planned', :at, '', 0 FROM deliveries WHERE key = :key"
                ),
                {"key": key, "at": at},
            )
        conn.execute(
            sa.text(
                "INSERT INTO occurrences (campaign, occurrence_id, rule_id, scheduled_at, status,"
                " reason, at) VALUES ('mini', 'occ-1', 'rule-1', :at, 'fired', '', :at)"
            ),
            {"at": at},
        )
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        _, records = log.chain_head()
        assert records == 2 + 2 + 1
        found = log.verify()
        assert found.ok and found.links == 1, found.broken
        log.add_deliveries([record(log, "k3")], T0)
        assert log.verify().ok
    with intruder(log_url) as conn:
        conn.exec_driver_sql("UPDATE occurrences SET status = 'done'")
    broken = verdict(log_url).broken
    assert broken is not None and (broken.kind, broken.table) == ("edited", "occurrences")


WRITER = """
import datetime as dt, sys, time
from pathlib import Path
from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.log.fixtures import HASH_KEY
from tests.log.test_store import T0, record, walk
url, name, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
log = DeliveryLog.open(url, hash_key=HASH_KEY)
(folder / name).touch()
while len(list(folder.iterdir())) < 2:  # start together
    time.sleep(0.001)
for batch in range(15):
    keys = [f"{name}-{batch}-{i}" for i in range(10)]
    log.add_deliveries([record(log, k) for k in keys], T0)
    log.append([e for k in keys for e in walk(k, Status.ACCEPTED)])
log.close()
"""


def test_two_processes_writing_at_once_leave_one_chain(log_url: str, tmp_path: Path) -> None:
    DeliveryLog.open(log_url, hash_key=HASH_KEY).close()  # migrated once, before both start
    ready = tmp_path / "ready"
    ready.mkdir()
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, log_url, name, str(ready)],
            cwd=root,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    found = verdict(log_url)
    assert found.ok, found.broken
    # per process: 150 deliveries, 150 planned + 300 events
    assert found.records == rows_in_log(log_url) == 2 * (150 + 150 + 300)
    assert found.links == 1 + 2 * 30  # genesis, then one link per commit of either process
    with raw_connection(log_url) as conn:
        links = conn.exec_driver_sql("SELECT count(DISTINCT prev_hash), count(*) FROM log_chain")
        distinct, total = links.one()
    assert distinct == total  # no two links share a predecessor: no fork


@pytest.mark.postgres
def test_a_seal_on_postgresql_reads_the_new_rows_through_the_index() -> None:
    """A fresh, never analysed table: an open range `id > n` was planned as a full scan
    and a sort at every seal, making each commit slower as the log grew."""
    with postgres_schema() as url:
        with DeliveryLog.open(url, hash_key=HASH_KEY) as log:
            with raw_connection(url) as conn, conn.begin():
                conn.exec_driver_sql("ALTER TABLE delivery_events SET (autovacuum_enabled = false)")
            log.add_deliveries([record(log, f"k{i}") for i in range(3000)], T0)
        with raw_connection(url) as conn, conn.begin():
            chain.lock(conn)
            conn.exec_driver_sql(
                "INSERT INTO delivery_events (delivery_id, status, at, reason, attempt, step)"
                " VALUES (1, 'sending', now(), '', 1, 0)"
            )
            sealed = chain.seal(conn)
            read = conn.exec_driver_sql(
                "SELECT seq_scan, seq_tup_read FROM pg_stat_xact_user_tables"
                " WHERE relname = 'delivery_events'"
            ).one()
            conn.rollback()
    assert sealed is not None and sealed.marks["delivery_events"] == 3001
    assert tuple(read) == (0, 0)


def test_verify_streams_and_reports_progress(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, f"k{i}") for i in range(chain.PAGE + 7)], T0)
    seen: list[int] = []
    found = log.verify(progress=seen.append)
    assert found.ok and found.records == 2 * (chain.PAGE + 7)
    assert seen[-1] == found.records


def test_canonical_times_agree_between_sqlite_text_and_datetimes() -> None:
    aware = dt.datetime(2026, 3, 2, 9, 0, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    expected = "2026-03-02T01:00:01.000005Z"
    assert chain.canonical_time(aware) == expected
    assert chain.canonical_time("2026-03-02 01:00:01.000005") == expected
    assert chain.canonical_time("2026-03-02 01:00:01") == "2026-03-02T01:00:01.000000Z"
    assert chain.canonical_time(None) is None
    assert json.loads(json.dumps(chain.canonical_time(aware))) == expected
