"""Recipient lists: read and import 100,000 rows, and load a campaign sending to them.

Our figures: `read_list` on a GBK CSV (as Excel on a Chinese Windows saves it) and on an
XLSX of the same rows (python-calamine; openpyxl read-only shown beside it), the import into the recipient store, and
`build_campaign` of a campaign whose target names the imported list: the first load in a
process, a second load (unchanged list: a running scheduler's reload, `validate` then
`plan`), and a fresh process. Baseline, measured in the same run: the plain loop an
importer would write, `csv` plus `phonenumbers.parse` / `is_valid_number` / `format_number`
per row, on the same file. Targets (issue 12): 100,000 rows in under 2 s; an unchanged
list costs (close to) nothing on `validate` and `plan`.

    python -m bench recipients [--quick]
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIXES = ("138", "139", "137", "150", "186", "158", "133", "189", "177", "135")
TAGS = ("老年人", "学生家长", "外来务工", "老年人;学生家长")


def rows(n: int) -> list[list[str]]:
    return [
        [f"居民{i}", f"{PREFIXES[i % 10]}{i:08d}", f"东村/{i % 12 + 1}组", TAGS[i % 4]]
        for i in range(n)
    ]


def csv_bytes(data: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["姓名", "手机", "地区", "标签"])
    writer.writerows(data)
    return out.getvalue().encode("gb18030")


def xlsx_bytes(data: list[list[str]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["姓名", "手机", "地区", "标签"])
    for row in data:
        sheet.append([row[0], int(row[1]), row[2], row[3]])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def baseline(raw: bytes) -> int:
    """The straightforward importer: every number through phonenumbers."""
    import phonenumbers

    good = 0
    reader = csv.reader(io.StringIO(raw.decode("gb18030"), newline=""))
    next(reader)
    for row in reader:
        try:
            parsed = phonenumbers.parse(row[1], "CN")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            good += 1
    return good


def timed(fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    cpu = time.process_time()
    value = fn(*args)
    return value, time.perf_counter() - started, time.process_time() - cpu


CAMPAIGN = {
    "campaign": {"id": "bench", "name": "基准", "office": "基准县反诈中心"},
    "phases": [{"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}],
    "default_theme": "routine",
    "themes": {"routine": {"name": "日常", "topics": ["order_brushing", "loan"]}},
    "targets": [
        {
            "id": "town",
            "name": "青山镇",
            "children": [{"id": "dongcun", "name": "东村", "recipients": {"list": "dongcun"}}],
        }
    ],
    "channels": {"texts": {"type": "outbox", "kind": "sms"}},
    "rules": [
        {
            "id": "monthly",
            "channels": ["texts"],
            "targets": {"ids": ["dongcun"]},
            "recipients": {"tags": ["老年人"]},
            "when": {"monthdays": [5], "at": "10:00"},
        }
    ],
}

FRESH = """
import sys, time
from pathlib import Path
import datetime as dt
from broadcaster.model.config.load import build_campaign
from broadcaster.recipients.store import RecipientStore
t = time.perf_counter()
c, issues = build_campaign(Path(sys.argv[1]), today=dt.date(2026, 3, 2),
                           recipients=RecipientStore(Path(sys.argv[2])))
assert c is not None and not [i for i in issues if i.severity == "error"], issues
print(time.perf_counter() - t)
"""


def main(quick: bool = False) -> None:
    from broadcaster.model.config.load import build_campaign, forget_loaded
    from broadcaster.recipients.reader import contacts_of, read_list
    from broadcaster.recipients.store import RecipientStore

    n = 10_000 if quick else 100_000
    data = rows(n)
    raw_csv = csv_bytes(data)
    print(f"名单基准 recipient lists: {n:,} rows")
    read, ours, ours_cpu = timed(lambda: (r := read_list(raw_csv), contacts_of(r.rows))[0])
    assert len(read.rows) == n and not read.problems
    good, base, base_cpu = timed(baseline, raw_csv)
    assert good == n
    print(
        f"  读取 GBK CSV read: {ours:.2f} s wall, {ours_cpu:.2f} s CPU — baseline"
        f" csv+phonenumbers loop {base:.2f} s wall, {base_cpu:.2f} s CPU — {base_cpu / ours_cpu:.1f}×"
        " by CPU (target: under 2 s for 100,000)"
    )
    raw_xlsx = xlsx_bytes(data)
    read_x, xlsx_s, xlsx_cpu = timed(read_list, raw_xlsx)
    assert len(read_x.rows) == n
    from broadcaster.recipients import reader

    _, opx_s, opx_cpu = timed(lambda: sum(1 for _ in reader._openpyxl_rows(raw_xlsx)))
    print(
        f"  读取 XLSX read (python-calamine): {xlsx_s:.2f} s wall, {xlsx_cpu:.2f} s CPU —"
        f" openpyxl read-only, rows only: {opx_s:.2f} s wall, {opx_cpu:.2f} s CPU"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = RecipientStore(folder / "var" / "recipients.sqlite3")
        _, imported, _ = timed(
            lambda: store.replace_list(
                "dongcun",
                read.rows,
                source="bench.csv",
                source_sha256="0" * 64,
                at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
            )
        )
        print(f"  导入存储 import into the store: {imported:.2f} s")
        config = folder / "schedules.yaml"
        config.write_text(json.dumps(CAMPAIGN, ensure_ascii=False), encoding="utf-8")
        forget_loaded()
        today = dt.date(2026, 3, 2)
        (campaign, _), first, first_cpu = timed(
            lambda: build_campaign(config, today=today, recipients=store)
        )
        assert campaign is not None and len(campaign.targets["dongcun"].contacts) == n
        _, again, _ = timed(lambda: build_campaign(config, today=today, recipients=store))
        fresh = float(
            subprocess.run(
                [sys.executable, "-c", FRESH, str(config), str(store.path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout.strip()
        )
        print(
            f"  载入活动 load the campaign: first {first:.2f} s ({first_cpu:.2f} s CPU), unchanged list again"
            f" {again * 1000:.0f} ms ({first / max(again, 1e-6):.0f}× less), new process"
            f" {fresh:.2f} s (target: an unchanged list does not slow validate or plan)"
        )
