"""日历 Calendar: a month of the plan with holidays, make-up working days, phases and occasions."""

from __future__ import annotations

import calendar as pycal
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from starlette.responses import Response

from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError

WEEKDAYS = ("一 Mon", "二 Tue", "三 Wed", "四 Thu", "五 Fri", "六 Sat", "日 Sun")
SHOWN = 4  # occurrences listed in a day's box; the rest are counted


@dataclass
class Day:
    date: dt.date
    in_month: bool
    holiday: str | None
    makeup: bool
    working: bool
    phase: str | None
    occasions: list[str]
    occurrences: list[tuple[str, str, bool]] = field(default_factory=list)  # (time, rule, est.)

    @property
    def estimated(self) -> bool:
        return any(e for _, _, e in self.occurrences)


def month_arg(text: str, today: dt.date) -> tuple[int, int]:
    if not text:
        return today.year, today.month
    try:
        year, month = (int(p) for p in text.split("-"))
        dt.date(year, month, 1)
    except ValueError:
        raise WebError(f"月份格式错误 month: expected YYYY-MM, got {text[:20]!r}") from None
    if not 1901 <= year <= 2099:
        raise WebError("月份超出范围 month out of range (1901-2099)")
    return year, month


@page("/calendar", "日历", "Calendar", order=20)
def calendar_page(req: ConsoleRequest) -> Response:
    service = req.service
    campaign = service.app.campaign
    tz = campaign.tz
    today = service.clock.now().astimezone(tz).date()
    year, month = month_arg(req.arg("month"), today)
    first = dt.date(year, month, 1)
    last = dt.date(year, month, pycal.monthrange(year, month)[1])
    grid_start = first - dt.timedelta(days=first.weekday())
    grid_end = last + dt.timedelta(days=6 - last.weekday())
    planner = service.planner()
    by_day: dict[dt.date, list[tuple[str, str, bool]]] = defaultdict(list)
    start = dt.datetime.combine(grid_start, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(grid_end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    for occ in planner.occurrences(start, end):
        by_day[occ.at.date()].append((f"{occ.at:%H:%M}", occ.rule_id, occ.estimated))
    cal = campaign.calendar
    days = []
    d = grid_start
    while d <= grid_end:
        phase = campaign.phase_on(d)
        year_data = cal.years.get(d.year)
        makeup = year_data is not None and any(w == d for w, _ in year_data.workdays)
        days.append(
            Day(
                d,
                d.month == month,
                cal.holiday_name(d),
                makeup,
                cal.is_working_day(d),
                phase.name if phase else None,
                [s.occasion.name for s in planner.themes.on(d)],
                by_day.get(d, []),
            )
        )
        d += dt.timedelta(days=1)
    prev_month = (first - dt.timedelta(days=1)).strftime("%Y-%m")
    next_month = (last + dt.timedelta(days=1)).strftime("%Y-%m")
    return req.render(
        "calendar.html",
        title="日历 Calendar",
        year=year,
        month=month,
        days=days,
        weekdays=WEEKDAYS,
        today=today,
        shown=SHOWN,
        known=cal.is_known(year),
        prev_month=prev_month,
        next_month=next_month,
    )
