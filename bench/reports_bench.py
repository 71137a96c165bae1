"""Reports benchmark: on a log of 1,000,000 deliveries (built with `bench/web_data.py`'s bulk
builder; copied into PostgreSQL with COPY when the server is there), the 一案三查 per-person
lookup's p99 beside a plain indexed query on the same database, and a monthly report's time
and peak memory (in a process of its own) beside a plain GROUP BY over the same month.

Targets (issue 16): lookup p99 < 5 ms; monthly report < 60 s and < 300 MB, whatever the
log's size.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.web_data import LOG_KEY, TZ, build_log, numbers, write_campaign

# sms list size, SMS blasts (every 12 days), groups, daily group sends
FULL = (50_000, 18, 1_000, 100)  # 900,000 + 100,000 = 1,000,000 deliveries
QUICK = (5_000, 18, 100, 100)  # 100,000
LOOKUPS = 400
PG_URL = os.environ.get("PG_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = ("messages", "occurrences", "deliveries", "delivery_state", "delivery_events")
TIME_COLUMNS = {"scheduled_at", "at", "since", "next_check", "lease_until"}


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def pg_schema_url() -> tuple[str, str] | None:
    """A fresh schema on the test PostgreSQL server, or None when it is not there."""
    try:
        import psycopg
        import sqlalchemy as sa

        url = sa.make_url(PG_URL)
        schema = f"bench_reports_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(
            host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
            connect_timeout=3, autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}", schema
    except Exception as exc:
        print(f"  PostgreSQL 不可用 not available ({type(exc).__name__}): SQLite only", flush=True)
        return None


def drop_schema(schema: str) -> None:
    import psycopg
    import sqlalchemy as sa

    url = sa.make_url(PG_URL)
    with psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, dbname=url.database,
        autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def copy_to_pg(sqlite_file: Path, url: str) -> None:
    """The same rows, into a migrated PostgreSQL log, by COPY."""
    import psycopg
    import sqlalchemy as sa

    from broadcaster.log import DeliveryLog

    DeliveryLog.open(url, hash_key=LOG_KEY.encode()).close()  # migrated, key id recorded
    parsed = sa.make_url(url)
    src = sqlite3.connect(sqlite_file)
    with psycopg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username,
        dbname=parsed.database, options=parsed.query.get("options"),  # type: ignore[arg-type]
    ) as conn:  # fmt: skip
        for table in TABLES:
            columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            times = [i for i, c in enumerate(columns) if c in TIME_COLUMNS]
            with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    values = list(row)
                    for i in times:
                        if values[i] is not None:
                            values[i] = values[i] + "+00"
                    copy.write_row(values)
        for table in ("deliveries", "delivery_events", "occurrences"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT coalesce(max(id), 1) FROM {table}))"
            )
        conn.execute("ANALYZE")
        conn.commit()
    src.close()


def lookups(url: str, sms: int) -> dict[str, Any]:
    """The project's per-person lookup (the console's and `broadcaster lookup`'s query) and a
    plain indexed SELECT of the same person's deliveries."""
    import sqlalchemy as sa

    from broadcaster.log import DeliveryLog
    from broadcaster.reports import lookup as lk

    rng = random.Random(16)
    chosen = [numbers(sms)[rng.randrange(sms)] for _ in range(LOOKUPS)]
    ours: list[float] = []
    plain: list[float] = []
    cpu: list[float] = []
    rows = 0
    with DeliveryLog.open(url, hash_key=LOG_KEY.encode()) as log:
        plain_query = sa.text(
            "SELECT id, scheduled_at, channel_id FROM deliveries WHERE recipient_hash = :h"
        )
        for number in chosen[:20]:  # warm both paths
            subject = lk.by_phone(None, number, log.recipient_hash)
            log.read(lambda conn, s=subject: lk.read_sections(conn, s, campaign="bench"))
        for number in chosen:
            started, cpu_started = time.perf_counter(), time.thread_time()
            subject = lk.by_phone(None, number, log.recipient_hash)
            log.read(lambda conn, s=subject: lk.read_sections(conn, s, campaign="bench"))
            ours.append((time.perf_counter() - started) * 1000)
            cpu.append((time.thread_time() - cpu_started) * 1000)
            rows += len(subject.rows)
            h = log.recipient_hash(number)
            started = time.perf_counter()
            log.read(lambda conn, h=h: conn.execute(plain_query, {"h": h}).all())
            plain.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": statistics.median(ours),
        "p99_ms": p99(ours),
        "cpu_p99_ms": p99(cpu),
        "plain_p50_ms": statistics.median(plain),
        "plain_p99_ms": p99(plain),
        "rows_per_lookup": rows / len(chosen),
    }


CHILD = """
import datetime as dt, json, sys, time
from pathlib import Path
from broadcaster.log import DeliveryLog
from broadcaster.model.config import load_campaign
from broadcaster.reports.chain import seal
from broadcaster.reports.figures import build_report
from broadcaster.reports.periods import deadlines, parse_period
from broadcaster.reports.writers import write_report
def status(key):  # this process image's own figures (ru_maxrss would include the parent's)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
url, config, period, out = sys.argv[1:5]
campaign = load_campaign(Path(config), today=dt.date.fromisoformat(period + "-01"))
before = status("VmRSS")
started = time.perf_counter()
with DeliveryLog.open(url, hash_key=b"bench-web-log-key") as log:
    chosen = parse_period("monthly", period)
    report = build_report(log, campaign, chosen, seal=seal(log),
        deadlines=deadlines(chosen, campaign.calendar), generated_at=dt.datetime.now(dt.UTC))
for fmt in ("xlsx", "csv", "html"):
    write_report(report, fmt, Path(out))
took = time.perf_counter() - started
print(json.dumps({"seconds": took, "peak_mb": status("VmHWM"), "before_mb": before,
    "deliveries": report.deliveries}))
"""


def monthly_report(url: str, config: Path, period: str, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(config), period, str(out)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def plain_month(url: str, period: str) -> float:
    """A plain GROUP BY channel and status over the same month (the baseline)."""
    import sqlalchemy as sa

    from broadcaster.log import DeliveryLog

    y, m = (int(p) for p in period.split("-"))
    since = dt.datetime(y, m, 1, tzinfo=TZ)
    until = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=TZ)
    query = sa.text(
        "SELECT d.channel_id, s.status, count(*) FROM deliveries d JOIN delivery_state s"
        " ON s.delivery_id = d.id WHERE d.scheduled_at >= :a AND d.scheduled_at < :b"
        " GROUP BY d.channel_id, s.status"
    )
    with DeliveryLog.open(url, hash_key=LOG_KEY.encode()) as log:
        a, b = (x if log.dialect != "sqlite" else x.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                for x in (since, until))  # fmt: skip
        started = time.perf_counter()
        log.read(lambda conn: conn.execute(query, {"a": a, "b": b}).all())
        return time.perf_counter() - started


def bench_campaign(folder: Path) -> Path:
    path = write_campaign(folder)
    config = json.loads(path.read_text(encoding="utf-8"))
    config["duties"] = [
        {"id": "sms-twice", "name": "短信每月2条", "targets": {"tags": ["sms_list"]},
         "per": "month", "at_least": 2, "kinds": ["sms"]},
        {"id": "groups-weekly", "name": "群每周1次", "targets": {"tags": ["group"]},
         "per": "week", "at_least": 1},
    ]  # fmt: skip
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


def report_line(label: str, r: dict[str, Any], plain: float) -> None:
    print(
        f"  {label:<10} monthly report {r['seconds']:6.1f} s, peak RSS {r['peak_mb']:5.0f} MB"
        f" ({r['before_mb']:.0f} MB before it)"
        f" ({r['deliveries']:,} deliveries in the month; xlsx+csv+html)"
        f"   baseline plain GROUP BY {plain:5.2f} s  ratio {r['seconds'] / max(plain, 1e-6):.1f}x"
        f"   target < 60 s and < 300 MB -> "
        + ("MET" if r["seconds"] < 60 and r["peak_mb"] < 300 else "MISSED"),
        flush=True,
    )


def lookup_line(label: str, r: dict[str, Any]) -> None:
    print(
        f"  {label:<10} lookup p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms"
        f" (CPU p99 {r['cpu_p99_ms']:.2f} ms)"
        f" ({r['rows_per_lookup']:.0f} deliveries each)   baseline plain indexed SELECT"
        f" p50 {r['plain_p50_ms']:.2f} ms p99 {r['plain_p99_ms']:.2f} ms"
        f"  ratio {r['p99_ms'] / max(r['plain_p99_ms'], 1e-6):.1f}x   target p99 < 5 ms -> "
        + ("MET" if r["p99_ms"] < 5 else "MISSED"),
        flush=True,
    )


def main(*, quick: bool = False) -> dict[str, Any]:
    sms, blasts, groups, group_sends = QUICK if quick else FULL
    folder = Path(tempfile.mkdtemp(prefix="reports-bench-"))
    results: dict[str, Any] = {}
    try:
        config = bench_campaign(folder / "campaign")
        sqlite_file = folder / "state" / "delivery-log.sqlite3"
        url = f"sqlite:///{sqlite_file}"
        today = dt.date(2026, 11, 30)
        started = time.perf_counter()
        n = build_log(
            url, sms=sms, blasts=blasts, groups=groups, group_sends=group_sends, today=today
        )
        print(
            f"reports: {n:,} deliveries built with bulk inserts in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        period = "2026-11"
        results["sqlite"] = {
            "lookup": lookups(url, sms),
            "report": monthly_report(url, config, period, folder / "out-sqlite"),
            "plain": plain_month(url, period),
        }
        lookup_line("SQLite", results["sqlite"]["lookup"])
        report_line("SQLite", results["sqlite"]["report"], results["sqlite"]["plain"])
        pg = pg_schema_url()
        if pg is not None:
            pg_url, schema = pg
            try:
                started = time.perf_counter()
                copy_to_pg(sqlite_file, pg_url)
                print(
                    f"  copied to PostgreSQL in {time.perf_counter() - started:.0f} s", flush=True
                )
                results["postgresql"] = {
                    "lookup": lookups(pg_url, sms),
                    "report": monthly_report(pg_url, config, period, folder / "out-pg"),
                    "plain": plain_month(pg_url, period),
                }
                lookup_line("PostgreSQL", results["postgresql"]["lookup"])
                report_line(
                    "PostgreSQL", results["postgresql"]["report"], results["postgresql"]["plain"]
                )
            finally:
                drop_schema(schema)
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
