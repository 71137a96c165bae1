"""Tests of broadcaster/log/store.py: each runs on SQLite and on PostgreSQL (see fixtures.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from broadcaster.errors import LogStoreError
from broadcaster.log import DeliveryLog, DeliveryRecord, DeliveryState, Event, default_url
from broadcaster.log.engines import MIGRATIONS, RefusedError, Target
from broadcaster.log.models import APPEND_ONLY, metadata
from broadcaster.vocab import ErrorClass, Status

from .fixtures import HASH_KEY, raw_connection

HEAD_REVISION = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # one head, always

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
TEXT = "【反诈】凡是让你刷单的都是诈骗，请拨110"
PHONE = "13812345678"
TABLES = (*APPEND_ONLY, "delivery_state", "leases", "feed_cursors")
CAMPAIGN = "mini"


def record(
    log: DeliveryLog,
    key: str,
    *,
    occurrence: str = "occ-1",
    rule: str = "rule-1",
    channel: str = "sms",
    target: str = "town",
    address: str | None = None,
    text: str = TEXT,
    scheduled_at: dt.datetime = T0,
    campaign: str = "mini",
) -> DeliveryRecord:
    address = address or f"1390000{abs(hash(key)) % 10000:04d}"
    return DeliveryRecord(
        key=key,
        campaign=campaign,
        occurrence_id=occurrence,
        rule_id=rule,
        channel_id=channel,
        endpoint=f"{channel}-endpoint",
        target_id=target,
        recipient_display=f"{address[:3]}****{address[-4:]}",
        recipient_hash=log.recipient_hash(address),
        kind="sms",
        template="sms/alpha.j2",
        template_sha="t" * 64,
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        text=text,
        scheduled_at=scheduled_at,
    )


def ev(key: str, status: Status, minutes: int = 1, **kw: object) -> Event:
    return Event(key, status, T0 + dt.timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def states(
    log: DeliveryLog, records: list[DeliveryRecord], at: dt.datetime = T0
) -> dict[str, DeliveryState]:
    claim = log.add_deliveries(records, at)
    return {**claim.held, **claim.others}


# The shortest path of events from planned to each status (the log refuses any other order).
PATH = {
    Status.SENDING: [Status.SENDING],
    Status.ACCEPTED: [Status.SENDING, Status.ACCEPTED],
    Status.DELIVERED: [Status.SENDING, Status.ACCEPTED, Status.DELIVERED],
    Status.FAILED: [Status.SENDING, Status.FAILED],
    Status.UNKNOWN: [Status.SENDING, Status.UNKNOWN],
    Status.INTERRUPTED: [Status.SENDING, Status.INTERRUPTED],
    Status.UNRESOLVED: [Status.SENDING, Status.UNKNOWN, Status.UNRESOLVED],
    Status.DEFERRED: [Status.DEFERRED],
    Status.SKIPPED: [Status.SKIPPED],
}


def walk(key: str, status: Status, minutes: int = 1) -> list[Event]:
    return [ev(key, s, minutes + i) for i, s in enumerate(PATH[status])]


# --- schema and migrations ----------------------------------------------------------------------


def test_default_url(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path}/delivery-log.sqlite3"


def test_migrates_fresh_database_to_head_and_reopen_is_a_no_op(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        log.add_deliveries([record(log, "k1")], T0)
    with raw_connection(log_url) as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
            (HEAD_REVISION,)
        ]
        assert set(TABLES) <= set(sa.inspect(conn).get_table_names())
        # The models used for queries match what the migrations built.
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        assert log.latest(["k1"])["k1"].status is Status.PLANNED
        assert [e.status for e in log.events("k1")] == [Status.PLANNED]
    with raw_connection(log_url) as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [
            (HEAD_REVISION,)
        ]


def test_url_display_masks_the_password(log_url: str) -> None:
    if log_url.startswith("sqlite"):
        url, shown = log_url, log_url
    else:  # the test server trusts every login: the password is accepted and ignored
        url = log_url.replace("postgres@", "postgres:pw-1234@")
        shown = log_url.replace("postgres@", "postgres:***@")
    with DeliveryLog.open(url, hash_key=HASH_KEY) as log:
        assert log.url_display == shown
        assert repr(log) == f"DeliveryLog({shown!r})"


# --- deliveries ---------------------------------------------------------------------------------


def test_add_deliveries_is_idempotent(log: DeliveryLog) -> None:
    first = states(log, [record(log, "k1"), record(log, "k2")])
    assert set(first) == {"k1", "k2"}
    assert first["k1"].status is Status.PLANNED
    assert first["k1"].status_at == T0
    log.append([ev("k1", Status.SENDING)])

    changed = record(log, "k1", channel="other", text="另一条")  # same key: left untouched
    again = states(log, [changed, record(log, "k2"), record(log, "k3")])

    assert set(again) == {"k1", "k2", "k3"}
    assert again["k1"].status is Status.SENDING
    assert again["k1"].channel_id == "sms"
    assert [e.status for e in log.events("k1")] == [Status.PLANNED, Status.SENDING]
    assert [e.status for e in log.events("k2")] == [Status.PLANNED]
    assert [e.status for e in log.events("k3")] == [Status.PLANNED]
    assert log.text(changed.text_sha256) is None  # nothing of the refused record was written


def test_add_many_deliveries_in_one_call(log: DeliveryLog) -> None:
    texts = [f"{TEXT} #{i % 7}" for i in range(10_000)]
    records = [record(log, f"k{i:05d}", text=texts[i]) for i in range(10_000)]
    added = states(log, records)
    assert len(added) == 10_000
    assert {s.status for s in added.values()} == {Status.PLANNED}
    assert len(log.deliveries()) == 10_000
    assert log.text(records[3].text_sha256) == texts[3]
    assert states(log, records) == added


def test_add_deliveries_checks_its_input(log: DeliveryLog) -> None:
    bad_sha = record(log, "k1").__class__(**{**record(log, "k1").__dict__, "text_sha256": "0" * 64})
    with pytest.raises(LogStoreError, match="text_sha256"):
        log.add_deliveries([bad_sha], T0)
    with pytest.raises(LogStoreError, match="aware"):
        log.add_deliveries([record(log, "k1")], dt.datetime(2026, 3, 2, 9))
    assert states(log, []) == {}
    assert log.deliveries() == []


def test_text_is_stored_once_by_sha256(log: DeliveryLog) -> None:
    rec = record(log, "k1")
    log.add_deliveries([rec, record(log, "k2")], T0)
    assert log.text(rec.text_sha256) == TEXT
    assert log.text("0" * 64) is None


# --- events -------------------------------------------------------------------------------------


def test_append_and_latest(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1"), record(log, "k2")], T0)
    log.append(
        [
            ev("k1", Status.SENDING, 1),
            ev("k1", Status.DEFERRED, 2, error_class=ErrorClass.TRANSIENT, reason="502"),
            ev("k2", Status.SENDING, 2),
            ev("k2", Status.ACCEPTED, 3, provider_id="BizId-42"),
        ]
    )
    log.append([ev("k1", Status.SENDING, 3), ev("k1", Status.ACCEPTED, 4, provider_id="BizId-43")])
    log.append([])

    latest = log.latest(["k1", "k2", "nope"])
    assert set(latest) == {"k1", "k2"}
    assert latest["k1"].status is Status.ACCEPTED
    assert latest["k1"].provider_id == "BizId-43"
    assert latest["k1"].attempt == 2
    assert latest["k1"].status_at == T0 + dt.timedelta(minutes=4)
    assert latest["k1"].status_at.tzinfo is dt.UTC
    assert latest["k2"].provider_id == "BizId-42"

    events = log.events("k1")
    assert [e.status for e in events] == [
        Status.PLANNED,
        Status.SENDING,
        Status.DEFERRED,
        Status.SENDING,
        Status.ACCEPTED,
    ]
    assert events[2] == Event(
        "k1", Status.DEFERRED, T0 + dt.timedelta(minutes=2), ErrorClass.TRANSIENT, "502", None, 1
    )
    assert [e.attempt for e in events] == [0, 1, 1, 2, 2]  # outcomes carry their attempt
    assert log.events("nope") == []


def test_append_refuses_unknown_keys_and_naive_times(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1")], T0)
    with pytest.raises(LogStoreError, match="unknown delivery keys: ghost"):
        log.append([ev("k1", Status.SENDING), ev("ghost", Status.SENDING)])
    assert [e.status for e in log.events("k1")] == [Status.PLANNED]  # all or nothing
    log.append([ev("k1", Status.SENDING)])  # the writer carries on
    assert log.latest(["k1"])["k1"].status is Status.SENDING
    with pytest.raises(LogStoreError, match="aware"):
        log.append([Event("ghost", Status.SENDING, dt.datetime(2026, 3, 2))])
    naive_check = ev("k1", Status.ACCEPTED, 2, next_check=dt.datetime(2026, 3, 2, 12))
    with pytest.raises(LogStoreError, match=r"Event\.next_check"):
        log.append([naive_check])
    with pytest.raises(LogStoreError, match=r"Event\.next_check"):
        log.start_attempt([naive_check], owner="me", lease_until=T0)
    assert log.latest(["k1"])["k1"].status is Status.SENDING  # nothing written


def test_concurrent_append_loses_nothing_and_keeps_order(log: DeliveryLog) -> None:
    threads, per_thread = 50, 20
    keys = [f"k{i:02d}" for i in range(threads)]
    log.add_deliveries([record(log, k) for k in keys], T0)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(key: str) -> None:
        try:
            start.wait()
            for i in range(per_thread):  # sending, deferred, sending, deferred ...
                status = Status.SENDING if i % 2 == 0 else Status.DEFERRED
                assert log.append([ev(key, status, i)]) == [None]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in pool:
        t.start()
    for t in pool:
        t.join()

    assert errors == []
    for key in keys:
        assert [e.attempt for e in log.events(key)] == [0] + [i // 2 + 1 for i in range(per_thread)]
    assert {s.attempt for s in log.latest(keys).values()} == {per_thread // 2}


def test_a_refused_append_fails_only_its_own_caller(log: DeliveryLog) -> None:
    keys = [f"k{i:02d}" for i in range(20)]
    log.add_deliveries([record(log, k) for k in keys], T0)
    start = threading.Barrier(len(keys) + 1)
    outcome: dict[str, BaseException | None] = {}

    def worker(key: str) -> None:
        start.wait()
        try:
            log.append([ev(key, Status.SENDING)])
            outcome[key] = None
        except BaseException as exc:
            outcome[key] = exc

    pool = [threading.Thread(target=worker, args=(k,)) for k in [*keys, "ghost"]]
    for t in pool:
        t.start()
    for t in pool:
        t.join()

    assert isinstance(outcome.pop("ghost"), LogStoreError)
    assert outcome == dict.fromkeys(keys)
    assert {s.status for s in log.latest(keys).values()} == {Status.SENDING}


def test_closed_log_refuses_writes(log_url: str) -> None:
    log = DeliveryLog.open(log_url, hash_key=HASH_KEY)
    log.close()
    log.close()  # twice is fine
    with pytest.raises(LogStoreError, match="delivery log is closed"):
        log.append([ev("k1", Status.SENDING)])


# --- queries ------------------------------------------------------------------------------------


def test_unfinished(log: DeliveryLog) -> None:
    log.add_deliveries(
        [record(log, f"k{i}", channel="bot" if i >= 5 else "sms") for i in range(8)], T0
    )
    chains = {
        "k1": Status.SENDING,
        "k2": Status.ACCEPTED,
        "k3": Status.UNKNOWN,
        "k4": Status.INTERRUPTED,
        "k5": Status.FAILED,
        "k6": Status.DELIVERED,
        "k7": Status.DEFERRED,
    }
    log.append([e for key, status in chains.items() for e in walk(key, status)])
    assert [s.key for s in log.unfinished()] == ["k0", "k1", "k3", "k4", "k7"]
    assert [s.key for s in log.unfinished(CAMPAIGN, channel_id="bot")] == ["k7"]
    assert log.unfinished("other") == []


def test_deliveries_filters(log: DeliveryLog) -> None:
    later = T0 + dt.timedelta(days=1)
    log.add_deliveries(
        [
            record(log, "a", address=PHONE),
            record(log, "b", channel="bot", target="g1"),
            record(log, "c", rule="rule-2", occurrence="occ-2", scheduled_at=later),
            record(log, "d", rule="rule-2", occurrence="occ-2", scheduled_at=later, address=PHONE),
        ],
        T0,
    )
    log.append([*walk("b", Status.DELIVERED), *walk("d", Status.FAILED)])

    def keys(**kw: object) -> list[str]:
        return [s.key for s in log.deliveries(**kw)]  # type: ignore[arg-type]

    assert keys() == ["a", "b", "c", "d"]
    assert keys(since=later) == ["c", "d"]
    assert keys(until=later) == ["a", "b"]
    assert keys(since=T0, until=T0 + dt.timedelta(seconds=1)) == ["a", "b"]
    assert keys(rule="rule-2") == ["c", "d"]
    assert keys(channel="bot") == ["b"]
    assert keys(target="g1") == ["b"]
    assert keys(occurrence="occ-2") == ["c", "d"]
    assert keys(status=Status.PLANNED) == ["a", "c"]
    assert keys(status=[Status.DELIVERED, Status.FAILED]) == ["b", "d"]
    assert keys(recipient_hash=log.recipient_hash(PHONE)) == ["a", "d"]
    assert keys(recipient_hash=log.recipient_hash(PHONE), status=Status.FAILED) == ["d"]
    assert keys(limit=3) == ["a", "b", "c"]
    assert keys(channel="none") == []
    assert keys(campaign=CAMPAIGN) == ["a", "b", "c", "d"]
    assert keys(campaign="other") == []


def test_coverage_counts_latest_statuses(log: DeliveryLog) -> None:
    later = T0 + dt.timedelta(days=1)
    log.add_deliveries(
        [record(log, f"s{i}") for i in range(8)]
        + [record(log, "b0", channel="bot", target="g1")]
        + [record(log, "x0", occurrence="occ-2", rule="rule-2", scheduled_at=later)],
        T0,
    )
    chains = {
        "s0": Status.ACCEPTED,
        "s1": Status.DELIVERED,
        "s2": Status.FAILED,
        "s3": Status.UNKNOWN,
        "s4": Status.SENDING,
        "s5": Status.INTERRUPTED,
        "s6": Status.SKIPPED,
        "b0": Status.DELIVERED,
    }
    log.append([e for key, status in chains.items() for e in walk(key, status)])
    rows = log.coverage()
    assert [(r.occurrence_id, r.channel_id) for r in rows] == [
        ("occ-1", "bot"),
        ("occ-1", "sms"),
        ("occ-2", "sms"),
    ]
    bot, sms, other = rows
    assert (sms.rule_id, sms.scheduled_at) == ("rule-1", T0)
    assert (
        sms.targeted,
        sms.accepted,
        sms.delivered,
        sms.failed,
        sms.unknown,
        sms.skipped,
        sms.waiting,
    ) == (8, 2, 1, 1, 3, 1, 1)  # unknown: unknown, sending, interrupted; waiting: s7
    assert (bot.targeted, bot.accepted, bot.delivered) == (1, 1, 1)
    assert (other.targeted, other.waiting) == (1, 1)
    assert [r.channel_id for r in log.coverage(channel="bot")] == ["bot"]
    assert [r.occurrence_id for r in log.coverage(since=later)] == ["occ-2"]
    assert [r.occurrence_id for r in log.coverage(rule="rule-2")] == ["occ-2"]
    assert [r.channel_id for r in log.coverage(target="g1")] == ["bot"]
    assert [r.channel_id for r in log.coverage(occurrence="occ-1", until=later)] == ["bot", "sms"]
    assert log.coverage(channel="none") == []


# --- occurrences --------------------------------------------------------------------------------


def test_begin_occurrence_only_once(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        assert log.begin_occurrence(CAMPAIGN, "occ-1", "rule-1", T0, T0) is True
        assert log.begin_occurrence(CAMPAIGN, "occ-1", "rule-1", T0, T0) is False
        # another campaign's occurrence of the same id is its own
        assert log.begin_occurrence("township", "occ-1", "rule-1", T0, T0) is True
        log.record_occurrence(
            CAMPAIGN, "occ-1", "rule-1", T0, "done", "", T0 + dt.timedelta(minutes=5)
        )
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:  # a restart must not fire it again
        assert (
            log.begin_occurrence(CAMPAIGN, "occ-1", "rule-1", T0, T0 + dt.timedelta(hours=1))
            is False
        )
        found = log.occurrence_states(CAMPAIGN, T0, T0 + dt.timedelta(days=1))
        other = log.occurrence_states("township", T0, T0 + dt.timedelta(days=1))
    assert list(found) == ["occ-1"]
    assert found["occ-1"].status == "done"
    assert found["occ-1"].at == T0 + dt.timedelta(minutes=5)
    assert other["occ-1"].status == "fired"


def test_occurrence_states_latest_record_in_half_open_range(log: DeliveryLog) -> None:
    t1, t2 = T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2)
    log.record_occurrence(CAMPAIGN, "m", "r", T0, "missed", "nothing ran", T0)
    assert log.begin_occurrence(CAMPAIGN, "m", "r", T0, t1) is True  # a late run is not blocked
    log.record_occurrence(CAMPAIGN, "s", "r", t1, "skipped", "holiday", t1)
    log.record_occurrence(CAMPAIGN, "later", "r", t2, "failed", "boom", t2)
    found = log.occurrence_states(CAMPAIGN, T0, t2)
    assert {k: v.status for k, v in found.items()} == {"m": "fired", "s": "skipped"}
    assert found["s"].reason == "holiday"
    assert found["s"].scheduled_at == t1
    with pytest.raises(LogStoreError, match="unknown occurrence status"):
        log.record_occurrence(CAMPAIGN, "x", "r", T0, "fired", "", T0)


# --- what the database itself guarantees --------------------------------------------------------


def test_database_refuses_update_and_delete(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        rec = record(log, "k1")
        body = '{"params":{"topic.name":"刷单"}}'
        log.add_deliveries(
            [
                dataclasses.replace(
                    rec, payload=body, payload_sha256=hashlib.sha256(body.encode()).hexdigest()
                )
            ],
            T0,
        )
        log.record_occurrence(CAMPAIGN, "occ-1", "rule-1", T0, "done", "", T0)
    statements = {
        "messages": "UPDATE messages SET text = 'forged'",
        "deliveries": "UPDATE deliveries SET recipient_display = 'x'",
        "delivery_events": "UPDATE delivery_events SET status = 'delivered'",
        "occurrences": "UPDATE occurrences SET status = 'missed'",
        "log_meta": "UPDATE log_meta SET value = 'forged'",
        "payloads": "UPDATE payloads SET body = 'forged'",
    }
    for table, update in statements.items():
        for sql in (update, f"DELETE FROM {table}"):
            with raw_connection(log_url) as conn, pytest.raises(sa.exc.DatabaseError) as caught:
                conn.exec_driver_sql(sql)
            assert "delivery log is append-only" in str(caught.value), sql
    if log_url.startswith("postgresql"):
        with raw_connection(log_url) as conn, pytest.raises(sa.exc.DatabaseError, match="TRUNCATE"):
            conn.exec_driver_sql("TRUNCATE delivery_events")
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        assert [e.status for e in log.events("k1")] == [Status.PLANNED]
        assert log.text(record(log, "k1").text_sha256) == TEXT


def test_no_clear_phone_number_is_stored(log_url: str, tmp_path: Path) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        rec = record(log, "k1", address=PHONE)
        log.add_deliveries([rec], T0)
        log.append([ev("k1", Status.SENDING), ev("k1", Status.ACCEPTED, provider_id="BizId-1")])
    with raw_connection(log_url) as conn:
        dump = "\n".join(
            repr(row) for table in TABLES for row in conn.exec_driver_sql(f"SELECT * FROM {table}")
        )
    assert rec.recipient_hash in dump and "138****5678" in dump
    assert PHONE not in dump
    if log_url.startswith("sqlite"):
        files = list((tmp_path / "state").iterdir())
        raw = b"".join(f.read_bytes() for f in files)
        assert rec.recipient_hash.encode() in raw
        assert PHONE.encode() not in raw


def test_recipient_hash_is_keyed(tmp_path: Path) -> None:
    one, two = default_url(tmp_path / "one"), default_url(tmp_path / "two")
    with DeliveryLog.open(one, hash_key=b"one") as a, DeliveryLog.open(two, hash_key=b"two") as b:
        assert a.recipient_hash(PHONE) == a.recipient_hash(PHONE)
        assert a.recipient_hash(PHONE) != b.recipient_hash(PHONE)
        assert len(a.recipient_hash(PHONE)) == 64
    with pytest.raises(LogStoreError, match="non-empty"):
        DeliveryLog.open(one, hash_key=b"")


# --- errors people see --------------------------------------------------------------------------


def test_path_under_a_file_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("not a folder")
    path = tmp_path / "somefile" / "db.sqlite3"
    with pytest.raises(LogStoreError) as caught:
        DeliveryLog.open(f"sqlite:///{path}", hash_key=HASH_KEY)
    assert str(caught.value) == (
        f"日志库无法写入 delivery log is not writable: {path}"
        f" ({tmp_path / 'somefile'} is a file, not a folder)"
    )


def test_read_only_folder_is_not_writable(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user ignores folder permissions (root with CAP_DAC_OVERRIDE)")
        with pytest.raises(LogStoreError) as caught:
            DeliveryLog.open(f"sqlite:///{folder}/db.sqlite3", hash_key=HASH_KEY)
    finally:
        folder.chmod(0o700)
    assert str(caught.value) == (
        f"日志库无法写入 delivery log is not writable: {folder}/db.sqlite3 (Permission denied)"
    )


def test_locked_database(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY, busy_timeout=0.2) as log:
        log.add_deliveries([record(log, "k1")], T0)
        if log_url.startswith("sqlite"):
            path = sa.make_url(log_url).database
            assert path
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            release = other.close
        else:
            engine = sa.create_engine(log_url, poolclass=sa.pool.NullPool)
            holder = engine.connect()
            holder.exec_driver_sql("LOCK TABLE delivery_state IN ACCESS EXCLUSIVE MODE")

            def release() -> None:
                holder.close()
                engine.dispose()

        try:
            with pytest.raises(LogStoreError) as caught:
                log.append([ev("k1", Status.SENDING)])
        finally:
            release()
        message = str(caught.value)
        assert message.startswith("日志库被锁定 delivery log is locked: ")
        assert "gave up after 0.2 s" in message
        log.append([ev("k1", Status.SENDING)])  # works again once the lock is gone
        assert log.latest(["k1"])["k1"].status is Status.SENDING


def test_errors_the_driver_raises_itself_read_as_the_ones_sqlalchemy_wraps() -> None:
    """The writer's hot statements go to the driver directly: its own errors are translated
    the same way (a refused row fails its caller; a lost server is unreachable)."""
    import psycopg

    lite = Target(sa.make_url("sqlite:////var/log.sqlite3"), Path("/var/log.sqlite3"), 5.0)
    refused = lite.translate(sqlite3.IntegrityError("UNIQUE constraint failed: deliveries.key"))
    assert isinstance(refused, RefusedError) and "refused the write" in str(refused)
    locked = lite.translate(sqlite3.OperationalError("database is locked"))
    assert str(locked).startswith("日志库被锁定 delivery log is locked: /var/log.sqlite3")
    pg = Target(sa.make_url("postgresql+psycopg://bc:s3cr3t@db.example/log"), None, 5.0)
    lost = pg.translate(psycopg.OperationalError("server closed the connection (s3cr3t)"))
    assert str(lost).startswith("日志库无法连接 delivery log is unreachable: ")
    assert "s3cr3t" not in str(lost)
    assert isinstance(pg.translate(psycopg.errors.UniqueViolation("duplicate key")), RefusedError)


def test_unreachable_postgresql_hides_the_password() -> None:
    url = "postgresql+psycopg://postgres:s3cr3t-pw@127.0.0.1:1/test"
    with pytest.raises(LogStoreError) as caught:
        DeliveryLog.open(url, hash_key=HASH_KEY)
    message = str(caught.value)
    assert message.startswith(
        "日志库无法连接 delivery log is unreachable: postgresql+psycopg://postgres:***@127.0.0.1:1/test ("
    )
    assert "s3cr3t-pw" not in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("not a url", "not a url (Could not parse SQLAlchemy URL"),
        ("mysql://u:pw@host/db", "mysql://u:***@host/db (use sqlite:///"),
        ("sqlite://", "sqlite:// (SQLite needs a file path)"),
        ("sqlite:///:memory:", "sqlite:///:memory: (SQLite needs a file path)"),
    ],
)
def test_bad_url(url: str, reason: str) -> None:
    with pytest.raises(LogStoreError) as caught:
        DeliveryLog.open(url, hash_key=HASH_KEY)
    assert str(caught.value).startswith(f"日志库地址无效 delivery log URL is invalid: {reason}")
