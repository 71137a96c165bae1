"""The web service on a big log: console pages at 1,000,000 deliveries, and a pushed-receipt
route under 64 concurrent clients.

Pages: a SQLite log of 1,000,000 deliveries (eight SMS blasts of 100,000 numbers over 12
weeks, the last one today, and 200,000 group messages), built with bulk SQL inserts, not
through the engine. `broadcaster serve` runs in its own process; one logged-in client
asks for each page in turn and times it (p50/p99). Beside each page: the same view read
the way `broadcaster log` reads it (the whole range, unpaged), in this process.

Receipts: two fresh logs of 20,000 accepted deliveries each. `broadcaster serve` answers
the echo plugin's receipt route (`POST /hooks/receipts/receipts`, token checked, outcome
matched and recorded); beside it, in the same run, a minimal Starlette endpoint under
the same uvicorn settings does the same database write (`DeliveryLog.record_outcomes`)
after the same token check. 64 client threads post one receipt per request; afterwards
every delivery must be delivered (zero lost receipts), or the benchmark fails.

    python -m bench web [--quick]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.web_data import (
    LOG_KEY,
    TZ,
    build_log,
    build_receipt_log,
    delivered,
    numbers,
    write_campaign,
)

ROOT = Path(__file__).resolve().parent.parent
WEB_SECRET = "bench-web-secret-0123456789abcdef"
TOKEN = "bench-echo-token"
USER, PASSWORD = "bench", "bench password 123"
CLIENTS = 64

# (SMS numbers, SMS blasts, groups, group sends, requests per page, receipts)
FULL = (100_000, 8, 2_000, 100, 60, 20_000)
QUICK = (10_000, 8, 200, 100, 15, 2_000)


def env(site: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    out.update(
        BROADCASTER_LOG_KEY=LOG_KEY,
        BROADCASTER_WEB_SECRET=WEB_SECRET,
        ECHO_TOKEN=TOKEN,
        PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
        PYTHONUNBUFFERED="1",
    )
    return out


class Process:
    """A server subprocess that prints its URL."""

    def __init__(self, args: list[str], environ: dict[str, str], cwd: Path):
        self.proc = subprocess.Popen(
            args, env=environ, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            m = re.search(r"listening on (http://[\d.]+:(\d+))", line)
            if m:
                self.url, self.port = m.group(1), int(m.group(2))
                break
        else:
            raise SystemExit("server did not start:\n" + "".join(seen))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout or ()], daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(config: Path, state: Path, db: str, site: Path) -> Process:
    return Process(
        [
            sys.executable,
            "-c",
            "from broadcaster.cli import main; main()",
            "-c",
            str(config),
            "serve",
            "--db",
            db,
            "--state-dir",
            str(state),
            "--port",
            "0",
        ],
        env(site),
        config.parent,
    )


def minimal_app(db: str) -> Any:
    """The baseline: Starlette, the same token check and the same database write."""
    import hmac

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from broadcaster.log import DeliveryLog, Event
    from broadcaster.vocab import Status

    log = DeliveryLog.open(db, hash_key=LOG_KEY.encode())
    token = hashlib.sha256(TOKEN.encode()).digest()

    async def receipts(request: Request) -> JSONResponse:
        given = hashlib.sha256(request.headers.get("x-echo-token", "").encode()).digest()
        if not hmac.compare_digest(given, token):
            return JSONResponse({"error": "bad token"}, status_code=401)
        records = json.loads(await request.body())
        now = dt.datetime.now(dt.UTC)
        items = [
            (Event("", Status.DELIVERED, now, reason="回执 receipt"), None, r["provider_id"], None)
            for r in records
        ]
        tally = await run_in_threadpool(log.record_outcomes, "receipts", items, now)
        return JSONResponse(
            {"ok": True, "received": tally.recorded},
            status_code=200 if tally.unmatched < len(items) else 404,
        )

    return Starlette(routes=[Route("/receipts", receipts, methods=["POST"])])


def run_minimal(db: str) -> None:
    """Child: the minimal endpoint under uvicorn with the service's settings."""
    import asyncio

    import uvicorn

    from broadcaster.web.server import bind

    sock = bind("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        minimal_app(db),
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        limit_concurrency=1000,
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


# --- clients -------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Client:
    """A logged-in console session over one keep-alive connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str]:
        from urllib.parse import urlencode

        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        for name, value in r.getheaders():
            if name.lower() == "set-cookie":
                k, _, rest = value.partition("=")
                self.cookies[k] = rest.split(";", 1)[0]
        return r.status, text

    def login(self) -> None:
        self.request("GET", "/login")
        status, _ = self.request(
            "POST", "/login", {"name": USER, "password": PASSWORD, "csrf": self.cookies["bc_csrf"]}
        )
        assert status == 303, f"login failed: {status}"


def time_page(
    client: Client,
    method: str,
    path: str,
    n: int,
    form: dict[str, str] | None = None,
    expect: str = "",
) -> list[float]:
    out = []
    for _ in range(n):
        if form is not None:
            form = {**form, "csrf": client.cookies["bc_csrf"]}
        started = time.perf_counter()
        status, text = client.request(method, path, form)
        out.append((time.perf_counter() - started) * 1000)
        if status != 200 or expect not in text:
            raise SystemExit(f"{method} {path}: {status}\n{text[:500]}")
    return out


def post_receipts(port: int, path: str, n: int) -> tuple[float, list[float], int]:
    """64 threads post receipts echo-1 … echo-n, one per request; (seconds, latencies, errors)."""
    lock = threading.Lock()
    todo = iter(range(1, n + 1))
    latencies: list[float] = []
    errors = [0]

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            body = json.dumps([{"provider_id": f"echo-{i}", "status": "delivered"}])
            started = time.perf_counter()
            conn.request(
                "POST",
                path,
                body=body,
                headers={"X-Echo-Token": TOKEN, "Content-Type": "application/json"},
            )
            r = conn.getresponse()
            r.read()
            mine.append((time.perf_counter() - started) * 1000)
            if r.status != 200:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, errors[0]


# --- the two parts -------------------------------------------------------------------------------


def add_user(db: str, state: Path) -> None:
    from broadcaster.engine.clock import SystemClock
    from broadcaster.log import DeliveryLog
    from broadcaster.web.accounts import Accounts
    from broadcaster.web.store import ConsoleStore

    with DeliveryLog.open(db, hash_key=LOG_KEY.encode()) as log:
        store = ConsoleStore(log, db, SystemClock())
        Accounts(store, WEB_SECRET.encode()).add(USER, "auditor", PASSWORD)
        store.close()


def pages(folder: Path, site: Path, quick: bool) -> dict[str, Any]:
    sms, blasts, groups, group_sends, per_page, _ = QUICK if quick else FULL
    config = write_campaign(folder / "campaign")
    state = folder / "pages-state"
    db = f"sqlite:///{state / 'delivery-log.sqlite3'}"
    today = dt.datetime.now(TZ).date()
    started = time.perf_counter()
    n = build_log(db, sms=sms, blasts=blasts, groups=groups, group_sends=group_sends, today=today)
    built = time.perf_counter() - started
    add_user(db, state)
    print(f"  {n:,} deliveries built with bulk inserts in {built:.0f} s", flush=True)
    server = serve(config, state, db, site)
    try:
        client = Client(server.port)
        client.login()
        last_week = (today - dt.timedelta(days=6)).isoformat()
        started = time.perf_counter()
        _, first = client.request("GET", "/log")  # the very first page view: nothing remembered
        first_view = (time.perf_counter() - started) * 1000
        cursor = re.search(r'id="next" href="/log\?([^"]+)"', first)
        assert cursor is not None
        page2 = "/log?" + cursor.group(1).replace("&amp;", "&")
        _, text = client.request("GET", "/log?channel=sms&status=delivered")
        key = re.search(r"/log/delivery\?key=([0-9a-f]+)", text)
        assert key is not None
        ninety = (today - dt.timedelta(days=90)).isoformat()
        views = [
            ("log, last 7 days (default)", "GET", "/log", None, "sms-blast"),
            (
                "log, SMS failed, 12 weeks",
                "GET",
                f"/log?from={ninety}&channel=sms&status=failed",
                None,
                "失败",
            ),
            ("log, next page", "GET", page2, None, "sms-blast"),
            (
                "log, one send",
                "GET",
                f"/log?occurrence=sms-blast@{today.isoformat()}T09:00",
                None,
                "sms-blast",
            ),
            (
                "log, one target, 12 weeks",
                "GET",
                f"/log?from={ninety}&target=people",
                None,
                "sms-blast",
            ),
            ("delivery history", "GET", f"/log/delivery?key={key.group(1)}", None, "全部记录"),
            (
                "lookup by number",
                "POST",
                "/lookup",
                {"kind": "number", "q": numbers(sms)[sms // 2][3:]},
                "138****",
            ),
            ("lookup by group", "POST", "/lookup", {"kind": "group", "q": "g0000"}, "群0000"),
            (
                "lookup by list (SMS list)",
                "POST",
                "/lookup",
                {"kind": "group", "q": "people"},
                "短信名单",
            ),
            ("today", "GET", "/", None, "今日"),
            ("calendar", "GET", "/calendar", None, "日历"),
            ("channels", "GET", "/channels", None, "渠道"),
            ("duties", "GET", "/duties", None, "工作要求"),
            ("waiting", "GET", "/waiting", None, "待确认"),
            ("metrics", "GET", "/metrics", None, "broadcaster_deliveries"),
        ]
        results: dict[str, Any] = {}
        for label, method, path, form, expect in views:
            cold = time_page(client, method, path, 1, form, expect)[0]  # the first look
            time_page(client, method, path, 2, form, expect)
            lat = time_page(client, method, path, per_page, form, expect)
            if label.startswith("log, last 7 days"):
                cold = first_view  # asked before the others, to find the next page's link
            results[label] = {
                "cold_ms": cold,
                "p50_ms": statistics.median(lat),
                "p99_ms": pct(lat, 0.99),
            }
    finally:
        server.stop()
    base = cli_reads(db, today, last_week)
    return {"deliveries": n, "views": results, "baseline": base}


def cli_reads(db: str, today: dt.date, last_week: str) -> dict[str, float]:
    """The same views read the way `broadcaster log` reads them (in this process)."""
    from broadcaster.log import DeliveryLog

    since = dt.datetime.combine(dt.date.fromisoformat(last_week), dt.time(), TZ)
    out = {}
    with DeliveryLog.open(db, hash_key=LOG_KEY.encode()) as log:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            log.coverage(campaign="bench", since=since)
            log.deliveries(campaign="bench", since=since)
            runs.append((time.perf_counter() - started) * 1000)
        out["log, last 7 days (default)"] = statistics.median(runs)
        number = numbers(FULL[0])[FULL[0] // 2]
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            log.deliveries(recipient_hash=log.recipient_hash(number))
            runs.append((time.perf_counter() - started) * 1000)
        out["lookup by number"] = statistics.median(runs)
    return out


def receipts(folder: Path, site: Path, quick: bool) -> dict[str, Any]:
    n = (QUICK if quick else FULL)[5]
    config = write_campaign(folder / "campaign")
    at = dt.datetime.now(TZ).replace(second=0, microsecond=0)
    out: dict[str, Any] = {}
    for side in ("minimal", "broadcaster"):
        state = folder / f"receipts-{side}"
        db = f"sqlite:///{state / 'delivery-log.sqlite3'}"
        build_receipt_log(db, n, at)
        if side == "minimal":
            server = Process(
                [sys.executable, "-m", "bench.web_bench", "minimal", db], env(site), ROOT
            )
            path = "/receipts"
        else:
            server = serve(config, state, db, site)
            path = "/hooks/receipts/receipts"
        try:
            seconds, lat, errors = post_receipts(server.port, path, n)
        finally:
            server.stop()
        lost = n - delivered(db)
        out[side] = {
            "rate": n / seconds,
            "p50_ms": statistics.median(lat),
            "p99_ms": pct(lat, 0.99),
            "errors": errors,
            "lost": lost,
        }
        if lost or errors:
            raise SystemExit(f"receipts benchmark ({side}): {lost} receipts lost, {errors} errors")
    return out


def main(*, quick: bool = False) -> dict[str, Any]:
    from tests.fakes.plugins import install

    folder = Path(tempfile.mkdtemp(prefix="web-bench-"))
    try:
        site = install(folder / "plugin")
        print("web: console pages on a big log (SQLite)", flush=True)
        page_results = pages(folder, site, quick)
        n = page_results["deliveries"]
        print(
            f"  {'page':<28} {'first':>9} {'p50':>9} {'p99':>9}"
            "   baseline: the same view read as `broadcaster log` reads it"
        )
        for label, r in page_results["views"].items():
            base = page_results["baseline"].get(label)
            extra = f"   {base:8.1f} ms  ({base / r['p99_ms']:.1f}x the page's p99)" if base else ""
            print(
                f"  {label:<28} {r['cold_ms']:7.1f}ms {r['p50_ms']:7.1f}ms {r['p99_ms']:7.1f}ms{extra}"
            )
        worst = max(r["p99_ms"] for r in page_results["views"].values())
        print(
            f"  target: every page p99 < 300 ms at {n:,} deliveries -> worst {worst:.1f} ms "
            + ("MET" if worst < 300 else "MISSED")
        )
        print(
            f"web: pushed receipts, {CLIENTS} concurrent clients, one receipt per request",
            flush=True,
        )
        rec = receipts(folder, site, quick)
        for side, label in (
            ("broadcaster", "broadcaster serve (echo plugin route)"),
            ("minimal", "minimal Starlette endpoint"),
        ):
            r = rec[side]
            print(
                f"  {label:<40} {r['rate']:8.0f} req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  lost {r['lost']}"
            )
        ratio = rec["broadcaster"]["rate"] / rec["minimal"]["rate"]
        print(
            f"  ratio {ratio:.2f}x the minimal endpoint (target >= 0.7x) -> "
            + ("MET" if ratio >= 0.7 else "MISSED")
        )
        return {"pages": page_results, "receipts": rec, "ratio": ratio}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "minimal":
        run_minimal(sys.argv[2])
    else:
        main(quick="--quick" in sys.argv)
