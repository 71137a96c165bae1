"""Send one SMS to 100,000 recipients through `aliyun-sms` and the Aliyun fake answering
every call after 100 ms, through the real dispatch path (delivery log writes included);
then record the fake's pushed receipts (SmsReport, 1,000 per push) through the channel's
route. Compare with a per-number sequential loop (one signed SendSms per number, the
same fake, a sample of numbers) measured in the same run.

Reported: recipients per second of the fan-out, CPU per recipient, peak memory (max
RSS) of the broadcaster process; the ratio to the loop. Checked at the end: the fake
got every number exactly once, and the log holds every number's planned, sending,
accepted and delivered events. Each side and the fake run in processes of their own.

    python -m bench sms [--quick]

Targets (issue 12): ≥ 50x the per-number loop; peak memory < 300 MB; every event logged.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 3, 3)
LATENCY = 0.1  # seconds the fake waits before answering each call
KEY_ID, SECRET = "LTAI-bench", "bench-secret"
HASH_KEY = b"sms-bench"
FULL = (100_000, 30)  # recipients, sequential-loop sample
QUICK = (5_000, 10)
TARGET_RATIO, TARGET_MB = 50.0, 300.0


def numbers(n: int) -> list[str]:
    return [f"13{i % 7 + 3}{i:08d}" for i in range(1, n + 1)]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_campaign(folder: Path, n: int, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"居民{i},{num}\n" for i, num in enumerate(numbers(n)))
    (folder / "people.csv").write_text("name,phone\n" + rows, encoding="utf-8")
    config = {
        "campaign": {"id": "sms-bench", "name": "短信基准", "office": "基准派出所"},
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": ["order_brushing"]}},
        "targets": [
            {
                "id": "county",
                "name": "基准县",
                "audience": "villagers",
                "children": [{"id": "people", "name": "短信名单", "contacts_file": "people.csv"}],
            }
        ],
        "channels": {
            "sms": {
                "type": "aliyun-sms",
                "kind": "sms",
                "settings": {
                    "access_key_id": {"env": "BENCH_ALIYUN_ID"},
                    "access_key_secret": {"env": "BENCH_ALIYUN_SECRET"},
                    "sign_name": "基准县反诈中心",
                    "template_code": "SMS_10001",
                    "endpoint": f"http://127.0.0.1:{port}/",
                    "calls_per_second": 1000,
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
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


# --- the fake, in a process of its own ---------------------------------------------------------


def serve_fake() -> None:
    """Child: run AliyunFake; print its port; answer `stats`, `reports` and `stop` on stdin."""
    from tests.fakes.aliyun import AliyunFake

    fake = AliyunFake(keys={KEY_ID: SECRET})
    fake.latency = LATENCY
    fake.start()
    print(json.dumps({"port": fake.port}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            counts = fake.sms_received
            print(
                json.dumps(
                    {
                        "calls": len(fake.requests),
                        "numbers": len(counts),
                        "twice": sum(1 for c in counts.values() if c > 1),
                        "duplicates": len(fake.duplicates()),
                        "refused": dict(fake.refused),
                        "fake_errors": [repr(e) for e in fake.errors],
                    }
                ),
                flush=True,
            )
        elif command == "reports":
            print(json.dumps(fake.sms_reports(), ensure_ascii=False), flush=True)
        elif command == "reset":
            fake.sent.clear()
            fake.sms_received.clear()
            print("{}", flush=True)
        elif command == "stop":
            break
    fake.stop()


class Fake:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sms_bench", "fake"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.port = json.loads(self._line())["port"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


# --- the measured sides ------------------------------------------------------------------------


def run_broadcaster(n: int, port: int, folder: str) -> dict[str, Any]:
    """Fire n deliveries, record the pushed receipts, count the log's events by status."""
    import sqlalchemy as sa

    from broadcaster.channel import InboundRequest
    from broadcaster.engine.app import App
    from broadcaster.engine.clock import SystemClock
    from broadcaster.engine.recovery import Recovery
    from broadcaster.log import DeliveryLog
    from broadcaster.model.plan import Planner

    base = Path(folder)
    path = write_campaign(base, n, port)
    t0 = time.perf_counter()
    app = App.load(
        path,
        now=dt.datetime.combine(DAY, dt.time(9), tzinfo=TZ),
        environ={"BENCH_ALIYUN_ID": KEY_ID, "BENCH_ALIYUN_SECRET": SECRET},
        state_dir=base / "state",
    )
    load_seconds = time.perf_counter() - t0
    url = f"sqlite:///{base / 'log.sqlite3'}"
    store = DeliveryLog.open(url, hash_key=HASH_KEY)
    try:
        dispatcher = app.dispatcher(store, HASH_KEY, clock=SystemClock())
        start = dt.datetime.combine(DAY, dt.time(), tzinfo=TZ)
        occurrence = next(Planner(app.campaign).occurrences(start, start + dt.timedelta(days=1)))
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        report = dispatcher.fire(occurrence).wait()
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        fire_peak = peak_mb()
        print("fired", flush=True)
        route = dispatcher.channel("sms").routes()[0]
        recovery = Recovery(dispatcher)
        t0 = time.perf_counter()
        for line in sys.stdin:  # the fake's SmsReport pushes, 1,000 reports each, as it posts them
            if not line.strip():
                break
            body = line.strip().encode()
            reply = recovery.inbound(
                "sms", route, InboundRequest("POST", "/receipts", {}, {}, body)
            )
            assert reply.status == 200, reply.body
        store.flush()
        receipt_seconds = time.perf_counter() - t0
        dispatcher.close()
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            events = dict(
                conn.execute(
                    sa.text("SELECT status, count(*) FROM delivery_events GROUP BY status")
                ).all()
            )
            complete = conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT delivery_id FROM delivery_events"
                    " WHERE status IN ('planned','sending','accepted','delivered')"
                    " GROUP BY delivery_id HAVING count(DISTINCT status) = 4)"
                )
            ).scalar()
            deliveries = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar()
        engine.dispose()
    finally:
        store.close()
    return {
        "recipients": n,
        "load_seconds": load_seconds,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "receipt_seconds": receipt_seconds,
        "counts": report.counts,
        "errors": report.errors[:5],
        "events": events,
        "complete": complete,
        "deliveries": deliveries,
        "fire_peak_mb": fire_peak,
        "peak_mb": peak_mb(),
    }


def run_loop(m: int, port: int) -> dict[str, Any]:
    """The per-number sequential loop: one signed SendSms call per number, one at a time."""
    import requests

    from broadcaster.channels.aliyun_rpc import AliyunClient

    with requests.Session() as session:
        client = AliyunClient(
            session,
            f"http://127.0.0.1:{port}/",
            KEY_ID,
            lambda: SECRET,
            "2017-05-25",
            lambda: dt.datetime.now(dt.UTC),
        )
        ok = 0
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for num in numbers(m):
            answer = client.call(
                "SendSms",
                {
                    "PhoneNumbers": f"15{num[2:]}",  # numbers of their own: no per-number cap
                    "SignName": "基准县反诈中心",
                    "TemplateCode": "SMS_10001",
                    "TemplateParam": "{}",
                    "OutId": "loop",
                },
            )
            ok += answer.ok
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
    return {"recipients": m, "ok": ok, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak_mb()}


def _child(*args: str, stdin: str | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.sms_bench", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"sms benchmark: {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(*, quick: bool = False) -> dict[str, Any]:
    n, sample = QUICK if quick else FULL
    fake = Fake()
    try:
        loop = _child("loop", str(sample), str(fake.port))
        with tempfile.TemporaryDirectory() as folder:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.sms_bench",
                    "broadcaster",
                    str(n),
                    str(fake.port),
                    folder,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            assert proc.stdin is not None and proc.stdout is not None
            first = proc.stdout.readline().strip()
            if first != "fired":
                proc.kill()
                raise SystemExit(f"sms benchmark: the fan-out failed: {first}")
            stats = fake.ask("stats")
            reports = fake.ask("reports")
            mine = [r for r in reports if r["out_id"] != "loop"]
            for i in range(0, len(mine), 1000):
                proc.stdin.write(json.dumps(mine[i : i + 1000], ensure_ascii=False) + "\n")
            proc.stdin.write("\n")
            proc.stdin.flush()
            del reports, mine
            out, _ = proc.communicate(timeout=3600)
            if proc.returncode != 0:
                raise SystemExit("sms benchmark: the broadcaster side failed")
            side = json.loads(out.strip().splitlines()[-1])
    finally:
        fake.stop()
    rate = n / side["seconds"]
    loop_rate = loop["ok"] / loop["seconds"]
    ratio = rate / loop_rate
    problems = []
    if stats["numbers"] - sample != n or stats["twice"] or stats["duplicates"]:
        problems.append(f"the fake counted {stats}")
    for status in ("planned", "sending", "accepted", "delivered"):
        if side["events"].get(status) != n:
            problems.append(f"log holds {side['events'].get(status)} {status} events, not {n}")
    if side["complete"] != n or side["deliveries"] != n:
        problems.append(f"{side['complete']} of {n} numbers have all four events")
    print(
        f"\n短信基准 SMS benchmark: {n:,} recipients, aliyun-sms, fake answers in {LATENCY * 1000:.0f} ms"
    )
    print(f"  加载 load (config + {n:,} contacts): {side['load_seconds']:.2f} s")
    print(
        f"  broadcaster: {side['seconds']:.2f} s, {rate:,.0f} recipients/s, "
        f"CPU {side['cpu_seconds'] / n * 1e6:.0f} µs/recipient, peak {side['fire_peak_mb']:.0f} MB"
        f" (target < {TARGET_MB:.0f} MB; {side['peak_mb']:.0f} MB after the receipts),"
        f" {stats['calls'] - sample} calls"
    )
    print(
        f"  逐号循环 per-number loop (sample of {sample}): {loop_rate:.1f} recipients/s, "
        f"CPU {loop['cpu_seconds'] / max(1, sample) * 1e6:.0f} µs/recipient"
    )
    print(f"  比值 ratio: {ratio:,.0f}x (target ≥ {TARGET_RATIO:.0f}x)")
    print(
        f"  回执 receipts: {n:,} pushed in batches of 1,000, recorded in {side['receipt_seconds']:.2f} s"
    )
    print(f"  日志 log events: {side['events']}; numbers with all four: {side['complete']:,}")
    if side["peak_mb"] >= TARGET_MB:
        print(f"  超出内存目标 over the memory target: {side['peak_mb']:.0f} MB")
    if ratio < TARGET_RATIO:
        print(f"  低于速率目标 under the rate target: {ratio:.0f}x")
    if problems:
        raise SystemExit("sms benchmark: " + "; ".join(problems))
    return {"broadcaster": side, "loop": loop, "ratio": ratio, "fake": stats}


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "fake":
        serve_fake()
        sys.exit(0)
    if kind == "broadcaster":
        result = run_broadcaster(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif kind == "loop":
        result = run_loop(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown side {kind!r}")
    print(json.dumps(result))
