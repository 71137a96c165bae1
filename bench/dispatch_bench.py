"""Dispatch 10,000 webhook deliveries through the real dispatch path (delivery log
writes included) to a local fake gateway, once answering after 200 ms and once at
once; compare with Apprise (default settings) and a plain sequential `requests` loop.

Every measured side runs in its own subprocess, so its peak memory (max RSS) and CPU
time are its own, and so does the fake gateway (`tests.fakes.webhook_server.WebhookFake`,
token check on), so the fake's CPU never competes with the measured process' GIL on
this 2-core machine. A fresh fake serves each side; afterwards it is asked what it
received, and the benchmark fails loudly if any delivery was lost or sent twice.

    python -m bench dispatch [--quick]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 3, 3)  # the rule's date (a Tuesday), inside the calendar data

CONCURRENCY = 100  # the webhook channel's `concurrency:`; bound at 200 ms = 100 / 0.2 s = 500/s
LATENCY = 0.2  # seconds the slow fake waits before every answer (a realistic gateway)
TOKEN = "bench-token"
HASH_KEY = b"bench"
PG_URL = os.environ.get("PG_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BODY = (
    '{"mobile": {{ recipient|tojson }}, "content": {{ text|tojson }}, "out_id": {{ key|tojson }}}'
)
# The baselines send a message of the same size (an SMS of at most 70 characters).
SAMPLE_TEXT = "【基准派出所】警惕刷单返利诈骗：凡是要求先垫付资金的刷单兼职都是诈骗，切勿轻信，如遇可疑情况请拨打96110咨询。"

# (deliveries, requests loop at 200 ms, Apprise at 200 ms, requests loop instant, Apprise instant)
FULL = (10_000, 100, 300, 2_000, 2_000)
QUICK = (1_000, 20, 60, 500, 1_000)


# --- helpers shared by parent and children -----------------------------------------------------


def numbers(n: int, first: int = 1) -> list[str]:
    """n distinct valid mainland mobile numbers, national form (1380000xxxx...)."""
    return [f"138{i:08d}" for i in range(first, first + n)]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_campaign(
    folder: Path, n: int, port: int, concurrency: int, campaign: str = "bench", first: int = 1
) -> Path:
    """One target holding n contacts, one SMS webhook channel aimed at the fake, one rule."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"居民{i},{num}\n" for i, num in enumerate(numbers(n, first)))
    (folder / "people.csv").write_text("name,phone\n" + rows, encoding="utf-8")
    config = {
        "campaign": {"id": campaign, "name": "投递基准", "office": "基准派出所"},
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
                    }
                ],
            }
        ],
        "channels": {
            "sms": {
                "type": "webhook",
                "kind": "sms",
                "max_length": 70,
                "concurrency": concurrency,
                "settings": {
                    "url": f"http://127.0.0.1:{port}/send",
                    "headers": {"Authorization": "Bearer {token}"},
                    "secrets": {"token": {"env": "BENCH_TOKEN"}},
                    "success": {"json_path": "code", "equals": "OK", "id_path": "biz_id"},
                    "body": BODY,
                },
            }
        },
        "rules": [
            {
                "id": "blast",
                "channels": ["sms"],
                "targets": {"ids": ["people"]},
                "when": {"dates": [DAY.isoformat()], "at": "10:00"},
            }
        ],
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return path


# --- the fake gateway, in a process of its own -------------------------------------------------


def serve_fake(latency: float, token: str) -> None:
    """Child: run WebhookFake; print its port; answer `stats` and `stop` on stdin."""
    from tests.fakes.webhook_server import WebhookFake  # sets TCP_NODELAY, as real gateways do

    fake = WebhookFake(token=token)
    fake.latency = latency
    fake.start()
    print(json.dumps({"port": fake.port}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            sends = fake.sends
            keys = fake.key_counts
            print(
                json.dumps(
                    {
                        "posts": len(sends),
                        "distinct_keys": len(keys),
                        "repeated_keys": sum(1 for c in keys.values() if c > 1),
                        "without_key": sum(
                            1 for r in sends if not r.headers.get("Idempotency-Key")
                        ),
                        "unauthorised": sum(
                            1 for r in sends if r.headers.get("Authorization") != f"Bearer {token}"
                        ),
                        "fake_errors": [repr(e) for e in fake.errors],
                        "cpu_seconds": cpu_seconds(),
                    }
                ),
                flush=True,
            )
        elif command == "stop":
            break
    fake.stop()


class Fake:
    """The parent's handle on a fake gateway subprocess."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.dispatch_bench", "fake", str(latency), TOKEN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the measured sides (children) -------------------------------------------------------------


def postgres_unavailable() -> str | None:
    from tests.log.fixtures import postgres_unavailable as probe

    return probe()


def log_url(backend: str, base: Path) -> tuple[str, Any]:
    """A fresh log URL (SQLite file, or a PostgreSQL schema of its own) and a clean-up."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if backend != "postgresql":
        return f"sqlite:///{base / 'log.sqlite3'}", lambda: None
    schema = f"bench_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_URL, poolclass=NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()

    return f"{PG_URL}?options={quote(f'-csearch_path={schema}')}", drop


def fire_once(
    url: str, n: int, port: int, base: Path, campaign: str = "bench", first: int = 1
) -> dict[str, Any]:
    """Load a campaign, open the log, fire its one occurrence; time fire() and its sends."""
    from broadcaster.engine.app import App
    from broadcaster.engine.clock import SystemClock
    from broadcaster.log import DeliveryLog
    from broadcaster.model.plan import Planner
    from broadcaster.model.targets import parse_phone

    nums = numbers(n, first)
    assert len({parse_phone(x) for x in nums} - {None}) == n, "bench numbers must be valid"
    t0 = time.perf_counter()
    path = write_campaign(base / campaign, n, port, CONCURRENCY, campaign, first)
    app = App.load(
        path,
        now=dt.datetime.combine(DAY, dt.time(9), tzinfo=TZ),
        environ={"BENCH_TOKEN": TOKEN},
        state_dir=base / campaign / "state",
    )
    load_seconds = time.perf_counter() - t0
    store = DeliveryLog.open(url, hash_key=HASH_KEY)
    try:
        dispatcher = app.dispatcher(store, HASH_KEY, clock=SystemClock())
        start = dt.datetime.combine(DAY, dt.time(), tzinfo=TZ)
        occurrence = next(Planner(app.campaign).occurrences(start, start + dt.timedelta(days=1)))
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        report = dispatcher.fire(occurrence).wait()
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        dispatcher.close()
        coverage = store.coverage(campaign=campaign)
    finally:
        store.close()
    return {
        "deliveries": n,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_seconds": load_seconds,
        "counts": report.counts,
        "errors": report.errors[:5],
        "accepted": sum(r.accepted for r in coverage),
        "targeted": sum(r.targeted for r in coverage),
        "peak_mb": peak_mb(),
    }


def run_broadcaster(backend: str, n: int, port: int, folder: str) -> dict[str, Any]:
    """One process firing one occurrence of n deliveries."""
    if backend == "postgresql" and (reason := postgres_unavailable()) is not None:
        return {"unreachable": reason}
    url, drop = log_url(backend, Path(folder))
    try:
        return fire_once(url, n, port, Path(folder))
    finally:
        drop()


def run_pair(n: int, port: int, folder: str) -> dict[str, Any]:
    """Two processes on one PostgreSQL log, each firing its own campaign's n/2 deliveries."""
    if (reason := postgres_unavailable()) is not None:
        return {"unreachable": reason}
    url, drop = log_url("postgresql", Path(folder))
    try:
        half = n // 2
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.dispatch_bench",
                    "half",
                    url,
                    str(half),
                    str(port),
                    folder,
                    name,
                    str(first),
                ],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for name, first in (("county", 1), ("township", half + 1))
        ]
        t0 = time.perf_counter()
        outs = [json.loads(c.communicate()[0].strip().splitlines()[-1]) for c in children]
        wall = time.perf_counter() - t0
    finally:
        drop()
    return {
        "deliveries": 2 * half,
        "seconds": max(o["seconds"] for o in outs),
        "wall_with_start": wall,
        "cpu_seconds": sum(o["cpu_seconds"] for o in outs),
        "load_seconds": max(o["load_seconds"] for o in outs),
        "accepted": sum(o["accepted"] for o in outs),
        "targeted": sum(o["targeted"] for o in outs),
        "counts": [o["counts"] for o in outs],
        "errors": [e for o in outs for e in o["errors"]],
        "peak_mb": max(o["peak_mb"] for o in outs),
    }


def _keys(n: int, salt: str) -> list[str]:
    return [hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:32] for i in range(n)]


def run_requests(n: int, port: int) -> dict[str, Any]:
    """A plain sequential loop over one requests.Session, the same JSON body per recipient."""
    import requests

    url = f"http://127.0.0.1:{port}/send"
    keys = _keys(n, "requests")
    bodies = [
        json.dumps(
            {"mobile": f"+86{num}", "content": SAMPLE_TEXT, "out_id": key}, ensure_ascii=False
        ).encode()
        for num, key in zip(numbers(n), keys, strict=True)
    ]
    ok = 0
    with requests.Session() as session:
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        for body, key in zip(bodies, keys, strict=True):
            response = session.post(
                url,
                data=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Authorization": f"Bearer {TOKEN}",
                    "Idempotency-Key": key,
                },
                timeout=(5, 30),
            )
            ok += response.status_code == 200 and response.json().get("code") == "OK"
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
    return {"deliveries": n, "ok": ok, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_mb()}


def run_apprise(n: int, port: int) -> dict[str, Any]:
    """Apprise with default settings: one json:// URL per recipient, one notify() call.

    Each URL carries the gateway's token and its own Idempotency-Key as extra headers
    (`+Name=value`) and the recipient as a payload field (`:mobile=...`); nothing about
    Apprise's concurrency, retries or throttling is changed.
    """
    import apprise

    apobj = apprise.Apprise()
    auth = quote(f"Bearer {TOKEN}")
    for num, key in zip(numbers(n), _keys(n, "apprise"), strict=True):
        added = apobj.add(
            f"json://127.0.0.1:{port}/send?+Authorization={auth}&+Idempotency-Key={key}"
            f"&:mobile={quote('+86' + num)}"
        )
        assert added, "Apprise refused the URL"
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    result = apobj.notify(body=SAMPLE_TEXT, title="")
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    ok = sum(1 for service_result in result if bool(service_result))
    return {
        "deliveries": n,
        "ok": ok,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mb": peak_mb(),
        "version": apprise.__version__,
    }


def _child(*args: Any) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.dispatch_bench", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the parent: run, check, print -------------------------------------------------------------


def _measure(
    kind: str, latency: float, n: int, *extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one side against a fresh fake; return its result and what the fake received.

    The result also gets `others_cpu`: CPU-seconds that processes other than this
    benchmark's used meanwhile (a PostgreSQL server's included), and `wall`.
    """
    before = _busy_seconds()
    with Fake(latency) as fake:
        if kind == "broadcaster":
            with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp:
                result = _child(kind, extra[0], n, fake.port, tmp)
        elif kind == "pair":
            with tempfile.TemporaryDirectory(prefix="dispatch-bench-") as tmp:
                result = _child(kind, n, fake.port, tmp)
        else:
            result = _child(kind, n, fake.port)
        stats = fake.stats()
    wall, machine, ours = (a - b for a, b in zip(_busy_seconds(), before, strict=True))
    result["others_cpu"], result["wall"] = max(0.0, machine - ours), wall
    return result, stats


def _check(label: str, n: int, result: dict[str, Any], stats: dict[str, Any]) -> list[str]:
    """Every delivery arrived exactly once, authorised; for broadcaster, all accepted in the log."""
    problems = []
    if stats["posts"] != n:
        problems.append(f"fake received {stats['posts']:,} POSTs, expected {n:,}")
    if stats["distinct_keys"] != n or stats["repeated_keys"] or stats["without_key"]:
        problems.append(
            f"{stats['distinct_keys']:,} distinct Idempotency-Keys ({stats['repeated_keys']} repeated,"
            f" {stats['without_key']} POSTs without one), expected {n:,}"
        )
    if stats["unauthorised"]:
        problems.append(f"{stats['unauthorised']:,} POSTs without the right Bearer token")
    if stats["fake_errors"]:
        problems.append(f"the fake raised: {stats['fake_errors'][:3]}")
    if "accepted" in result:
        if result["accepted"] != n or result["targeted"] != n:
            problems.append(
                f"log coverage: {result['accepted']:,} accepted of {result['targeted']:,} targeted,"
                f" expected {n:,} ({result['counts']}, errors {result['errors']})"
            )
    elif result.get("ok") != n:
        problems.append(f"{result.get('ok', 0):,} of {n:,} answered OK")
    if problems:
        print(f"CHECK FAILED {label}: " + "; ".join(problems))
    else:
        extra = f"; log coverage {result['accepted']:,} accepted" if "accepted" in result else ""
        print(
            f"check {label}: fake received {n:,} POSTs with {n:,} distinct Idempotency-Keys,"
            f" none repeated, all authorised{extra}"
        )
    return [f"{label}: {p}" for p in problems]


def _busy_seconds() -> tuple[float, float, float]:
    """(wall clock, CPU-seconds the whole machine spent busy, CPU-seconds of our children)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = children.ru_utime + children.ru_stime + cpu_seconds()
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), ours


def _rate(r: dict[str, Any]) -> float:
    return r["deliveries"] / r["seconds"]


def _cpu(r: dict[str, Any]) -> str:
    return f"cpu {r['cpu_seconds'] / r['deliveries'] * 1000:.2f} ms/delivery"


def _median(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], Any]:
    """The run with the median rate (of an odd number of runs; the lower middle otherwise)."""
    ordered = sorted(runs, key=lambda run: _rate(run[0]))
    return ordered[(len(ordered) - 1) // 2]


def _section(
    latency: float, n: int, n_req: int, n_apprise: int, rounds: int = 1
) -> tuple[dict[str, Any], list[str]]:
    """Measure every side against one kind of fake, `rounds` times in turn (this machine's
    speed drifts by ±10% from minute to minute: each side's median run is reported, every
    run is checked); print the table; return results, problems."""
    runs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    unreachable: str | None = None
    for _ in range(rounds):
        for backend in ("sqlite", "postgresql"):
            if backend == "postgresql" and unreachable is not None:
                continue
            result, stats = _measure("broadcaster", latency, n, backend)
            if "unreachable" in result:
                if os.environ.get("CI"):
                    raise RuntimeError(f"CI needs PostgreSQL: {result['unreachable']}")
                unreachable = result["unreachable"]
                continue
            runs.setdefault(backend, []).append((result, stats))
        if latency and "postgresql" in runs:
            pair, pair_stats = _measure("pair", latency, n)
            if "unreachable" not in pair:
                runs.setdefault("pair", []).append((pair, pair_stats))
        runs.setdefault("requests", []).append(_measure("requests", latency, n_req))
        runs.setdefault("apprise", []).append(_measure("apprise", latency, n_apprise))
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "pair": "PostgreSQL, 2 processes"}
    results = {side: _median(items)[0] for side, items in runs.items()}
    measured = [(names[side], *_median(runs[side])) for side in names if side in runs]
    req, app = _median(runs["requests"])[0], _median(runs["apprise"])[0]

    what = "after 200 ms" if latency else "at once"
    print(
        f"\n== dispatch: {n:,} webhook deliveries (concurrency {CONCURRENCY}),"
        f" fake answering {what} =="
    )
    bound_seconds = n * latency / CONCURRENCY
    for name, r, _ in measured:
        line = f"{f'broadcaster ({name})':<27}{n:>7,} in {r['seconds']:5.1f}s = {_rate(r):7,.1f}/s"
        if latency:
            line += (
                f"   bound {n / bound_seconds:,.0f}/s ({bound_seconds:.1f}s)"
                f" → {r['seconds'] / bound_seconds:.2f}× the bound"
            )
        print(f"{line}   peak {r['peak_mb']:.0f} MB   {_cpu(r)}   (load {r['load_seconds']:.1f}s)")
    if unreachable is not None:
        print(f"PostgreSQL: not reachable ({unreachable})")
    version = app.get("version", "?")
    for label, r in (
        (f"Apprise {version} (sample {n_apprise:,})", app),
        (f"requests loop (sample {n_req:,})", req),
    ):
        print(
            f"{label:<27}{r['deliveries']:>7,} in {r['seconds']:5.1f}s = {_rate(r):7,.1f}/s"
            f"   peak {r['peak_mb']:.0f} MB   {_cpu(r)}"
        )
    problems: list[str] = []
    for side, items in runs.items():
        size = {"requests": n_req, "apprise": n_apprise}.get(side, n)
        labels = {
            "requests": f"requests loop (sample {n_req:,})",
            "apprise": f"Apprise (sample {n_apprise:,})",
        }
        label = labels.get(side) or f"broadcaster ({names[side]})"
        for r, stats in items:
            problems += _check(label, size, r, stats)
    if rounds > 1:
        loops = [_rate(r) for r, _ in runs["requests"]]
        for name, side in (("SQLite", "sqlite"), ("PostgreSQL", "postgresql")):
            if side in runs:
                each = ", ".join(
                    f"{_rate(r) / loop:.2f}×"
                    for (r, _), loop in zip(runs[side], loops, strict=True)
                )
                print(f"rounds, broadcaster ({name}) ÷ requests loop of the same round: {each}")
    for name, r, _ in measured:
        ratio = _rate(r) / _rate(app)
        if latency:
            print(
                f"ratio broadcaster ({name}) ÷ Apprise: {ratio:.1f}×  (target ≥ 10×);"
                f" time ÷ bound: {r['seconds'] / bound_seconds:.2f} (target ≤ 1.3);"
                f" peak {r['peak_mb']:.0f} MB (target < 200 MB)"
            )
        else:
            print(
                f"ratio broadcaster ({name}) ÷ Apprise: {ratio:.2f}×  (target > 1×: ahead);"
                f" ÷ requests loop {_rate(r) / _rate(req):.2f}× (target ≥ 1×);"
                f" peak {r['peak_mb']:.0f} MB (target < 200 MB)"
            )
    # CPU used by other processes while each side ran: over 10% of a core skews the rates.
    # During a PostgreSQL run that includes the PostgreSQL server's own work.
    sides = [(f"broadcaster ({name})", r) for name, r, _ in measured]
    sides += [("Apprise", app), ("requests loop", req)]
    shares = [
        f"{label} {100 * r['others_cpu'] / r['wall']:.0f}%"
        + (" incl. the server" if "PostgreSQL" in label else "")
        for label, r in sides
        if "unreachable" not in r
    ]
    foreign = max(r["others_cpu"] / r["wall"] for label, r in sides if "PostgreSQL" not in label)
    note = "  ← other work on the machine skews these rates" if foreign > 0.1 else ""
    print(f"other processes' CPU, % of one core, during: {', '.join(shares)}{note}")
    return results, problems


def main(*, quick: bool = False) -> dict[str, Any]:
    n, req_slow, app_slow, req_fast, app_fast = QUICK if quick else FULL
    slow, problems_slow = _section(LATENCY, n, req_slow, app_slow)
    fast, problems_fast = _section(0.0, n, req_fast, app_fast, rounds=1 if quick else 3)
    problems = problems_slow + problems_fast
    if problems:
        raise SystemExit(
            "dispatch benchmark: deliveries lost or duplicated:\n  " + "\n  ".join(problems)
        )
    return {"slow": slow, "instant": fast}


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "fake":
        serve_fake(float(sys.argv[2]), sys.argv[3])
        sys.exit(0)
    if kind == "broadcaster":
        out = run_broadcaster(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif kind == "pair":
        out = run_pair(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif kind == "half":
        url, n, port, folder, name, first = sys.argv[2:8]
        out = fire_once(url, int(n), int(port), Path(folder), name, int(first))
    elif kind == "requests":
        out = run_requests(int(sys.argv[2]), int(sys.argv[3]))
    elif kind == "apprise":
        out = run_apprise(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown side {kind!r}")
    print(json.dumps(out))
