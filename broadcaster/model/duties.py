"""Check the plan against the campaign's duties (e.g. every group at least twice a week).

Weeks run Monday to Sunday, months by the calendar. A period is judged only when
all of it lies inside the checked range and inside the campaign (or the duty's
phases); partial periods at the edges are left out rather than reported short.
"""

from __future__ import annotations

import calendar as pycal
import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from broadcaster.model.campaign import Campaign
from broadcaster.model.config.schema import Duty
from broadcaster.model.plan import Planner

__all__ = ["DutyResult", "check_duties"]


@dataclass
class DutyResult:
    """One duty for one target: how many periods were judged and which fell short."""

    duty: Duty
    target_id: str
    periods: int = 0
    short: list[tuple[str, int]] = field(default_factory=list)  # (period label, count)

    @property
    def met(self) -> bool:
        return not self.short


def _periods(per: str, start: dt.date, end: dt.date) -> Iterator[tuple[str, dt.date, dt.date]]:
    """(label, first day, last day) of each whole week or month within [start, end]."""
    if per == "week":
        d = start + dt.timedelta(days=(7 - start.weekday()) % 7)
        while d + dt.timedelta(days=6) <= end:
            iso = d.isocalendar()
            yield (
                f"{iso.year}-W{iso.week:02d} ({d:%m-%d}~{d + dt.timedelta(days=6):%m-%d})",
                d,
                d + dt.timedelta(days=6),
            )
            d += dt.timedelta(days=7)
    else:
        y, m = start.year, start.month
        if start.day != 1:
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        while True:
            first = dt.date(y, m, 1)
            last = dt.date(y, m, pycal.monthrange(y, m)[1])
            if last > end:
                return
            yield f"{y}-{m:02d}", first, last
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def check_duties(
    campaign: Campaign, start: dt.date, end: dt.date, planner: Planner | None = None
) -> list[DutyResult]:
    """Count planned pushes per duty, target and period in [start, end] (dates inclusive)."""
    duties = campaign.config.duties
    if not duties:
        return []
    planner = planner or Planner(campaign)
    selected = {d.id: set(campaign.targets.select(**d.targets.model_dump())) for d in duties}
    counts: dict[str, Counter[tuple[str, dt.date]]] = {d.id: Counter() for d in duties}
    tz = campaign.tz
    begin = dt.datetime.combine(start, dt.time(), tzinfo=tz)
    finish = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    for item in planner.items(begin, finish, render=False):
        day = item.occurrence.at.date()
        channel = campaign.channels[item.channel_id]
        for duty in duties:
            if item.target_id not in selected[duty.id]:
                continue
            if duty.kinds and channel.kind not in duty.kinds:
                continue
            if duty.channels and item.channel_id not in duty.channels:
                continue
            counts[duty.id][(item.target_id, day)] += 1

    def inside(duty: Duty, first: dt.date, last: dt.date) -> bool:
        for offset in range((last - first).days + 1):
            phase = campaign.phase_on(first + dt.timedelta(days=offset))
            if campaign.config.phases and phase is None:
                return False
            if duty.phases and (phase is None or phase.id not in duty.phases):
                return False
        return True

    results: list[DutyResult] = []
    for duty in duties:
        periods = [p for p in _periods(duty.per, start, end) if inside(duty, p[1], p[2])]
        per_day = counts[duty.id]
        for target_id in campaign.targets.select(**duty.targets.model_dump()):
            result = DutyResult(duty, target_id, periods=len(periods))
            for label, first, last in periods:
                n = sum(
                    per_day[(target_id, first + dt.timedelta(days=k))]
                    for k in range((last - first).days + 1)
                )
                if n < duty.at_least:
                    result.short.append((label, n))
            results.append(result)
    return results
