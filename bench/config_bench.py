"""Load large configs: 100,000 contacts (a CSV `contacts_file`, and the same numbers written
inline), 1,000 rules, 60,000 targets; beside PyYAML's plain `yaml.safe_load` of the same
YAML files and the `csv` module reading the same contacts, which check nothing.

Our figure is `build_campaign` (parse, schema, references, phone numbers, render checks)
with a cache folder, as the engine loads: the first load, a second load in the same
process (a running scheduler's hot reload), and a load in a new process that finds the
parsed files in the cache folder. Every side runs in its own subprocess, so its peak
memory (max RSS) is its own; imports are done before the clock starts.

    python -m bench config [--quick]
"""

from __future__ import annotations

import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 3, 2)
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

# (contacts, rules, targets as townships x villages x groups)
FULL = (100_000, 1_000, (20, 100, 29))
QUICK = (10_000, 100, (4, 50, 29))


# --- the configs ------------------------------------------------------------------------------


def _base() -> dict[str, Any]:
    return {
        "campaign": {
            "id": "bench",
            "name": "基准测试",
            "office": "基准县公安局反诈中心",
            "vars": {"police_station": "基准县公安局反诈中心"},
        },
        "phases": [{"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}],
        "occasions": [
            {
                "id": "spring",
                "name": "春节返乡防骗",
                "lunar": "01-01",
                "before": 21,
                "after": 15,
                "priority": 90,
                "theme": "festive",
            }
        ],
        "default_theme": "routine",
        "themes": {
            "routine": {"name": "常态化防骗提醒", "topics": TOPICS},
            "festive": {"name": "春节返乡防骗", "topics": TOPICS[3:6]},
        },
        "channels": {
            "groups": {"type": "outbox", "kind": "bot", "name": "微信群转发稿"},
            "texts": {"type": "outbox", "kind": "sms", "name": "县短信平台"},
        },
    }


def _write_yaml(path: Path, config: dict[str, Any]) -> Path:
    import yaml

    text = yaml.safe_dump(config, allow_unicode=True, sort_keys=False, width=120)
    path.write_text(text, encoding="utf-8")
    return path


def phone_numbers(n: int, seed: int = 7) -> list[str]:
    """n distinct valid numbers as offices write them: mostly plain mobiles, some with +86
    and spaces or dashes, some landlines."""
    import phonenumbers

    rng = random.Random(seed)
    out: dict[str, str] = {}  # E.164 -> as written
    while len(out) < n:
        kind = rng.random()
        if kind < 0.02:
            area, width = rng.choice([("0571", 8), ("010", 8), ("021", 8), ("0755", 8)])
            written = (
                f"{area}-{rng.randrange(2, 9)}{rng.randrange(10 ** (width - 1)):0{width - 1}d}"
            )
        else:
            digits = rng.choice(["13", "18", "15"]) + f"{rng.randrange(10**9):09d}"
            if digits.startswith("154"):
                continue
            written = (
                f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
                if kind < 0.04
                else f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"
                if kind < 0.05
                else digits
            )
        parsed = phonenumbers.parse(written.replace(" ", "").replace("-", ""), "CN")
        if phonenumbers.is_valid_number(parsed):
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            out.setdefault(e164, written)
    return list(out.values())


def contacts_config(folder: Path, n: int, *, inline: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    numbers = phone_numbers(n)
    people: dict[str, Any] = {"id": "people", "name": "短信名单", "tags": ["sms_list"]}
    if inline:
        people["contacts"] = numbers
    else:
        rows = "".join(f"居民{i},{number}\n" for i, number in enumerate(numbers))
        (folder / "people.csv").write_text("name,phone\n" + rows, encoding="utf-8")
        people["contacts_file"] = "people.csv"
    config = _base()
    config["targets"] = [
        {"id": "county", "name": "基准县", "audience": "villagers", "children": [people]}
    ]
    config["rules"] = [
        {
            "id": "sms-twice-monthly",
            "channels": ["texts"],
            "targets": {"tags": ["sms_list"]},
            "when": {"monthdays": [8, 22], "at": "10:00", "on_holiday": "next_working_day"},
        }
    ]
    return _write_yaml(folder / "schedules.yaml", config)


def rules_config(folder: Path, n_rules: int, n_targets: int = 500, per_rule: int = 50) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    config = _base()
    config["targets"] = [
        {
            "id": "county",
            "name": "基准县",
            "audience": "villagers",
            "children": [
                {"id": f"g{i}", "name": f"第{i}组群", "tags": ["group", f"town{i % 10}"]}
                for i in range(n_targets)
            ],
        }
    ]
    rules = []
    for i in range(n_rules):
        if i % 2:
            selector: dict[str, Any] = {"tags": [f"town{i % 10}"]}
        else:
            chosen = sorted(rng.sample(range(n_targets), min(per_rule, n_targets)))
            selector = {"ids": [f"g{t}" for t in chosen]}
        rules.append(
            {
                "id": f"r{i}",
                "name": f"第{i}条规则",
                "channels": ["groups"],
                "targets": selector,
                "when": {
                    "weekdays": sorted(rng.sample(["mon", "tue", "wed", "thu", "fri"], 2)),
                    "at": f"{rng.randint(8, 19):02d}:{rng.choice((0, 15, 30, 45)):02d}",
                },
            }
        )
    config["rules"] = rules
    return _write_yaml(folder / "schedules.yaml", config)


def targets_config(folder: Path, shape: tuple[int, int, int]) -> Path:
    """A county of townships, villages and grid groups (60,021 targets at full size)."""
    towns, villages, groups = shape
    folder.mkdir(parents=True, exist_ok=True)
    config = _base()
    config["targets"] = [
        {
            "id": "county",
            "name": "基准县",
            "audience": "villagers",
            "tags": ["county"],
            "children": [
                {
                    "id": f"t{t}",
                    "name": f"第{t}镇",
                    "tags": ["township"],
                    "vars": {"police_station": f"第{t}镇派出所"},
                    "children": [
                        {
                            "id": f"t{t}-v{v}",
                            "name": f"第{t}镇第{v}村",
                            "tags": ["village"],
                            "children": [
                                {
                                    "id": f"t{t}-v{v}-g{g}",
                                    "name": f"第{t}镇第{v}村第{g}网格群",
                                    "tags": ["grid_group", "wechat_group"],
                                }
                                for g in range(groups)
                            ],
                        }
                        for v in range(villages)
                    ],
                }
                for t in range(towns)
            ],
        }
    ]
    config["rules"] = [
        {
            "id": f"r{i}",
            "channels": ["groups"],
            "targets": {"tags": ["grid_group" if i % 2 else "village"]},
            "when": {"weekdays": ["tue", "fri"], "at": f"{9 + i:02d}:00"},
        }
        for i in range(10)
    ]
    return _write_yaml(folder / "schedules.yaml", config)


# --- the measured sides (each in its own process) ---------------------------------------------


def peak_mb() -> float:
    """This process's peak resident memory. VmHWM, where Linux has it: ru_maxrss would count
    the parent's memory at the fork as well."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu() -> float:
    return time.process_time()


def run_ours(path: str, cache_dir: str, twice: bool) -> dict[str, Any]:
    from broadcaster.model.config.load import build_campaign

    t0, c0 = time.perf_counter(), cpu()
    campaign, issues = build_campaign(path, today=TODAY, cache_dir=Path(cache_dir))
    first, first_cpu = time.perf_counter() - t0, cpu() - c0
    peak = peak_mb()
    errors = [str(i) for i in issues if i.severity == "error"]
    if campaign is None or errors:
        raise SystemExit(f"the generated config is invalid: {errors[:3]}")
    second = second_cpu = None
    if twice:
        t0, c0 = time.perf_counter(), cpu()
        again, _ = build_campaign(path, today=TODAY, cache_dir=Path(cache_dir))
        second, second_cpu = time.perf_counter() - t0, cpu() - c0
        assert again is not None and list(again.targets.nodes) == list(campaign.targets.nodes)
    return {
        "first": first,
        "first_cpu": first_cpu,
        "second": second,
        "second_cpu": second_cpu,
        "peak_mb": peak,
        "targets": len(campaign.targets.nodes),
        "contacts": sum(len(node.contacts) for node in campaign.targets),
        "rules": len(campaign.rules),
    }


def run_baseline(path: str, loader: str) -> dict[str, Any]:
    import csv

    import yaml

    folder = Path(path).parent
    t0, c0 = time.perf_counter(), cpu()
    if loader == "safe_load":
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    else:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    rows = 0
    if (folder / "people.csv").exists():
        with (folder / "people.csv").open(encoding="utf-8-sig", newline="") as handle:
            rows = sum(1 for _ in csv.DictReader(handle))
    seconds, seconds_cpu = time.perf_counter() - t0, cpu() - c0
    return {
        "seconds": seconds,
        "cpu": seconds_cpu,
        "peak_mb": peak_mb(),
        "rows": rows,
        "keys": len(data),
    }


def _child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.config_bench", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench child {args[0]} failed:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(name: str, path: Path, limit_s: float, limit_mb: float | None) -> dict[str, Any]:
    cache_dir = path.parent / "state" / "cache"
    ours = _child("ours", str(path), str(cache_dir), "twice")
    disk = _child("ours", str(path), str(cache_dir), "once")  # a new process, cache on disk
    base = _child("baseline", str(path), "safe_load")
    fast = _child("baseline", str(path), "CSafeLoader")
    return {
        "name": name,
        "ours": ours,
        "disk": disk,
        "base": base,
        "fast": fast,
        "limit_s": limit_s,
        "limit_mb": limit_mb,
    }


def report(rows: list[dict[str, Any]]) -> None:
    print(
        "wall seconds (cpu seconds in brackets: this machine is shared), peak resident memory\n"
        f"{'config':<27}{'ours, first load':>24}{'yaml.safe_load (+csv)':>26}{'ratio':>8}"
        f"{'2nd load, same process':>29}{'new process':>22}"
    )
    for row in rows:
        ours, disk, base = row["ours"], row["disk"], row["base"]
        print(
            f"{row['name']:<27}"
            f"{ours['first']:>6.2f}s ({ours['first_cpu']:.2f}) {ours['peak_mb']:>5.0f} MB"
            f"{base['seconds']:>9.2f}s ({base['cpu']:.2f}) {base['peak_mb']:>5.0f} MB"
            f"{ours['first'] / base['seconds']:>7.2f}×"
            f"{ours['second']:>12.3f}s = {ours['first'] / ours['second']:>5.0f}× faster"
            f"{disk['first']:>9.2f}s = {ours['first'] / disk['first']:>4.1f}× faster"
        )
    print("\nthe fastest PyYAML (yaml.CSafeLoader with libyaml, +csv) for comparison:")
    for row in rows:
        fast = row["fast"]
        print(
            f"  {row['name']:<27}{fast['seconds']:>7.2f}s {fast['peak_mb']:>5.0f} MB"
            f"   ours / CSafeLoader = {row['ours']['first'] / fast['seconds']:.2f}×"
        )
    print("\ntargets:")
    for row in rows:
        ours = row["ours"]
        verdict = "ok" if ours["first"] < row["limit_s"] else "MISSED"
        line = (
            f"  {row['name']:<27}first load {ours['first']:.2f}s < {row['limit_s']:.0f}s {verdict}"
        )
        if row["limit_mb"] is not None:
            mem_ok = "ok" if ours["peak_mb"] < row["limit_mb"] else "MISSED"
            line += f"; peak {ours['peak_mb']:.0f} MB < {row['limit_mb']:.0f} MB {mem_ok}"
        speedup = ours["first"] / ours["second"]
        line += f"; second load {speedup:.0f}× faster (≥ 10×) {'ok' if speedup >= 10 else 'MISSED'}"
        print(line)


def generate(folder: Path, quick: bool) -> list[tuple[str, str, float, float | None]]:
    """Write the configs; (name, path, seconds allowed, megabytes allowed) of each."""
    n_contacts, n_rules, shape = QUICK if quick else FULL
    n_targets = 1 + shape[0] * (1 + shape[1] * (1 + shape[2]))
    csv_path = contacts_config(folder / "csv", n_contacts, inline=False)
    inline_path = contacts_config(folder / "inline", n_contacts, inline=True)
    return [
        (f"{n_contacts:,} contacts (CSV)", str(csv_path), 2, None),
        (f"{n_contacts:,} contacts (inline)", str(inline_path), 2, None),
        (f"{n_rules:,} rules", str(rules_config(folder / "rules", n_rules)), 2, None),
        (f"{n_targets:,} targets", str(targets_config(folder / "targets", shape)), 5, 200),
    ]


def main(*, quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # written by a child, so this process stays small (a child's memory starts from ours)
        configs = _child("generate", tmp, "quick" if quick else "full")["configs"]
        print(f"\n== config: load {', '.join(name for name, *_ in configs)} ==")
        for name, path, limit_s, limit_mb in configs:
            rows.append(measure(name, Path(path), limit_s, limit_mb))
    report(rows)
    return rows


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "generate":
        result: dict[str, Any] = {"configs": generate(Path(sys.argv[2]), sys.argv[3] == "quick")}
    elif kind == "ours":
        result = run_ours(sys.argv[2], sys.argv[3], sys.argv[4] == "twice")
    else:
        result = run_baseline(sys.argv[2], sys.argv[3])
    print(json.dumps(result))
