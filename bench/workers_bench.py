"""Dispatch 100,000 webhook deliveries to a fake gateway answering in 200 ms through
`broadcaster worker` processes (1, 2 and 4, each with the same fixed concurrency) on one
PostgreSQL log, and through the in-process thread pool with that concurrency, in one run.

Reported per side: deliveries per second, the time against the concurrency bound
(workers × concurrency ÷ 200 ms), the scaling ratio against one worker, CPU per
delivery (the workers' own, read from /proc, plus the scheduler's) and queue latency
(a job's wait from being queued to being started, from Procrastinate's events). The fake
counts every delivery: the benchmark fails loudly on a duplicate or a loss.

    python -m bench workers [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dispatch_bench import (
    DAY,
    HASH_KEY,
    LATENCY,
    ROOT,
    TOKEN,
    TZ,
    Fake,
    cpu_seconds,
    fire_once,
    log_url,
    postgres_unavailable,
    write_campaign,
)

CONCURRENCY = 25  # per worker: bound 125/s at 200 ms; four workers stay within two cores
JOBS = 8  # queued jobs a worker runs at once (each job's sends share the channel's lane)
FULL = 100_000
QUICK = 4_000
TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """CPU seconds a live process has used (user + system), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _accepted(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM delivery_state WHERE status = 'accepted'"
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _queue_latency(url: str) -> tuple[float, float]:
    """(median, p95) seconds from a job's being queued to its start."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            waits = [
                float(row[0])
                for row in conn.exec_driver_sql(
                    "SELECT extract(epoch FROM s.at - d.at) FROM procrastinate_events d"
                    " JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started'"
                    " WHERE d.type = 'deferred'"
                )
            ]
    finally:
        engine.dispose()
    if not waits:
        return 0.0, 0.0
    waits.sort()
    return statistics.median(waits), waits[min(len(waits) - 1, int(len(waits) * 0.95))]


def run_workers(k: int, n: int, port: int, folder: Path) -> dict[str, Any]:
    """k worker processes; this process fires the occurrence onto the queue."""
    from broadcaster.engine.app import App
    from broadcaster.engine.clock import SystemClock
    from broadcaster.engine.queue import QueueExecutor
    from broadcaster.log import DeliveryLog
    from broadcaster.model.plan import Planner

    url, drop = log_url("postgresql", folder)
    try:
        path = write_campaign(folder / "campaign", n, port, CONCURRENCY, "bench")
        state = folder / "campaign" / "state"
        env = {
            **os.environ,
            "BROADCASTER_DB": url,
            "BROADCASTER_LOG_KEY": HASH_KEY.decode(),
            "BROADCASTER_STATE_DIR": str(state),
            "BENCH_TOKEN": TOKEN,
        }
        store = DeliveryLog.open(url, hash_key=HASH_KEY)
        executor = QueueExecutor(url)  # creates the queue's tables before the workers start
        command = [sys.executable, "-c", "from broadcaster.cli import main; main()"]
        workers = [
            subprocess.Popen(
                [*command, "-c", str(path), "worker", "--concurrency", str(JOBS)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(k)
        ]
        try:
            for w in workers:  # started: it printed its first line
                assert w.stdout is not None
                line = w.stdout.readline()
                if "worker starting" not in line:
                    raise RuntimeError(f"worker did not start: {line}{w.stdout.read()[-2000:]}")
            app = App.load(
                path,
                now=dt.datetime.combine(DAY, dt.time(9), tzinfo=TZ),
                environ={"BENCH_TOKEN": TOKEN},
                state_dir=state,
            )
            dispatcher = app.dispatcher(store, HASH_KEY, clock=SystemClock(), executor=executor)
            start = dt.datetime.combine(DAY, dt.time(), tzinfo=TZ)
            occurrence = next(
                Planner(app.campaign).occurrences(start, start + dt.timedelta(days=1))
            )
            cpu0 = cpu_seconds()
            workers_cpu0 = sum(_proc_cpu(w.pid) for w in workers)
            t0 = time.perf_counter()
            dispatcher.fire(occurrence).wait()
            store.flush()
            scheduler_cpu = cpu_seconds() - cpu0
            deadline = time.monotonic() + 3600
            while (done := _accepted(url)) < n:
                if any(w.poll() is not None for w in workers):
                    raise RuntimeError("a worker exited during the run")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {done:,} of {n:,} accepted after an hour")
                time.sleep(0.1)  # polling the workers' progress in the log
            seconds = time.perf_counter() - t0
            workers_cpu = sum(_proc_cpu(w.pid) for w in workers) - workers_cpu0
            median_wait, p95_wait = _queue_latency(url)
            dispatcher.close()
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                try:
                    w.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    w.kill()
            executor.shutdown()
            store.close()
        return {
            "deliveries": n,
            "seconds": seconds,
            "cpu_seconds": scheduler_cpu + workers_cpu,
            "queue_wait": (median_wait, p95_wait),
        }
    finally:
        drop()


def run_in_process(n: int, port: int, folder: Path) -> dict[str, Any]:
    """The in-process thread pool (one `run`), the channel at the workers' concurrency."""
    import bench.dispatch_bench as dispatch

    saved = dispatch.CONCURRENCY
    dispatch.CONCURRENCY = CONCURRENCY
    try:
        url, drop = log_url("postgresql", folder)
        try:
            return fire_once(url, n, port, folder)
        finally:
            drop()
    finally:
        dispatch.CONCURRENCY = saved


def _check(label: str, n: int, stats: dict[str, Any]) -> list[str]:
    if stats["posts"] == n and stats["distinct_keys"] == n and not stats["repeated_keys"]:
        print(f"check {label}: fake received {n:,} POSTs, {n:,} distinct keys, none repeated")
        return []
    problem = (
        f"{label}: fake received {stats['posts']:,} POSTs, {stats['distinct_keys']:,} distinct"
        f" keys, {stats['repeated_keys']} repeated (expected {n:,} once each)"
    )
    print("CHECK FAILED " + problem)
    return [problem]


def main(*, quick: bool = False) -> dict[str, Any]:
    if (reason := postgres_unavailable()) is not None:
        print(f"workers: 跳过 skipped, PostgreSQL unavailable ({reason})")
        return {}
    n = QUICK if quick else FULL
    print(
        f"\n== 工作进程扩展 workers: {n:,} deliveries, fake answering in {LATENCY * 1000:.0f} ms,"
        f" concurrency {CONCURRENCY} per worker =="
    )
    results: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    sides: list[tuple[str, int]] = [
        ("in-process thread pool", 0),
        *(("workers", k) for k in (1, 2, 4)),
    ]
    for label, k in sides:
        name = label if k == 0 else f"{k} worker{'s' if k > 1 else ''}"
        with Fake(LATENCY) as fake, tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
            if k == 0:
                result = run_in_process(n, fake.port, Path(tmp))
            else:
                result = run_workers(k, n, fake.port, Path(tmp))
            problems += _check(name, n, fake.stats())
        results[name] = result
        rate = n / result["seconds"]
        bound = max(k, 1) * CONCURRENCY / LATENCY
        wait = result.get("queue_wait")
        waits = f", queue wait median {wait[0]:.2f} s p95 {wait[1]:.2f} s" if wait else ""
        print(
            f"{name:>24}: {rate:8.1f}/s, {result['seconds'] / (n / bound):.2f}× the bound"
            f" ({bound:.0f}/s; target ≤ 1.3×), cpu {result['cpu_seconds'] / n * 1000:.2f}"
            f" ms/delivery{waits}"
        )
    one = n / results["1 worker"]["seconds"]
    for k in (2, 4):
        rate = n / results[f"{k} workers"]["seconds"]
        target = " (target ≥ 3.2×)" if k == 4 else ""
        print(f"{k} workers ÷ 1 worker: {rate / one:.2f}×{target}")
    pool = n / results["in-process thread pool"]["seconds"]
    print(f"1 worker ÷ in-process thread pool: {one / pool:.2f}×")
    if problems:
        raise SystemExit("workers benchmark: " + "; ".join(problems))
    return results
