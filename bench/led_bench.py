"""LED feeds for 10,000 screens under 64 concurrent clients, against the same playlists
served as plain files by uvicorn + Starlette's StaticFiles, in the same run.

The campaign has 10,000 screens (10 townships of 1,000; GB2312, 12 × 2, own content, one
shared token from the environment) and a `led` channel with a slogan per theme; the log
holds one accepted warning per screen (bulk-inserted). `broadcaster serve` runs in its
own process. A warm-up pass fetches every screen once (each first fetch is recorded in
the log); then 64 client threads fetch every screen again, without and with
`If-None-Match` (304). The baseline exports the same 10,000 playlists as files and serves
them with uvicorn + `StaticFiles` (its own ETag handling) under the same settings.
Last, recomputing all 10,000 playlists after a calendar change (an occasion in
schedules.yaml moved, so every screen's slogan changes; the screens live in an included
file, as a township's targets do), in this process: reloading the config, then the
playlists.

Targets: ETag hits >= 0.8x the static baseline's rate (with its ETag hits), p99 < 50 ms,
recomputing all 10,000 playlists < 10 s.

    python -m bench led [--quick]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.web_bench import ROOT, Process, pct
from bench.web_data import (
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    LOG_KEY,
    STATE_COLUMNS,
    TZ,
    Bulk,
    stamp,
)

CLIENTS = 64
TOKEN = "bench-screen-token"
WEB_SECRET = "bench-web-secret-0123456789abcdef"
FULL, QUICK = 10_000, 2_000
WARNINGS = [
    "凡是网络兼职刷单返佣就是诈骗！可疑请拨96110",
    "免息无抵押贷款先交费，就是诈骗！",
    "公检法没有安全账户，不会电话让你转账！",
    "好友网上借钱，先打电话核实！",
]
OWN = [
    ("hours", "办事大厅周六照常办公", 20),
    ("bank", "农商银行助农取款点在大厅东侧", 25),
    ("weather", "今日晴，最高气温十八度", 15),
    ("notice", "医保缴费截止到本月二十五日", 30),
]


def screen_ids(n: int) -> list[str]:
    return [f"s{i:05d}" for i in range(n)]


def write_campaign(folder: Path, n: int, today: dt.date, festive: bool) -> Path:
    """n screens (in `screens.yaml`, included); with `festive`, an occasion in
    `schedules.yaml` puts today in the festive theme."""
    folder.mkdir(parents=True, exist_ok=True)
    towns = []
    ids = screen_ids(n)
    per_town = max(1, n // 10)
    for t in range(0, n, per_town):
        children = []
        for k, sid in enumerate(ids[t : t + per_town]):
            own = [{"id": o, "text": text, "seconds": s} for o, text, s in OWN[: 1 + k % 4]]
            children.append(
                {
                    "id": sid,
                    "name": f"显示屏{sid[1:]}",
                    "tags": ["led"],
                    "screen": {"token": {"env": "SCREEN_TOKEN"}, "own": own},
                }
            )
        towns.append(
            {"id": f"town{t // per_town}", "name": f"第{t // per_town}镇", "children": children}
        )
    start = today if festive else today + dt.timedelta(days=30)
    config = {
        "campaign": {"id": "bench", "name": "显示屏基准", "office": "基准派出所"},
        "default_theme": "routine",
        "themes": {
            "routine": {"name": "日常", "topics": ["order_brushing"]},
            "festive": {"name": "节日", "topics": ["order_brushing"]},
        },
        "occasions": [
            {
                "id": "fair",
                "name": "赶集日",
                "theme": "festive",
                "dates": [{"start": start.isoformat(), "end": start.isoformat()}],
            }
        ],
        "include": ["screens.yaml"],  # the screens in a file of their own, like a township's
        "targets": [{"id": "county", "name": "基准县"}],
        "channels": {
            "screens": {
                "type": "led",
                "kind": "led",
                "settings": {
                    "hotline": "反诈专线96110 报警110",
                    "slogans": {"festive": "赶集防骗，捂紧钱袋子", "routine": "全民反诈，共创平安"},
                    "refresh_seconds": 5,
                },
            }
        },
    }
    for town in towns:
        town["parent"] = "county"
    screens = folder / "screens.yaml"
    text = json.dumps({"targets": towns}, ensure_ascii=False)
    if not screens.exists() or screens.read_text(encoding="utf-8") != text:
        screens.write_text(text, encoding="utf-8")
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


def build_log(url: str, n: int, at: dt.datetime) -> None:
    """One accepted warning per screen on the `screens` channel."""
    from broadcaster.log import DeliveryLog

    DeliveryLog.open(url, hash_key=LOG_KEY.encode()).close()  # migrated
    texts = [(hashlib.sha256(t.encode()).hexdigest(), t) for t in WARNINGS]
    when = stamp(at)
    bulk = Bulk(url)
    bulk.insert("messages", ("sha256", "text"), texts)
    rows, states, events = [], [], []
    for i, sid in enumerate(screen_ids(n), start=1):
        sha = texts[i % len(texts)][0]
        rows.append(
            (
                i,
                f"w{i:08d}",
                "bench",
                f"led@{at:%Y-%m-%dT%H:%M}",
                "led",
                "screens",
                "screens",
                sid,
                sid,
                f"h{i}",
                "led",
                "led/order_brushing.j2",
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
                    None,
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
                "screens",
                "accepted",
                when,
                None,
                None,
                "",
                None,
                f"h{i}",
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


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    out.update(
        BROADCASTER_LOG_KEY=LOG_KEY,
        BROADCASTER_WEB_SECRET=WEB_SECRET,
        SCREEN_TOKEN=TOKEN,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return out


def serve(config: Path, state: Path, db: str) -> Process:
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
        env(),
        config.parent,
    )


def run_static(folder: str) -> None:
    """Child: the baseline, StaticFiles under uvicorn with the service's settings."""
    import asyncio

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from broadcaster.web.server import bind

    sock = bind("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    app = Starlette(routes=[Mount("/led", StaticFiles(directory=folder))])
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        limit_concurrency=1000,
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def fetch_all(
    port: int, paths: list[str], etags: dict[str, str] | None, headers: dict[str, str]
) -> tuple[float, list[float], dict[int, int], dict[str, str]]:
    """64 threads GET every path once; (seconds, latencies ms, statuses, ETags seen)."""
    lock = threading.Lock()
    todo = iter(paths)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    seen: dict[str, str] = {}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, codes, tags = [], {}, {}
        while True:
            with lock:
                path = next(todo, None)
            if path is None:
                break
            h = dict(headers)
            if etags is not None:
                h["If-None-Match"] = etags[path]
            started = time.perf_counter()
            conn.request("GET", path, headers=h)
            r = conn.getresponse()
            r.read()
            mine.append((time.perf_counter() - started) * 1000)
            codes[r.status] = codes.get(r.status, 0) + 1
            tags[path] = r.getheader("etag") or ""
        conn.close()
        with lock:
            latencies.extend(mine)
            for k, v in codes.items():
                statuses[k] = statuses.get(k, 0) + v
            seen.update(tags)

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, statuses, seen


def measure(port: int, paths: list[str], headers: dict[str, str], expect: int) -> dict[str, Any]:
    """A warm-up pass, then plain GETs (200) and ETag hits (304)."""
    _, _, codes, etags = fetch_all(port, paths, None, headers)
    if codes != {200: len(paths)}:
        raise SystemExit(f"warm-up: unexpected statuses {codes}")
    out: dict[str, Any] = {}
    for label, tags, status in (("plain", None, 200), ("etag", etags, 304)):
        seconds, lat, codes, _ = fetch_all(port, paths, tags, headers)
        if codes != {status: len(paths)}:
            raise SystemExit(f"{label}: unexpected statuses {codes}")
        out[label] = {
            "rate": len(paths) / seconds,
            "p50": statistics.median(lat),
            "p99": pct(lat, 0.99),
        }
    return out


def recompute(folder: Path, n: int, db: str, today: dt.date) -> dict[str, float]:
    """All n playlists built, then again after the occasion moves (a calendar change)."""
    from broadcaster.engine.app import App
    from broadcaster.engine.led import LedFeed
    from broadcaster.log import DeliveryLog

    now = dt.datetime.combine(today, dt.time(12), tzinfo=TZ)
    environ = {"SCREEN_TOKEN": TOKEN}
    state = folder / "recompute-state"
    path = write_campaign(folder / "recompute", n, today, festive=True)
    app = App.load(path, now=now, environ=environ, state_dir=state)
    with DeliveryLog.open(db, hash_key=LOG_KEY.encode()) as store:
        feed = LedFeed(store)
        started = time.perf_counter()
        before = feed.rebuild_all(app, now)
        first = time.perf_counter() - started
        write_campaign(folder / "recompute", n, today, festive=False)  # the occasion moved
        started, cpu = time.perf_counter(), time.process_time()
        app = App.load(path, now=now, environ=environ, state_dir=state)
        loaded = time.perf_counter() - started
        loaded_cpu = time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        after = feed.rebuild_all(app, now)
        rebuilt = time.perf_counter() - started
        rebuilt_cpu = time.process_time() - cpu
    changed = sum(
        1 for sid in before if before[sid].playlist.version != after[sid].playlist.version
    )
    if changed != n:
        raise SystemExit(f"recompute: only {changed} of {n} playlists changed with the calendar")
    return {
        "first": first,
        "load": loaded,
        "load_cpu": loaded_cpu,
        "rebuild": rebuilt,
        "rebuild_cpu": rebuilt_cpu,
        "changed": changed,
    }


def main(*, quick: bool = False) -> dict[str, Any]:
    n = QUICK if quick else FULL
    folder = Path(tempfile.mkdtemp(prefix="led-bench-"))
    today = dt.datetime.now(TZ).date()
    try:
        print(f"led: {n:,} screens, {CLIENTS} concurrent clients", flush=True)
        state = folder / "state"
        db = f"sqlite:///{state / 'delivery-log.sqlite3'}"
        state.mkdir(parents=True)
        build_log(db, n, dt.datetime.now(TZ) - dt.timedelta(hours=1))
        config = write_campaign(folder / "campaign", n, today, festive=True)
        server = serve(config, state, db)
        try:
            ours = measure(
                server.port,
                [f"/led/{sid}/playlist" for sid in screen_ids(n)],
                {"Authorization": f"Bearer {TOKEN}"},
                200,
            )
        finally:
            server.stop()
        # the baseline: the same playlists as files
        static = folder / "static"
        static.mkdir()
        from broadcaster.engine.app import App
        from broadcaster.engine.led import LedFeed
        from broadcaster.log import DeliveryLog

        now = dt.datetime.now(TZ)
        app = App.load(config, now=now, environ={"SCREEN_TOKEN": TOKEN}, state_dir=state)
        with DeliveryLog.open(db, hash_key=LOG_KEY.encode()) as store:
            for sid, served in LedFeed(store).rebuild_all(app, now).items():
                (static / f"{sid}.json").write_bytes(served.json)
        baseline = Process(
            [sys.executable, "-m", "bench.led_bench", "static", str(static)], env(), ROOT
        )
        try:
            files = measure(baseline.port, [f"/led/{sid}.json" for sid in screen_ids(n)], {}, 200)
        finally:
            baseline.stop()
        rec = recompute(folder, n, db, today)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"  {'':<34} {'req/s':>8} {'p50':>9} {'p99':>9}")
    for label, key, side in (
        ("broadcaster serve, 200 (no ETag)", "plain", ours),
        ("broadcaster serve, 304 (ETag hit)", "etag", ours),
        ("StaticFiles, 200", "plain", files),
        ("StaticFiles, 304 (ETag hit)", "etag", files),
    ):
        r = side[key]
        print(f"  {label:<34} {r['rate']:8.0f} {r['p50']:7.1f}ms {r['p99']:7.1f}ms")
    ratio = ours["etag"]["rate"] / files["etag"]["rate"]
    plain_ratio = ours["plain"]["rate"] / files["plain"]["rate"]
    worst = max(ours["plain"]["p99"], ours["etag"]["p99"])
    print(
        f"  ETag hits: {ratio:.2f}x StaticFiles' ETag hits (target >= 0.8x) -> "
        + ("MET" if ratio >= 0.8 else "MISSED")
        + f"; without ETag {plain_ratio:.2f}x StaticFiles' 200s"
    )
    print(f"  p99 {worst:.1f} ms (target < 50 ms) -> " + ("MET" if worst < 50 else "MISSED"))
    total = rec["rebuild"] + rec["load"]
    print(
        f"  recompute all {n:,} playlists after a calendar change: reload the config"
        f" {rec['load']:.1f} s (CPU {rec['load_cpu']:.1f} s) + rebuild {rec['rebuild']:.2f} s"
        f" (CPU {rec['rebuild_cpu']:.2f} s) = {total:.1f} s; first build {rec['first']:.2f} s;"
        f" {rec['changed']:,} versions changed (target < 10 s) -> "
        + ("MET" if total < 10 else "MISSED")
    )
    print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return {"ours": ours, "static": files, "ratio": ratio, "recompute": rec}


if __name__ == "__main__":
    if sys.argv[1] == "static":
        run_static(sys.argv[2])
    else:
        main(quick="--quick" in sys.argv)
