"""Generate broadcaster/calendar_data/<year>.yaml from chinesecalendar (dev only).

Usage: python scripts/generate_calendar_data.py 2004 2026

Each file is then checked by tests/test_calendar_data.py against the `holidays`
package. A year published after a release goes into the user override folder
(see README, "节假日数据 / Holiday data") instead of being generated here.
"""

from __future__ import annotations

import re
import sys
from itertools import groupby
from pathlib import Path

import chinese_calendar
import holidays.countries.china as hc

NAMES = {
    "New Year's Day": ("元旦", "New Year's Day"),
    "Spring Festival": ("春节", "Spring Festival"),
    "Tomb-sweeping Day": ("清明节", "Qingming Festival"),
    "Labour Day": ("劳动节", "Labour Day"),
    "Dragon Boat Festival": ("端午节", "Dragon Boat Festival"),
    "National Day": ("国庆节", "National Day"),
    "Mid-autumn Festival": ("中秋节", "Mid-Autumn Festival"),
    "Anti-Fascist 70th Day": ("抗战胜利70周年纪念日", "Victory Day (70th anniversary)"),
}

OUT = Path(__file__).resolve().parent.parent / "broadcaster" / "calendar_data"


def notice_urls() -> dict[int, str]:
    """Archived State Council notice links, from the holidays package's docstring."""
    urls: dict[int, str] = {}
    for year, url in re.findall(r"\* \[(\d{4})\]\((\S+?)\)", hc.China.__doc__ or ""):
        urls.setdefault(int(year), url)
    return urls


def main(first: int, last: int) -> None:
    urls = notice_urls()
    for year in range(first, last + 1):
        days = sorted(
            (d, name) for d, name in chinese_calendar.constants.holidays.items() if d.year == year
        )
        work = sorted(
            (d, name) for d, name in chinese_calendar.constants.workdays.items() if d.year == year
        )
        periods = []
        for _, run in groupby(enumerate(days), key=lambda p: (p[1][1], p[1][0].toordinal() - p[0])):
            run = [d for _, d in run]
            zh, en = NAMES[run[0][1]]
            periods.append((zh, en, run[0][0], run[-1][0]))
        lines = [
            f"# 国务院办公厅关于{year}年部分节假日安排的通知",
            f"# Official holidays and make-up working days (调休) of {year}, mainland China.",
            "# Generated from chinesecalendar, checked against the holidays package.",
            f"year: {year}",
            "source:",
            f"  title: 国务院办公厅关于{year}年部分节假日安排的通知",
            f"  url: {urls.get(year, 'https://www.gov.cn/')}",
            "holidays:",
        ]
        for zh, en, start, end in periods:
            lines += [
                f"  - name: {zh}",
                f"    en: {en}",
                f"    start: {start.isoformat()}",
                f"    end: {end.isoformat()}",
            ]
        lines.append("workdays:" + ("" if work else " []"))
        for d, name in work:
            lines += [f"  - date: {d.isoformat()}", f"    for: {NAMES[name][0]}"]
        (OUT / f"{year}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{year}: {len(periods)} holiday periods, {len(work)} make-up working days")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
