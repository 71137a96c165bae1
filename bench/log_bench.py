"""The log at scale: the sweep and the unfinished lookup on 1,000,000 deliveries and
3,000,000 events, on SQLite and PostgreSQL, against the first engine's query in the
same run (the latest event of every delivery, found by max(id), then filtered).

The log is built by bulk SQL (the schema by the real migrations), 0.1% of deliveries
left unfinished and due, the rest accepted; then each query runs several times:

* sweep, idle: `claim_due` when nothing is due (what every ten-second sweep costs);
* sweep, due: `claim_due` taking the due deliveries (their leases ran out, as after a
  crash), in a write transaction;
* unfinished: `unfinished(campaign)`, every planned, sending or unknown delivery.

    python -m bench log [--quick]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from broadcaster.engine.recovery import SWEEP_BATCH

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("PG_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HASH_KEY = b"log-bench"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
FULL = 1_000_000
QUICK = 100_000
UNFINISHED_SHARE = 1000  # one delivery in this many is left unfinished

V1_UNFINISHED = """
SELECT d.key, e.status FROM deliveries d
JOIN delivery_events e ON e.id = (SELECT max(e2.id) FROM delivery_events e2 WHERE e2.delivery_id = d.id)
WHERE d.campaign = 'bench' AND e.status IN ('planned', 'sending', 'interrupted', 'unknown')
"""


def _stamp(value: dt.datetime, sqlite: bool) -> Any:
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else value


def build(url: str, n: int) -> None:
    """A log of n deliveries and 3n events through the real migrations, rows by bulk SQL."""
    from broadcaster.log import DeliveryLog

    DeliveryLog.open(url, hash_key=HASH_KEY).close()
    sqlite = url.startswith("sqlite")
    text_sha = hashlib.sha256(b"bench text").hexdigest()
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        mark = "?" if sqlite else "%s"
        if sqlite:
            cursor.execute("PRAGMA synchronous=OFF")
            for table in ("deliveries", "delivery_events"):  # the REPLACE guard, while loading
                cursor.execute(f"DROP TRIGGER {table}_no_replace")
        cursor.execute(
            f"INSERT INTO messages (sha256, text) VALUES ({mark}, {mark})", (text_sha, "bench text")
        )
        step = 50_000
        for start in range(0, n, step):
            ids = range(start + 1, min(n, start + step) + 1)
            at = [_stamp(T0 + dt.timedelta(seconds=i), sqlite) for i in ids]
            deliveries = [
                (
                    i,
                    f"k{i:012d}",
                    "bench",
                    f"blast@{i // 10_000}",
                    "blast",
                    "sms",
                    "ep",
                    "town",
                    "138****0000",
                    f"{i:064x}",
                    "sms",
                    "sms/a.j2",
                    "t",
                    text_sha,
                    a,
                    "县/镇",
                    None,
                )
                for i, a in zip(ids, at, strict=True)
            ]
            cursor.executemany(
                "INSERT INTO deliveries (id, key, campaign, occurrence_id, rule_id, channel_id,"
                " endpoint, target_id, recipient_display, recipient_hash, kind, template,"
                " template_sha, text_sha256, scheduled_at, target_path, payload_sha256)"
                f" VALUES ({', '.join([mark] * 17)})",
                deliveries,
            )
            events = []
            states = []
            for i, a in zip(ids, at, strict=True):
                done = i % UNFINISHED_SHARE != 0
                base = 3 * (i - 1)
                events.append((base + 1, i, "planned", a, None, "", None, 0, 0))
                events.append((base + 2, i, "sending", a, None, "", None, 1, 0))
                last = "accepted" if done else "unknown"
                events.append((base + 3, i, last, a, None if done else "unknown", "", "biz", 1, 0))
                states.append(
                    (
                        i,
                        "bench",
                        "sms",
                        last,
                        a,
                        None if done else a,
                        None if done else "unknown",
                        "",
                        "biz",
                        f"{i:064x}",
                        1,
                        0,
                        0,
                        None,
                        None,
                    )
                )
            cursor.executemany(
                "INSERT INTO delivery_events (id, delivery_id, status, at, error_class, reason,"
                f" provider_id, attempt, step) VALUES ({', '.join([mark] * 9)})",
                events,
            )
            cursor.executemany(
                "INSERT INTO delivery_state (delivery_id, campaign, channel_id, status, since,"
                " next_check, error_class, reason, provider_id, recipient_hash, attempts,"
                " resends, parts_done, lease_owner, lease_until)"
                f" VALUES ({', '.join([mark] * 15)})",
                states,
            )
        if sqlite:
            cursor.execute(
                "CREATE TRIGGER deliveries_no_replace BEFORE INSERT ON deliveries WHEN EXISTS"
                " (SELECT 1 FROM deliveries WHERE id = NEW.id OR key = NEW.key) BEGIN SELECT"
                " RAISE(ABORT, 'a row of deliveries cannot be replaced'); END"
            )
            cursor.execute(
                "CREATE TRIGGER delivery_events_no_replace BEFORE INSERT ON delivery_events WHEN"
                " EXISTS (SELECT 1 FROM delivery_events WHERE id = NEW.id) BEGIN SELECT"
                " RAISE(ABORT, 'a row of delivery_events cannot be replaced'); END"
            )
        else:
            cursor.execute("SELECT setval('deliveries_id_seq', %s)", (n,))
            cursor.execute("SELECT setval('delivery_events_id_seq', %s)", (3 * n,))
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


def timed(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """(median ms, max ms, last result)."""
    times = []
    result = None
    for i in range(repeat):
        t0 = time.perf_counter()
        result = fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), result


def measure(url: str, n: int) -> dict[str, Any]:
    from broadcaster.log import DeliveryLog

    t0 = time.perf_counter()
    build(url, n)
    built = time.perf_counter() - t0
    out: dict[str, Any] = {"build_seconds": built}
    with DeliveryLog.open(url, hash_key=HASH_KEY) as log:
        far = T0 + dt.timedelta(days=400)
        out["idle"] = timed(
            lambda i: log.claim_due(
                "bench",
                owner="o",
                now=T0 - dt.timedelta(days=1),
                lease_until=T0 - dt.timedelta(days=1) + dt.timedelta(seconds=60),
            ),
            7,
        )
        out["due"] = timed(  # one pass of the engine's sweep: SWEEP_BATCH deliveries
            lambda i: log.claim_due(
                "bench",
                owner=f"o{i}",
                now=far + dt.timedelta(minutes=2 * i),
                lease_until=far + dt.timedelta(minutes=2 * i + 1),
                limit=SWEEP_BATCH,
            ),
            5,
        )
        out["unfinished"] = timed(lambda i: log.unfinished("bench"), 5)
        out["v1"] = timed(
            lambda i: log.read(lambda conn: conn.exec_driver_sql(V1_UNFINISHED).all()), 3
        )
    return out


def pg_url() -> tuple[str, Any]:
    schema = f"bench_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()

    return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}", drop


def report(name: str, n: int, r: dict[str, Any]) -> None:
    unfinished = n // UNFINISHED_SHARE
    v1, v1_max, rows = r["v1"]
    print(
        f"-- {name}: {n:,} deliveries, {3 * n:,} events, {unfinished:,} unfinished"
        f" (built in {r['build_seconds']:.0f} s)"
    )
    for label, key, target in (
        ("sweep, nothing due", "idle", 50),
        (f"sweep pass, claiming {SWEEP_BATCH:,} of {unfinished:,} due", "due", 50),
        (f"unfinished lookup ({unfinished:,} rows)", "unfinished", 50),
    ):
        median, worst, result = r[key]
        count = len(result) if key != "idle" else 0
        verdict = "ok" if median < target else "OVER"
        print(
            f"{label:<36} median {median:8.1f} ms  max {worst:8.1f} ms  (target < {target} ms: {verdict})"
            + (f"  ÷ first engine's query: {median / v1:.4f}×" if key == "unfinished" else "")
            + (f"  [{count} rows]" if key == "due" else "")
        )
    print(
        f"{'first engine (latest event by max(id))':<36} median {v1:8.1f} ms  max {v1_max:8.1f} ms  [{len(rows):,} rows]"
    )


def main(*, quick: bool = False) -> dict[str, Any]:
    n = QUICK if quick else FULL
    results: dict[str, Any] = {}
    print(f"\n== log: the sweep and the unfinished lookup at {n:,} deliveries ==")
    with tempfile.TemporaryDirectory(prefix="log-bench-") as tmp:
        results["sqlite"] = measure(f"sqlite:///{tmp}/log.sqlite3", n)
        report("SQLite", n, results["sqlite"])
    from tests.log.fixtures import postgres_unavailable

    reason = postgres_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs PostgreSQL: {reason}")
        print(f"PostgreSQL: not reachable ({reason})")
        return results
    url, drop = pg_url()
    try:
        results["postgresql"] = measure(url, n)
        report("PostgreSQL", n, results["postgresql"])
    finally:
        drop()
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
