"""Data for the web benchmark: a big delivery log built with bulk SQL inserts (not through
the engine), a log of accepted deliveries waiting for receipts, and the campaign both
are read with. Used by `bench/web_bench.py`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
LOG_KEY = "bench-web-log-key"


def numbers(n: int) -> list[str]:
    return [f"+86138{i:08d}" for i in range(1, n + 1)]


def mask(number: str) -> str:
    return f"{number[3:6]}****{number[-4:]}"


# --- building a big log with bulk inserts --------------------------------------------------------


def stamp(value: dt.datetime) -> str:
    """A time as the log stores it on SQLite (UTC, fixed width)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


DELIVERY_COLUMNS = (
    "id",
    "key",
    "campaign",
    "occurrence_id",
    "rule_id",
    "channel_id",
    "endpoint",
    "target_id",
    "recipient_display",
    "recipient_hash",
    "kind",
    "template",
    "template_sha",
    "text_sha256",
    "scheduled_at",
    "target_path",
    "payload_sha256",
)
STATE_COLUMNS = (
    "delivery_id",
    "campaign",
    "channel_id",
    "status",
    "since",
    "next_check",
    "error_class",
    "reason",
    "provider_id",
    "recipient_hash",
    "attempts",
    "resends",
    "parts_done",
    "lease_owner",
    "lease_until",
)
EVENT_COLUMNS = (
    "id",
    "delivery_id",
    "status",
    "at",
    "error_class",
    "reason",
    "provider_id",
    "attempt",
    "step",
    "detail",
    "actor",
)


class Bulk:
    """Plain sqlite3 inserts into a migrated log: its triggers stay, its indexes are made
    again afterwards from the schema's own statements."""

    def __init__(self, url: str):
        import sqlite3

        self.db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")  # a throwaway load: back to WAL at the end
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("PRAGMA cache_size=-1000000")
        # indexes are dropped and made again at the end: one sort instead of random inserts
        self.indexes = [
            sql
            for (sql,) in self.db.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                " AND tbl_name IN ('deliveries', 'delivery_state', 'delivery_events')"
            )
        ]
        self.db.execute("BEGIN")
        for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name IN ('deliveries', 'delivery_state', 'delivery_events')"
        ).fetchall():
            self.db.execute(f"DROP INDEX {name}")

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def close(self) -> None:
        for sql in self.indexes:
            self.db.execute(sql)
        self.db.execute("COMMIT")
        self.db.execute("ANALYZE")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.close()


def build_log(
    url: str, *, sms: int, blasts: int, groups: int, group_sends: int, today: dt.date
) -> int:
    """Fill a fresh log; return the number of deliveries."""
    from broadcaster.log import DeliveryLog

    with DeliveryLog.open(url, hash_key=LOG_KEY.encode()) as log:  # migrated, key id recorded
        hashes = [log.recipient_hash(n) for n in numbers(sms)]
    shown = [mask(n) for n in numbers(sms)]
    texts = {
        kind: f"【基准派出所】{kind} 提醒：凡是要求先垫付资金的刷单兼职都是诈骗，请拨打96110。"
        for kind in ("sms", "bot")
    }
    shas = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in texts.items()}
    bulk = Bulk(url)
    bulk.insert("messages", ("sha256", "text"), [(shas[k], v) for k, v in texts.items()])
    sends: list[tuple[str, str, str, dt.datetime]] = []
    for b in range(blasts):  # every 12 days back from today, 09:00
        day = today - dt.timedelta(days=12 * (blasts - 1 - b))
        sends.append(("sms-blast", "sms", "sms", dt.datetime.combine(day, dt.time(9), TZ)))
    for g in range(group_sends):  # daily at 10:00, the newest today
        day = today - dt.timedelta(days=group_sends - 1 - g)
        sends.append(("groups", "handoff", "bot", dt.datetime.combine(day, dt.time(10), TZ)))
    did = event_id = 0
    for rule, channel, kind, at in sends:
        occurrence = f"{rule}@{at:%Y-%m-%dT%H:%M}"
        when = stamp(at)
        bulk.insert(
            "occurrences",
            ("occurrence_id", "rule_id", "scheduled_at", "status", "reason", "at", "campaign"),
            [(occurrence, rule, when, s, "", when, "bench") for s in ("fired", "done")],
        )
        if kind == "sms":
            recipients = [("people", shown[i], hashes[i]) for i in range(sms)]
        else:
            recipients = [(f"g{g:04d}", f"群{g:04d}", f"grp{g:04d}") for g in range(groups)]
        rows, states, events = [], [], []
        for target, display, rhash in recipients:
            did += 1
            r = (did * 7919) % 100
            if kind == "sms":
                status, cls = (
                    ("delivered", None)
                    if r < 90
                    else ("accepted", None)
                    if r < 96
                    else ("failed", "recipient")
                    if r < 99
                    else ("unknown", "unknown")
                )
            else:
                status, cls = ("accepted", None) if r < 97 else ("failed", "transient")
            key = hashlib.sha256(f"{occurrence}|{target}|{rhash}".encode()).hexdigest()[:32]
            rows.append(
                (
                    did,
                    key,
                    "bench",
                    occurrence,
                    rule,
                    channel,
                    "e",
                    target,
                    display,
                    rhash,
                    kind,
                    f"{kind}/order_brushing.j2",
                    "t" * 64,
                    shas[kind],
                    when,
                    "基准县",
                    None,
                )
            )
            path = ["planned", "sending", "unknown" if status == "unknown" else "accepted"]
            if status in ("delivered", "failed"):
                path.append(status)
            last = when
            for step, s in enumerate(path):
                last = stamp(at + dt.timedelta(seconds=2 * step + (90 if step == 3 else 0)))
                event_id += 1
                events.append(
                    (
                        event_id,
                        did,
                        s,
                        last,
                        cls if s in ("failed", "unknown") else None,
                        "",
                        f"biz-{did}" if step else None,
                        1 if step else 0,
                        0,
                        None,
                        None,
                    )
                )
            states.append(
                (
                    did,
                    "bench",
                    channel,
                    status,
                    last,
                    None,
                    cls,
                    "",
                    f"biz-{did}",
                    rhash,
                    1,
                    0,
                    0,
                    None,
                    None,
                )
            )
        bulk.insert("deliveries", DELIVERY_COLUMNS, rows)
        bulk.insert("delivery_state", STATE_COLUMNS, states)
        bulk.insert("delivery_events", EVENT_COLUMNS, events)
    bulk.close()
    return did


def build_receipt_log(url: str, n: int, at: dt.datetime) -> None:
    """n deliveries of the echo channel, accepted with provider ids echo-1 … echo-n."""
    from broadcaster.log import DeliveryLog

    with DeliveryLog.open(url, hash_key=LOG_KEY.encode()) as log:
        hashes = [log.recipient_hash(x) for x in numbers(n)]
    text = "回执基准 receipts benchmark"
    sha = hashlib.sha256(text.encode()).hexdigest()
    occurrence = f"sms-blast@{at:%Y-%m-%dT%H:%M}"
    when = stamp(at)
    bulk = Bulk(url)
    bulk.insert("messages", ("sha256", "text"), [(sha, text)])
    rows, states, events = [], [], []
    for i, h in enumerate(hashes, start=1):
        rows.append(
            (
                i,
                f"r{i:08d}",
                "bench",
                occurrence,
                "sms-blast",
                "receipts",
                "e",
                "people",
                "138****0000",
                h,
                "sms",
                "sms/order_brushing.j2",
                "t",
                sha,
                when,
                "",
                None,
            )
        )
        for step, s in enumerate(("planned", "sending", "accepted")):
            events.append(
                (
                    3 * (i - 1) + step + 1,
                    i,
                    s,
                    when,
                    None,
                    "",
                    f"echo-{i}" if step == 2 else None,
                    1 if step else 0,
                    0,
                    None,
                    None,
                )
            )
        states.append(
            (
                i,
                "bench",
                "receipts",
                "accepted",
                when,
                None,
                None,
                "",
                f"echo-{i}",
                h,
                1,
                0,
                0,
                None,
                None,
            )
        )
    bulk.insert("deliveries", DELIVERY_COLUMNS, rows)
    bulk.insert("delivery_state", STATE_COLUMNS, states)
    bulk.insert("delivery_events", EVENT_COLUMNS, events)
    bulk.close()


def delivered(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.exec_driver_sql(
            "SELECT count(*) FROM delivery_state WHERE status = 'delivered'"
        ).scalar_one()
    engine.dispose()
    return int(n)


# --- the campaign and the servers ----------------------------------------------------------------


def write_campaign(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text(
        "name,phone\n" + "".join(f"居民{i},{n[3:]}\n" for i, n in enumerate(numbers(5))),
        encoding="utf-8",
    )
    config = {
        "campaign": {"id": "bench", "name": "网页基准", "office": "基准派出所"},
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": ["order_brushing", "loan"]}},
        "targets": [
            {
                "id": "county",
                "name": "基准县",
                "audience": "villagers",
                "children": [
                    {
                        "id": "people",
                        "name": "短信名单",
                        "tags": ["sms_list"],
                        "contacts_file": "people.csv",
                    },
                    {"id": "g0000", "name": "群0000", "tags": ["group"]},
                ],
            }
        ],
        "channels": {
            "sms": {
                "type": "echo",
                "kind": "sms",
                "addressing": "contacts",
                "settings": {"token": {"env": "ECHO_TOKEN"}},
            },  # late outcomes: Waiting
            "handoff": {"type": "outbox", "kind": "bot"},
            "receipts": {
                "type": "echo",
                "kind": "sms",
                "addressing": "contacts",
                "settings": {"token": {"env": "ECHO_TOKEN"}},
            },
        },
        "rules": [
            {
                "id": "sms-blast",
                "channels": ["sms"],
                "targets": {"tags": ["sms_list"]},
                "when": {"monthdays": [5, 20], "at": "09:00"},
            },
            {
                "id": "groups",
                "channels": ["handoff"],
                "targets": {"tags": ["group"]},
                "when": {"daily": True, "at": "10:00"},
            },
        ],
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path
