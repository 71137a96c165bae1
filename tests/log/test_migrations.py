"""Log v2 on an existing log: the upgrade from a populated 0001 database, the key id, and
what the database refuses even to someone with SQL (REPLACE on SQLite)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from broadcaster.errors import LogKeyMismatchError
from broadcaster.log import DeliveryLog, key_id
from broadcaster.log.engines import MIGRATIONS
from broadcaster.vocab import Status

from .fixtures import HASH_KEY, raw_connection
from .test_store import CAMPAIGN, T0, record

UTC = dt.UTC


def migrate_to(url: str, revision: str) -> None:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def v1_rows(url: str) -> None:
    """A small v1 log as the first engine wrote it: three deliveries, one occurrence missed."""
    at = T0.astimezone(UTC)
    stamp = (
        (lambda m: (at + dt.timedelta(minutes=m)).replace(tzinfo=None))
        if url.startswith("sqlite")
        else (lambda m: at + dt.timedelta(minutes=m))
    )
    with raw_connection(url) as conn, conn.begin():
        conn.execute(sa.text("INSERT INTO messages VALUES ('s1', '凡是刷单都是诈骗')"))
        for i, key in enumerate(("done", "cut", "quiet"), start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO deliveries (id, key, campaign, occurrence_id, rule_id, channel_id,"
                    " endpoint, target_id, recipient_display, recipient_hash, kind, template,"
                    " template_sha, text_sha256, scheduled_at) VALUES (:id, :key, 'county',"
                    " 'blast@2026-03-02T09:00', 'blast', 'sms', 'e', 'town', '138****0001',"
                    " :hash, 'sms', 'sms/a.j2', 't', 's1', :at)"
                ),
                {"id": i, "key": key, "hash": f"h{i}", "at": stamp(0)},
            )
        events = [
            (1, "planned", None, 0),
            (1, "sending", None, 1),
            (1, "accepted", "BizId-7", 2),
            (2, "planned", None, 0),
            (2, "sending", None, 1),
            (3, "planned", None, 0),
        ]
        for n, (delivery, status, provider, minute) in enumerate(events, start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_events (id, delivery_id, status, at, error_class, reason,"
                    " provider_id, attempt) VALUES (:n, :d, :s, :at, :cls, '', :p, 0)"
                ),
                {
                    "n": n,
                    "d": delivery,
                    "s": status,
                    "at": stamp(minute),
                    "p": provider,
                    "cls": "quiet" if (delivery, status) == (3, "planned") else None,
                },
            )
        for occurrence, status in (
            ("blast@2026-03-02T09:00", "fired"),
            ("blast@2026-03-01T09:00", "missed"),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO occurrences (occurrence_id, rule_id, scheduled_at, status, reason,"
                    " at) VALUES (:o, 'blast', :at, :s, '', :at)"
                ),
                {"o": occurrence, "s": status, "at": stamp(0)},
            )


def test_a_populated_0001_log_upgrades_with_its_projection(log_url: str) -> None:
    migrate_to(log_url, "0001")
    v1_rows(log_url)
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        states = log.latest(["done", "cut", "quiet"])
        assert {k: s.status for k, s in states.items()} == {
            "done": Status.ACCEPTED,
            "cut": Status.SENDING,
            "quiet": Status.DEFERRED,  # v1 wrote a quiet-hours deferral as planned + quiet
        }
        assert states["done"].provider_id == "BizId-7"
        assert states["done"].attempt == 1
        assert states["cut"].next_check is not None  # unfinished: the sweep looks at it
        assert [s.key for s in log.unfinished("county")] == ["cut", "quiet"]
        fired = log.occurrence_states(
            "county", T0 - dt.timedelta(days=2), T0 + dt.timedelta(days=1)
        )
        assert {k: s.status for k, s in fired.items()} == {
            "blast@2026-03-02T09:00": "fired",
            "blast@2026-03-01T09:00": "missed",  # no delivery: the log's only campaign
        }
        assert log.begin_occurrence("county", "blast@2026-03-02T09:00", "blast", T0, T0) is False
        assert log.begin_occurrence(CAMPAIGN, "blast@2026-03-02T09:00", "blast", T0, T0) is True
    with raw_connection(log_url) as conn:
        assert conn.exec_driver_sql(
            "SELECT value FROM log_meta WHERE name = 'key_id'"
        ).scalar() == key_id(HASH_KEY)
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            conn.exec_driver_sql("UPDATE occurrences SET status = 'done'")


def test_a_log_refuses_another_key(log_url: str) -> None:
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        log.add_deliveries([record(log, "k1")], T0)
    with pytest.raises(LogKeyMismatchError) as caught:
        DeliveryLog.open(log_url, hash_key=b"a-key-from-another-host")
    message = str(caught.value)
    assert f"written with key id {key_id(HASH_KEY)}" in message
    assert "BROADCASTER_LOG_KEY" in message
    assert HASH_KEY.decode() not in message


def test_replace_cannot_rewrite_the_sqlite_log(tmp_path: Path) -> None:
    """REPLACE deletes the old row without firing delete triggers: refused at insert."""
    url = f"sqlite:///{tmp_path / 'log.sqlite3'}"
    with DeliveryLog.open(url, hash_key=HASH_KEY) as log:
        rec = record(log, "k1")
        log.add_deliveries([rec], T0)
        log.begin_occurrence(CAMPAIGN, "occ-1", "rule-1", T0, T0)
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    attacks = [
        "INSERT OR REPLACE INTO occurrences (id, campaign, occurrence_id, rule_id, scheduled_at,"
        " status, reason, at) SELECT id, campaign, occurrence_id, rule_id, scheduled_at, 'missed',"
        " 'forged', at FROM occurrences",
        "REPLACE INTO occurrences (campaign, occurrence_id, rule_id, scheduled_at, status, reason,"
        " at) SELECT campaign, occurrence_id, rule_id, scheduled_at, 'fired', 'forged', at FROM"
        " occurrences",
        f"REPLACE INTO messages (sha256, text) VALUES ('{rec.text_sha256}', 'forged text')",
        "INSERT OR REPLACE INTO delivery_events (id, delivery_id, status, at, error_class, reason,"
        " provider_id, attempt, step) SELECT id, delivery_id, 'delivered', at, NULL, 'forged',"
        " NULL, 0, 0 FROM delivery_events",
        "INSERT OR REPLACE INTO deliveries SELECT id, key, campaign, occurrence_id, rule_id,"
        " channel_id, endpoint, target_id, 'forged', recipient_hash, kind, template, template_sha,"
        " text_sha256, scheduled_at, target_path, payload_sha256 FROM deliveries",
        "REPLACE INTO log_meta (name, value) VALUES ('key_id', 'forged')",
    ]
    for sql in attacks:
        with pytest.raises(sqlite3.DatabaseError, match="cannot be replaced"):
            db.execute(sql)
    db.close()
    with DeliveryLog.open(url, hash_key=HASH_KEY) as log:
        assert log.text(rec.text_sha256) == rec.text
        assert [e.reason for e in log.events("k1")] == [""]
        assert log.latest(["k1"])["k1"].recipient_display == rec.recipient_display
        fired = log.occurrence_states(CAMPAIGN, T0, T0 + dt.timedelta(days=1))
        assert fired["occ-1"].status == "fired" and fired["occ-1"].reason == ""
