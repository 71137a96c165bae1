"""工作要求 Duties: groups and lists below their cadence this week or this month, by name.

"Planned" counts what the plan holds for the whole period (the duty check of `validate`
and `plan`); "reached so far" counts sends the log shows accepted or delivered.
"""

from __future__ import annotations

import calendar as pycal
import datetime as dt
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection
from starlette.responses import Response

from broadcaster.model.duties import check_duties
from broadcaster.web import queries
from broadcaster.web.console.base import ConsoleRequest, page

if TYPE_CHECKING:
    from broadcaster.web.service import WebService


@dataclass
class Shortfall:
    duty: str
    duty_name: str
    per: str
    at_least: int
    period: str
    target_id: str
    target_name: str
    planned: int
    reached: int


def _reached(
    service: WebService, campaign: str, since: dt.datetime, until: dt.datetime, conn: Connection
) -> Counter[tuple[str, str]]:
    """(target, channel) -> sends in [since, until) that reached it (each send counted once)."""
    sends = queries.occurrence_ids_in(conn, campaign, since, until, limit=None)
    figures = service.coverage.figures(conn, campaign, sends)
    counts: Counter[tuple[str, str]] = Counter()
    for per_send in figures.values():  # accepted counts accepted or delivered
        counts.update({(f.target_id, f.channel_id) for f in per_send if f.counts[1] > 0})
    return counts


@page("/duties", "工作要求", "Duties", order=50)
def duties_page(req: ConsoleRequest) -> Response:
    service = req.service
    campaign = service.app.campaign
    tz = campaign.tz
    today = service.clock.now().astimezone(tz).date()
    week = (
        today - dt.timedelta(days=today.weekday()),
        today + dt.timedelta(days=6 - today.weekday()),
    )
    month = (today.replace(day=1), today.replace(day=pycal.monthrange(today.year, today.month)[1]))
    planner = service.planner()
    rows: list[Shortfall] = []
    duties = campaign.config.duties
    for per, (first, last) in (("week", week), ("month", month)):
        wanted = [d for d in duties if d.per == per]
        if not wanted:
            continue
        since = dt.datetime.combine(first, dt.time(), tzinfo=tz)
        until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        reached = service.log.read(partial(_reached, service, campaign.id, since, until))
        for result in check_duties(campaign, first, last, planner):
            duty = result.duty
            if duty.per != per or result.met:
                continue
            channels = [
                cid
                for cid, spec in campaign.channels.items()
                if (not duty.channels or cid in duty.channels)
                and (not duty.kinds or spec.kind in duty.kinds)
            ]
            sent = sum(reached.get((result.target_id, cid), 0) for cid in channels)
            for label, planned in result.short:
                rows.append(
                    Shortfall(
                        duty.id,
                        duty.name,
                        "周 week" if per == "week" else "月 month",
                        duty.at_least,
                        label,
                        result.target_id,
                        campaign.targets[result.target_id].name,
                        planned,
                        sent,
                    )
                )
    return req.render(
        "duties.html",
        title="工作要求 Duties",
        rows=rows,
        duties=duties,
        week=week,
        month=month,
    )
