"""Plan a year of 1,000 rules over 50 targets each (~5 million target-occurrences),
and enumerate the same rules' fire times with APScheduler 3.11's CronTrigger.

Each side runs in its own subprocess so peak memory (max RSS) is its own. The plan
streams CSV rows to /dev/null exactly as `broadcaster plan --format csv` does,
rendering every message to get its length.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
YEAR = 2026
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOPICS = [
    "order_brushing",
    "loan",
    "fake_customer_service",
    "impersonate_acquaintance",
    "fake_police",
    "investment",
    "phishing",
    "online_shopping",
]


def make_rules(n_rules: int, n_targets: int, per_rule: int, seed: int = 7) -> list[dict]:
    """The benchmark's rules: mostly twice a week, some daily on working days, some monthly."""
    rng = random.Random(seed)
    rules = []
    for i in range(n_rules):
        hour, minute = rng.randint(8, 19), rng.choice((0, 15, 30, 45))
        targets = sorted(rng.sample(range(n_targets), per_rule))
        kind = rng.random()
        if kind < 0.8:
            when = {
                "weekdays": sorted(rng.sample(DAYS[:5], 2), key=DAYS.index),
                "at": f"{hour:02d}:{minute:02d}",
            }
        elif kind < 0.9:
            when = {"working_days": True, "at": f"{hour:02d}:{minute:02d}"}
        else:
            when = {
                "monthdays": [rng.randint(1, 28)],
                "at": f"{hour:02d}:{minute:02d}",
                "on_holiday": "next_working_day",
            }
        rules.append(
            {
                "id": f"r{i}",
                "channels": ["groups"],
                "targets": {"ids": [f"g{t}" for t in targets]},
                "when": when,
            }
        )
    return rules


def write_config(folder: Path, rules: list[dict], n_targets: int) -> Path:
    config = {
        "campaign": {"id": "bench", "name": "基准测试", "office": "基准派出所"},
        "phases": [
            {"id": "main", "name": "集中宣传", "start": f"{YEAR}-01-01", "end": f"{YEAR}-12-31"}
        ],
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": TOPICS}},
        "targets": [
            {
                "id": "county",
                "name": "基准县",
                "audience": "villagers",
                "children": [
                    {"id": f"g{i}", "name": f"第{i}组群", "tags": ["group"]}
                    for i in range(n_targets)
                ],
            }
        ],
        "channels": {"groups": {"type": "outbox", "kind": "bot"}},
        "rules": rules,
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return path


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_plan(path: str) -> dict:
    from broadcaster.cli.campaign import PLAN_FIELDS, PlanRows
    from broadcaster.model.config import load_campaign
    from broadcaster.model.plan import Planner

    t0 = time.perf_counter()
    campaign = load_campaign(path, today=dt.date(YEAR, 1, 1))
    loaded = time.perf_counter() - t0
    planner = Planner(campaign)
    start = dt.datetime(YEAR, 1, 1, tzinfo=TZ)
    end = dt.datetime(YEAR + 1, 1, 1, tzinfo=TZ)
    rows = occurrences = 0
    last = None
    t0 = time.perf_counter()
    formatter = PlanRows(campaign)
    with open(os.devnull, "w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(PLAN_FIELDS)
        for item in planner.items(start, end):
            writer.writerow(formatter.row(item))
            rows += 1
            if item.occurrence is not last:
                occurrences += 1
                last = item.occurrence
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    fire_times = sum(1 for _ in Planner(campaign).occurrences(start, end))
    fire_seconds = time.perf_counter() - t0
    return {
        "rows": rows,
        "occurrences": occurrences,
        "seconds": elapsed,
        "load_seconds": loaded,
        "fire_times": fire_times,
        "fire_seconds": fire_seconds,
        "peak_mb": peak_mb(),
    }


def run_cron(path: str) -> dict:
    from apscheduler.triggers.cron import CronTrigger

    rules = json.loads(Path(path).read_text(encoding="utf-8"))["rules"]
    start = dt.datetime(YEAR, 1, 1, tzinfo=TZ)
    end = dt.datetime(YEAR + 1, 1, 1, tzinfo=TZ)
    fires = 0
    t0 = time.perf_counter()
    for rule in rules:
        when = rule["when"]
        hour, minute = (int(p) for p in when["at"].split(":"))
        if "weekdays" in when:
            trigger = CronTrigger(
                day_of_week=",".join(when["weekdays"]), hour=hour, minute=minute, timezone=TZ
            )
        elif "working_days" in when:
            trigger = CronTrigger(day_of_week="mon-fri", hour=hour, minute=minute, timezone=TZ)
        else:
            trigger = CronTrigger(day=when["monthdays"][0], hour=hour, minute=minute, timezone=TZ)
        prev = None
        nxt = trigger.get_next_fire_time(None, start)
        while nxt is not None and nxt < end:
            fires += 1
            prev = nxt
            nxt = trigger.get_next_fire_time(prev, prev + dt.timedelta(seconds=1))
    elapsed = time.perf_counter() - t0
    return {"fires": fires, "seconds": elapsed, "peak_mb": peak_mb()}


def _child(kind: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.plan_bench", kind, path],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(*, quick: bool = False) -> dict:
    n_rules, n_targets, per_rule = (100, 200, 50) if quick else (1000, 500, 50)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp), make_rules(n_rules, n_targets, per_rule), n_targets)
        plan = _child("plan", str(path))
        cron = _child("cron", str(path))
    plan_rate = plan["rows"] / plan["seconds"]
    fire_rate = plan["fire_times"] / plan["fire_seconds"]
    cron_rate = cron["fires"] / cron["seconds"]
    print(f"\n== plan: {n_rules} rules × {per_rule} targets, one year ==")
    print(
        f"broadcaster plan   {plan['rows']:>10,} target-occurrences ({plan['occurrences']:,} rule occurrences) in {plan['seconds']:.1f}s "
        f"= {plan_rate:>10,.0f} rows/s  (load {plan['load_seconds']:.1f}s, peak {plan['peak_mb']:.0f} MB)"
    )
    print(
        f"CronTrigger 3.11   {cron['fires']:>10,} fire times in {cron['seconds']:.1f}s = {cron_rate:>10,.0f} fires/s  (peak {cron['peak_mb']:.0f} MB)"
    )
    print(
        f"plan fire times    {plan['fire_times']:>10,} occurrences alone in {plan['fire_seconds']:.2f}s "
        f"= {fire_rate:>10,.0f} fires/s (holiday rolls and phases included)"
    )
    print(
        f"ratio: plan rows/s ÷ CronTrigger fires/s = {plan_rate / cron_rate:.1f}×  (target ≥ 5×); "
        f"fire times alone {fire_rate / cron_rate:.1f}×; plan peak {plan['peak_mb']:.0f} MB (target < 200 MB)"
    )
    return {"plan": plan, "cron": cron}


if __name__ == "__main__":
    kind, path = sys.argv[1], sys.argv[2]
    result = run_plan(path) if kind == "plan" else run_cron(path)
    print(json.dumps(result))
