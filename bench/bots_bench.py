"""Group bots: (a) one message to 2,000 groups, each with its own WeCom bot, on a fake
answering after 50 ms, through the real dispatch path (delivery log included), beside
Apprise's `wecombot` plugin sending the same notifications and a sequential `requests`
loop; (b) 25 bots × 60 messages each under the fake's enforced per-bot limit, its
window scaled to 20 per 6 s: wall time against the lower bound that limit sets, and
the fake's rate-limit refusals (target zero).

The fake (`tests.fakes.wecom.WeComFake`, one bot per key) runs in a process of its own,
as does every measured side, so neither competes for the other's GIL on 2 cores. A
fresh fake serves each side and is asked afterwards what it accepted: the benchmark
fails loudly if a message was lost, sent twice or refused.

    python -m bench bots [--quick]
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.dispatch_bench import DAY, HASH_KEY, ROOT, TZ, _busy_seconds, cpu_seconds, peak_mb

LATENCY = 0.05  # seconds the fake waits before every answer
CONCURRENCY = 100  # the bot channel's `concurrency:` in (a); bound at 50 ms = 2,000/s
SCALE = 0.1  # (b): the provider's 20 a minute becomes 20 per 6 s
OUR_LIMIT = "18/6s"  # (b): the channel's own 18 a minute, scaled the same way
PROVIDER = (20, 60.0 * SCALE)
TEXT = "【反诈提醒】凡是刷单返利、先交保证金的兼职都是诈骗，切勿转账，如有疑问请拨打96110咨询。"
TOPICS = ["order_brushing", "loan", "fake_police", "investment", "job_scam", "phishing"]

# (groups, requests-loop sample, Apprise sample) for (a); (bots, messages per bot) for (b)
FULL = ((2_000, 200, 2_000), (25, 60))
QUICK = ((300, 40, 300), (10, 40))


def key(i: int) -> str:
    return f"bench-bot-{i:05d}"


# --- the fake, in a process of its own ---------------------------------------------------------


def serve_fake(latency: float, scale: float, bots: int) -> None:
    """Child: a WeCom fake with `bots` bots on the wall clock; answers `stats` and `stop`."""
    from tests.fakes.wecom import WeComFake

    fake = WeComFake(time.time, scale=scale, latency=latency)
    for i in range(1, bots + 1):
        fake.add_bot(key(i))
    fake.start()
    print(json.dumps({"port": fake.port}), flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            counts = [len(fake.accepted.get(key(i), [])) for i in range(1, bots + 1)]
            print(
                json.dumps(
                    {
                        "accepted": sum(counts),
                        "per_bot_min": min(counts),
                        "per_bot_max": max(counts),
                        "rate_refusals": fake.rate_refusals,
                        "refused": {str(k): v for k, v in fake.refused.items()},
                        "fake_errors": [repr(e) for e in fake.errors],
                    }
                ),
                flush=True,
            )
        elif line.strip() == "stop":
            break
    fake.stop()


class Fake:
    """The parent's handle on a fake subprocess."""

    def __init__(self, latency: float, scale: float, bots: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bots_bench", "fake", str(latency), str(scale), str(bots)],
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
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def __enter__(self) -> Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# --- the measured sides (children) -------------------------------------------------------------


def write_campaign(folder: Path, bots: int, rules: int, port: int, channel: dict[str, Any]) -> Path:
    """`bots` groups, each with its own bot key from the environment; `rules` rules firing
    together at 10:00 onto every group through one wecom-bot channel, each sending one
    office-wide notice (the same text to every group, as the baselines send)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tpl" / "bot").mkdir(parents=True, exist_ok=True)
    (folder / "tpl" / "bot" / "bench_notice.j2").write_text(TEXT, encoding="utf-8")
    config = {
        "campaign": {"id": "bots-bench", "name": "群机器人基准", "office": "基准派出所"},
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": TOPICS}},
        "templates": ["tpl"],
        "targets": [
            {
                "id": "county",
                "name": "基准县",
                "audience": "villagers",
                "children": [
                    {
                        "id": f"g{i}",
                        "name": f"{i}号群",
                        "tags": ["group"],
                        "address": {"wecom": {"env": f"BENCH_BOT_{i}"}},
                    }
                    for i in range(1, bots + 1)
                ],
            }
        ],
        "channels": {
            "wecom": {
                "type": "wecom-bot",
                "kind": "bot",
                "settings": {"base_url": f"http://127.0.0.1:{port}", "msgtype": "text"},
                **channel,
            }
        },
        "rules": [
            {
                "id": f"r{r}",
                "channels": ["wecom"],
                "targets": {"tags": ["group"]},
                "template": "bench_notice",
                "when": {"dates": [DAY.isoformat()], "at": "10:00"},
            }
            for r in range(rules)
        ],
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return path


def run_broadcaster(
    bots: int, rules: int, port: int, folder: str, channel: dict[str, Any]
) -> dict[str, Any]:
    """Fire `rules` occurrences at once through the real dispatcher; time until all are done."""
    from broadcaster.engine.app import App
    from broadcaster.engine.clock import SystemClock
    from broadcaster.log import DeliveryLog
    from broadcaster.model.plan import Planner

    base = Path(folder)
    path = write_campaign(base / "campaign", bots, rules, port, channel)
    environ = {f"BENCH_BOT_{i}": key(i) for i in range(1, bots + 1)}
    app = App.load(
        path,
        now=dt.datetime.combine(DAY, dt.time(9), tzinfo=TZ),
        environ=environ,
        state_dir=base / "state",
    )
    store = DeliveryLog.open(f"sqlite:///{base / 'log.sqlite3'}", hash_key=HASH_KEY)
    try:
        dispatcher = app.dispatcher(store, HASH_KEY, clock=SystemClock())
        start = dt.datetime.combine(DAY, dt.time(), tzinfo=TZ)
        occurrences = list(Planner(app.campaign).occurrences(start, start + dt.timedelta(days=1)))
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        handles = [dispatcher.fire(o) for o in occurrences]
        counts: dict[str, int] = {}
        for handle in handles:
            for status, n in handle.wait().counts.items():
                counts[status] = counts.get(status, 0) + n
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        dispatcher.close()
        coverage = store.coverage()
    finally:
        store.close()
    return {
        "deliveries": bots * rules,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "counts": counts,
        "accepted": sum(r.accepted for r in coverage),
        "peak_mb": peak_mb(),
    }


def run_requests(n: int, port: int) -> dict[str, Any]:
    """A plain sequential loop over one requests.Session: the same text to each bot."""
    import requests

    body = json.dumps({"msgtype": "text", "text": {"content": TEXT}}, ensure_ascii=False).encode()
    ok = 0
    with requests.Session() as session:
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        for i in range(1, n + 1):
            response = session.post(
                f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={key(i)}",
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=(5, 30),
            )
            ok += response.status_code == 200 and response.json().get("errcode") == 0
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
    return {"deliveries": n, "ok": ok, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_mb()}


def run_apprise(n: int, port: int) -> dict[str, Any]:
    """Apprise's `wecombot` plugin with default settings, one URL per bot, one notify().

    Its WeCom host is hard-coded; the class attribute holding it is pointed at the fake
    (nothing else is changed: concurrency, retries and throttling stay Apprise's own).
    """
    import apprise
    from apprise.plugins.wecombot import NotifyWeComBot

    NotifyWeComBot.notify_url = f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={{key}}"
    apobj = apprise.Apprise()
    for i in range(1, n + 1):
        assert apobj.add(f"wecombot://{key(i)}"), "Apprise refused the URL"
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    result = apobj.notify(body=TEXT)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    return {
        "deliveries": n,
        "ok": n if result else None,  # one bool for all; the fake's count is the check
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mb": peak_mb(),
        "version": apprise.__version__,
    }


def _child(*args: Any) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bots_bench", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _measure(
    kind: str, bots: int, scale: float, *args: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run one side against a fresh fake; its result (with `others`: the share of one core
    that processes other than this benchmark's used meanwhile) and what the fake got."""
    before = _busy_seconds()
    with Fake(LATENCY, scale, bots) as fake:
        if kind == "broadcaster":
            with tempfile.TemporaryDirectory(prefix="bots-bench-") as tmp:
                rules, channel = args
                result = _child(kind, bots, rules, fake.port, tmp, json.dumps(channel))
        else:
            result = _child(kind, args[0], fake.port)
        stats = fake.stats()
    wall, machine, ours = (a - b for a, b in zip(_busy_seconds(), before, strict=True))
    result["others"] = max(0.0, machine - ours) / wall
    return result, stats


def _check(label: str, n: int, per_bot: int, stats: dict[str, Any]) -> list[str]:
    problems = []
    if stats["accepted"] != n or stats["per_bot_max"] > per_bot:
        problems.append(
            f"fake accepted {stats['accepted']:,} (per bot {stats['per_bot_min']}–"
            f"{stats['per_bot_max']}), expected {n:,} ({per_bot} per bot)"
        )
    if stats["refused"] or stats["rate_refusals"]:
        problems.append(f"fake refused {stats['refused']} ({stats['rate_refusals']} rate limit)")
    if stats["fake_errors"]:
        problems.append(f"the fake raised: {stats['fake_errors'][:3]}")
    if problems:
        print(f"CHECK FAILED {label}: " + "; ".join(problems))
    else:
        print(f"check {label}: fake accepted {n:,}, {per_bot} per bot, none refused, none twice")
    return [f"{label}: {p}" for p in problems]


def _rate(r: dict[str, Any]) -> float:
    return r["deliveries"] / r["seconds"]  # type: ignore[no-any-return]


def fan_out(groups: int, n_req: int, n_apprise: int) -> list[str]:
    """(a) one message to `groups` groups, each its own bot, fake answering after 50 ms."""
    ours, ours_stats = _measure("broadcaster", groups, 1.0, 1, {"concurrency": CONCURRENCY})
    req, req_stats = _measure("requests", n_req, 1.0, n_req)
    app, app_stats = _measure("apprise", n_apprise, 1.0, n_apprise)
    bound = groups * LATENCY / CONCURRENCY
    print(f"\n== bots (a): one message to {groups:,} groups, each its own WeCom bot, fake 50 ms ==")
    print(
        f"{'broadcaster (SQLite log)':<28}{groups:>7,} in {ours['seconds']:6.2f}s ="
        f" {_rate(ours):7,.1f}/s   bound {groups / bound:,.0f}/s at concurrency {CONCURRENCY}"
        f" ({ours['seconds'] / bound:.2f}× the bound)   peak {ours['peak_mb']:.0f} MB"
        f"   cpu {ours['cpu_seconds'] / groups * 1000:.2f} ms/delivery"
    )
    for label, r in (
        (f"Apprise {app.get('version', '?')} wecombot", app),
        (f"requests loop (sample {n_req:,})", req),
    ):
        print(
            f"{label:<28}{r['deliveries']:>7,} in {r['seconds']:6.2f}s = {_rate(r):7,.1f}/s"
            f"   peak {r['peak_mb']:.0f} MB   cpu {r['cpu_seconds'] / r['deliveries'] * 1000:.2f}"
            " ms/delivery"
        )
    problems = _check("broadcaster", groups, 1, ours_stats)
    problems += _check(f"Apprise (sample {n_apprise:,})", n_apprise, 1, app_stats)
    problems += _check(f"requests loop (sample {n_req:,})", n_req, 1, req_stats)
    if ours["accepted"] != groups:
        problems.append(f"log: {ours['accepted']} accepted of {groups} ({ours['counts']})")
    print(
        f"ratio broadcaster ÷ requests loop: {_rate(ours) / _rate(req):.1f}× (target ≥ 10×);"
        f" ÷ Apprise: {_rate(ours) / _rate(app):.1f}× (target ≥ 3×)"
    )
    _others([("broadcaster", ours), ("Apprise", app), ("requests loop", req)])
    return problems


def _others(sides: list[tuple[str, dict[str, Any]]]) -> None:
    """Other processes' CPU while each side ran: over 10% of a core skews the rates."""
    shares = ", ".join(f"{label} {100 * r['others']:.0f}%" for label, r in sides)
    note = (
        "  ← other work on the machine skews these rates"
        if max(r["others"] for _, r in sides) > 0.1
        else ""
    )
    print(f"other processes' CPU, % of one core, during: {shares}{note}")


def under_limit(bots: int, per_bot: int) -> list[str]:
    """(b) `bots` bots × `per_bot` messages, the fake enforcing 20 per 6 s per bot."""
    channel = {"rate_limit": OUR_LIMIT}
    ours, stats = _measure("broadcaster", bots, SCALE, per_bot, channel)
    count, window = PROVIDER
    strict = ((per_bot - 1) // count) * window  # the last message may leave this soon
    rate = per_bot / count * window  # messages ÷ the provider's rate
    own_count = int(OUR_LIMIT.split("/")[0])
    own = ((per_bot - 1) // own_count) * window  # the last slot under our own 18 per window
    seconds = ours["seconds"]
    print(
        f"\n== bots (b): {bots} bots × {per_bot} messages, fake limit {count} per {window:g} s"
        f" per bot (scaled), channel limit {OUR_LIMIT} =="
    )
    print(
        f"broadcaster (SQLite log)    {bots * per_bot:,} in {seconds:6.2f}s;"
        f" rate-limit refusals at the fake: {stats['rate_refusals']} (target 0)"
    )
    print(
        f"lower bounds: messages ÷ provider rate {rate:.1f}s → {seconds / rate:.2f}×"
        f" (target ≤ 1.2×); strict sliding window {strict:.1f}s (the last {count} leave at once)"
        f" → {seconds / strict:.2f}×; our own {OUR_LIMIT} limit {own:.1f}s →"
        f" {seconds / own:.2f}×"
    )
    _others([("broadcaster (b)", ours)])
    problems = _check("broadcaster (b)", bots * per_bot, per_bot, stats)
    if ours["accepted"] != bots * per_bot:
        problems.append(f"log: {ours['accepted']} accepted ({ours['counts']})")
    return problems


def main(*, quick: bool = False) -> dict[str, Any]:
    (groups, n_req, n_apprise), (bots, per_bot) = QUICK if quick else FULL
    problems = fan_out(groups, n_req, n_apprise) + under_limit(bots, per_bot)
    if problems:
        raise SystemExit(
            "bots benchmark: messages lost, refused or duplicated:\n  " + "\n  ".join(problems)
        )
    return {}


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "fake":
        serve_fake(float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    if kind == "broadcaster":
        out = run_broadcaster(
            int(sys.argv[2]),
            int(sys.argv[3]),
            int(sys.argv[4]),
            sys.argv[5],
            json.loads(sys.argv[6]),
        )
    elif kind == "requests":
        out = run_requests(int(sys.argv[2]), int(sys.argv[3]))
    elif kind == "apprise":
        out = run_apprise(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown side {kind!r}")
    print(json.dumps(out))
