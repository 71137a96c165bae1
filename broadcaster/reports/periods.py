"""Report periods ("2026-11", "2026-W48") and their due dates on the working-day calendar.

Monthly reports are due on the 20th (monthly progress report) and the 25th (the month's
work) of the month, and the data of the month by the 5th of the next month; weekly forms
(入户宣传登记表, 宣传活动统计表) on the Thursday after the week. A date that falls on a
rest day moves to the first working day after it (the plans state this for the 20th; the
project applies it to every deadline), with the calendar's 调休 working days counted.
"""

from __future__ import annotations

import calendar as pycal
import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from broadcaster.model.calendar import ChinaCalendar

__all__ = ["Deadline", "Period", "PeriodError", "deadlines", "parse_period"]

Kind = Literal["weekly", "monthly"]


class PeriodError(ValueError):
    """A period that is not YYYY-MM (monthly) or YYYY-Www (weekly)."""


@dataclass(frozen=True)
class Period:
    """A report's span of local days: [first, last] inclusive."""

    kind: Kind
    label: str  # "2026-11", "2026-W48"
    first: dt.date
    last: dt.date

    def bounds(self, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """[since, until) as aware datetimes in the campaign's zone."""
        since = dt.datetime.combine(self.first, dt.time(), tzinfo=tz)
        until = dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        return since, until

    def buckets(self) -> list[tuple[str, dt.date, dt.date]]:
        """The chart's columns: the weeks (Monday to Sunday, cut at the month's edges) of a
        monthly report, the days of a weekly one."""
        out: list[tuple[str, dt.date, dt.date]] = []
        if self.kind == "weekly":
            for i in range(7):
                d = self.first + dt.timedelta(days=i)
                out.append((f"{d:%m-%d}", d, d))
            return out
        d = self.first
        while d <= self.last:
            end = min(self.last, d + dt.timedelta(days=6 - d.weekday()))
            iso = d.isocalendar()
            out.append((f"W{iso.week:02d} {d:%m-%d}~{end:%m-%d}", d, end))
            d = end + dt.timedelta(days=1)
        return out

    @property
    def title(self) -> str:
        if self.kind == "weekly":
            return f"{self.label} 周报 weekly ({self.first:%Y-%m-%d} ~ {self.last:%Y-%m-%d})"
        return f"{self.label} 月报 monthly ({self.first:%Y-%m-%d} ~ {self.last:%Y-%m-%d})"


def parse_period(kind: str, text: str) -> Period:
    """`monthly` with YYYY-MM, `weekly` with YYYY-Www (ISO week, Monday first)."""
    text = text.strip()
    if kind == "monthly":
        m = re.fullmatch(r"(\d{4})-(\d{1,2})", text)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise PeriodError(
                f"月份格式错误 expected a month YYYY-MM such as 2026-11; got {text!r}"
            )
        y, mo = int(m.group(1)), int(m.group(2))
        last = pycal.monthrange(y, mo)[1]
        return Period("monthly", f"{y}-{mo:02d}", dt.date(y, mo, 1), dt.date(y, mo, last))
    if kind == "weekly":
        m = re.fullmatch(r"(\d{4})-[Ww](\d{1,2})", text)
        if not m:
            raise PeriodError(
                f"周格式错误 expected an ISO week YYYY-Www such as 2026-W48; got {text!r}"
            )
        y, w = int(m.group(1)), int(m.group(2))
        try:
            first = dt.date.fromisocalendar(y, w, 1)
        except ValueError:
            raise PeriodError(f"没有这一周 {y} has no ISO week {w}") from None
        return Period("weekly", f"{y}-W{w:02d}", first, first + dt.timedelta(days=6))
    raise PeriodError(f"报表类型 expected weekly or monthly; got {kind!r}")


@dataclass(frozen=True)
class Deadline:
    """One due date of a report: the nominal date, the working day it moves to, why."""

    what: str
    nominal: dt.date
    due: dt.date
    estimated: bool

    @property
    def moved(self) -> bool:
        return self.due != self.nominal

    def line(self) -> str:
        text = f"{self.what}: {self.due:%Y-%m-%d}"
        if self.moved:
            text += f" (原定 nominally {self.nominal:%m-%d}, 遇节假日顺延 moved past a rest day)"
        if self.estimated:
            text += " (估 estimated: no official holiday file)"
        return text


def deadlines(period: Period, calendar: ChinaCalendar) -> list[Deadline]:
    """When the report of `period` is due, each date rolled to the next working day."""
    wanted: list[tuple[str, dt.date]]
    if period.kind == "weekly":
        thursday = period.first + dt.timedelta(days=7 + 3)
        wanted = [("周四报送 weekly forms due (Thursday after the week)", thursday)]
    else:
        y, m = period.first.year, period.first.month
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        wanted = [
            ("20日 月度进度报告 monthly progress report", dt.date(y, m, 20)),
            ("25日 当月工作报送 the month's work", dt.date(y, m, 25)),
            ("次月5日 上月图文和数据 last month's text, images, data", dt.date(ny, nm, 5)),
        ]
    out = []
    for what, nominal in wanted:
        day = calendar.next_working_day(nominal)
        out.append(Deadline(what, nominal, day.date, day.estimated))
    return out
