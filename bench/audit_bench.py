"""Tamper evidence at scale: the cost of the hash chain on 1,000,000 deliveries, on SQLite
and PostgreSQL, against plain indexed inserts on the same database server in the same run.

Two logs are created by the real migrations side by side (two SQLite files in one folder,
two schemas of one PostgreSQL database). Batches of deliveries, each with its planned and
accepted events and its current-state row (what the log's writer writes for a send), go
into both, alternately, one transaction per batch: into the plain log as they are, into
the chained log between `chain.lock` and `chain.seal`, as the group writer does. Then:

* insert rate with hash chaining ÷ plain insert rate (target: at least 0.5);
* `verify-log` on the chained log (every row re-read and re-hashed, every link checked)
  against a plain read of the same rows (target: under 30 s for 1,000,000 deliveries).

    python -m bench audit [--quick]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("PG_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HASH_KEY = b"audit-bench"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
FULL = 1_000_000
QUICK = 50_000
BATCH = 1_000  # deliveries per transaction (the group writer commits up to 2,000 jobs at once)
TEXTS = 100  # distinct message texts
INSERT_TARGET = 0.5  # chained rate ÷ plain rate, at least
VERIFY_TARGET = 30.0  # seconds for 1,000,000 deliveries, at most


def _stamp(value: dt.datetime, sqlite: bool) -> Any:
    return value.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else value


def _batch(start: int, n: int, sqlite: bool, shas: list[str]) -> tuple[list[Any], ...]:
    """Rows of deliveries start+1 .. start+n: deliveries, events, states (ids explicit for
    deliveries; events take the next ids)."""
    mark_at = [
        _stamp(T0 + dt.timedelta(seconds=i), sqlite) for i in range(start + 1, start + n + 1)
    ]
    deliveries, events, states = [], [], []
    for offset, at in enumerate(mark_at):
        i = start + offset + 1
        rhash = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        deliveries.append(
            (
                i,
                f"k{i:012d}",
                "bench",
                f"blast@{i // 10_000}",
                "blast",
                "sms",
                "ep",
                f"t{i % 500}",
                f"138****{i % 10_000:04d}",
                rhash,
                "sms",
                "sms/a.j2",
                "t",
                shas[i % TEXTS],
                at,
                "县/镇/村",
                None,
            )
        )
        events.append((i, "planned", at, None, "", None, 0, 0))
        events.append((i, "accepted", at, None, "", f"biz-{i}", 1, 0))
        states.append((i, "bench", "sms", "accepted", at, None, None, "", f"biz-{i}", rhash))
    return deliveries, events, states


INSERT_DELIVERIES = (
    "INSERT INTO deliveries (id, key, campaign, occurrence_id, rule_id, channel_id, endpoint,"
    " target_id, recipient_display, recipient_hash, kind, template, template_sha, text_sha256,"
    " scheduled_at, target_path, payload_sha256) VALUES ({})"
)
INSERT_EVENTS = (
    "INSERT INTO delivery_events (delivery_id, status, at, error_class, reason, provider_id,"
    " attempt, step) VALUES ({})"
)
INSERT_STATES = (
    "INSERT INTO delivery_state (delivery_id, campaign, channel_id, status, since, next_check,"
    " error_class, reason, provider_id, recipient_hash) VALUES ({})"
)


def _write(conn: sa.Connection, rows: tuple[list[Any], ...], chained: bool) -> None:
    from broadcaster.log import chain

    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    deliveries, events, states = rows
    if chained:
        chain.lock(conn)
    conn.exec_driver_sql(INSERT_DELIVERIES.format(", ".join([mark] * 17)), deliveries)
    conn.exec_driver_sql(INSERT_EVENTS.format(", ".join([mark] * 8)), events)
    conn.exec_driver_sql(INSERT_STATES.format(", ".join([mark] * 10)), states)
    if chained:
        chain.seal(conn)


def _engine(url: str) -> sa.Engine:
    """An engine like the log's writer: WAL, synchronous=NORMAL, BEGIN IMMEDIATE on SQLite."""
    from broadcaster.log.engines import parse_url, pg_engine, sqlite_engine

    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed, 30.0, immediate=True, pool_size=1)
    return pg_engine(parsed, 30.0, pool_size=1)


def build(plain_url: str, chained_url: str, n: int) -> dict[str, float]:
    """Insert n deliveries into both logs, alternating batches; seconds spent on each."""
    from broadcaster.log import DeliveryLog

    for url in (plain_url, chained_url):
        DeliveryLog.open(url, hash_key=HASH_KEY).close()  # the real migrations
    sqlite = plain_url.startswith("sqlite")
    texts = [f"【反诈】第 {t} 条提醒：凡是刷单都是诈骗" for t in range(TEXTS)]
    shas = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    spent = {"plain": 0.0, "chained": 0.0}
    engines = {"plain": _engine(plain_url), "chained": _engine(chained_url)}
    try:
        for name, engine in engines.items():
            with engine.begin() as conn:
                if name == "chained":
                    from broadcaster.log import chain

                    chain.lock(conn)
                mark = "?" if sqlite else "%s"
                conn.exec_driver_sql(
                    f"INSERT INTO messages (sha256, text) VALUES ({mark}, {mark})",
                    list(zip(shas, texts, strict=True)),
                )
                if name == "chained":
                    chain.seal(conn)
        for start in range(0, n, BATCH):
            rows = _batch(start, min(BATCH, n - start), sqlite, shas)
            for name, engine in engines.items():
                t0 = time.perf_counter()
                with engine.begin() as conn:
                    _write(conn, rows, chained=name == "chained")
                spent[name] += time.perf_counter() - t0
        for engine in engines.values():
            with engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
    finally:
        for engine in engines.values():
            engine.dispose()
    return spent


def plain_read(url: str) -> tuple[float, int]:
    """Seconds to read every chained row once, a page at a time straight from the driver
    (as `verify` reads them), without hashing."""
    from broadcaster.log import chain

    engine = sa.create_engine(url, poolclass=NullPool)
    rows = 0
    t0 = time.perf_counter()
    with engine.connect() as conn:
        mark = "?" if conn.dialect.name == "sqlite" else "%s"
        driver: Any = conn.connection.driver_connection
        for table in chain.CHAINED:
            after = -1
            while True:
                page = driver.execute(
                    f"{table.select(conn.dialect.name)} WHERE id > {mark} ORDER BY id LIMIT {chain.PAGE}",
                    (after,),
                ).fetchall()
                rows += len(page)
                if len(page) < chain.PAGE:
                    break
                after = int(page[-1][0])
    engine.dispose()
    return time.perf_counter() - t0, rows


def measure(plain_url: str, chained_url: str, n: int) -> dict[str, Any]:
    from broadcaster.log import DeliveryLog

    spent = build(plain_url, chained_url, n)
    out: dict[str, Any] = {"spent": spent}
    with DeliveryLog.open(chained_url, hash_key=HASH_KEY) as log:
        t0 = time.perf_counter()
        verdict = log.verify()
        out["verify"] = time.perf_counter() - t0
        out["verdict"] = verdict
    out["read"], out["rows"] = plain_read(chained_url)
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
    plain, chained = r["spent"]["plain"], r["spent"]["chained"]
    verdict = r["verdict"]
    ratio = plain / chained
    scaled = r["verify"] * FULL / n
    print(f"-- {name}: {n:,} deliveries, {2 * n:,} events, batches of {BATCH:,}")
    print(
        f"insert rate, plain indexed    {n / plain:10,.0f} deliveries/s"
        f"  ({3 * n / plain:,.0f} rows/s, + states)"
    )
    print(
        f"insert rate, hash-chained     {n / chained:10,.0f} deliveries/s"
        f"  ratio {ratio:.2f}× (target ≥ {INSERT_TARGET}:"
        f" {'ok' if ratio >= INSERT_TARGET else 'UNDER'})"
    )
    print(
        f"verify-log                    {r['verify']:10.1f} s  for {verdict.records:,} records"
        f" in {verdict.links:,} links ({'intact' if verdict.ok else verdict.broken});"
        f" per 1,000,000 deliveries {scaled:.1f} s"
        f" (target < {VERIFY_TARGET:.0f} s: {'ok' if scaled < VERIFY_TARGET else 'OVER'})"
    )
    print(
        f"plain read of the same rows   {r['read']:10.1f} s  for {r['rows']:,} rows;"
        f" verify ÷ read {r['verify'] / r['read']:.1f}×"
    )


def main(
    *, quick: bool = False, backends: tuple[str, ...] = ("sqlite", "postgresql")
) -> dict[str, Any]:
    n = QUICK if quick else FULL
    results: dict[str, Any] = {}
    print(f"\n== audit: the hash chain at {n:,} deliveries ==")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
            results["sqlite"] = measure(
                f"sqlite:///{tmp}/plain.sqlite3", f"sqlite:///{tmp}/chained.sqlite3", n
            )
            report("SQLite", n, results["sqlite"])
    if "postgresql" not in backends:
        return results
    from tests.log.fixtures import postgres_unavailable

    reason = postgres_unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            raise RuntimeError(f"CI needs PostgreSQL: {reason}")
        print(f"PostgreSQL: not reachable ({reason})")
        return results
    plain, drop_plain = pg_url()
    chained, drop_chained = pg_url()
    try:
        results["postgresql"] = measure(plain, chained, n)
        report("PostgreSQL", n, results["postgresql"])
    finally:
        drop_plain()
        drop_chained()
    return results


if __name__ == "__main__":  # python -m bench.audit_bench [--quick] [sqlite|postgresql]
    chosen = tuple(a for a in sys.argv[1:] if a in ("sqlite", "postgresql"))
    main(quick="--quick" in sys.argv, backends=chosen or ("sqlite", "postgresql"))
