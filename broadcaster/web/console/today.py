"""今日 Today: the day's occurrences by time, channel and target with their state; the next days."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from starlette.responses import Response

from broadcaster.log.records import CoverageRow, OccurrenceState
from broadcaster.model.adhoc import ADHOC_PREFIX
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.console.views import Tally, day_arg, names_of, tally

NEXT_DAYS = 7


@dataclass
class Row:
    at: dt.datetime
    rule_id: str
    occurrence_id: str
    channel_id: str
    targets: str
    state: str  # planned | due | fired | missed | skipped | failed | done
    state_label: str
    estimated: bool = False
    tally: Tally | None = None
    reason: str = ""


@dataclass
class Upcoming:
    day: dt.date
    holiday: str | None
    items: list[tuple[dt.datetime, str, str, int, bool]] = field(default_factory=list)


STATE_LABELS = {
    "planned": "计划 planned",
    "due": "待触发 due",
    "fired": "已触发 fired",
    "done": "完成 done",
    "missed": "错过 missed",
    "skipped": "跳过 skipped",
    "failed": "失败 failed",
}


@page("/", "今日", "Today", order=10)
def today(req: ConsoleRequest) -> Response:
    service = req.service
    campaign = service.app.campaign
    tz = campaign.tz
    now = service.clock.now().astimezone(tz)
    day = day_arg(req.arg("date"), now.date())
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    end = start + dt.timedelta(days=1)
    planner = service.planner()
    planned = list(planner.occurrences(start, end))
    records = service.log.occurrence_states(campaign.id, start, end)
    fired = [oid for oid, s in records.items()]
    coverage = service.log.read(lambda conn: service.coverage.coverage(conn, campaign.id, fired))
    by_send = {(c.occurrence_id, c.channel_id): c for c in coverage}
    rules = {r.id: r for r in campaign.rules}
    rows: list[Row] = []
    seen: set[str] = set()
    for occ in planned:
        seen.add(occ.id)
        spec = rules[occ.rule_id]
        record = records.get(occ.id)
        for cid in spec.rule.channels:
            rows.append(
                _row(
                    occ.at,
                    occ.rule_id,
                    occ.id,
                    cid,
                    names_of(campaign, spec.targets),
                    record,
                    by_send.get((occ.id, cid)),
                    now,
                    occ.estimated,
                )
            )
    for oid, record in records.items():  # sends not in the plan: send-now, an older config
        if oid in seen:
            continue
        channels = sorted({c.channel_id for c in coverage if c.occurrence_id == oid}) or ["—"]
        for cid in channels:
            label = "立即发送 send-now" if record.rule_id.startswith(ADHOC_PREFIX) else ""
            rows.append(
                _row(
                    record.scheduled_at,
                    record.rule_id,
                    oid,
                    cid,
                    label,
                    record,
                    by_send.get((oid, cid)),
                    now,
                    False,
                )
            )
    rows.sort(key=lambda r: (r.at, r.rule_id, r.channel_id))
    upcoming: list[Upcoming] = []
    for offset in range(1, NEXT_DAYS + 1):
        d = day + dt.timedelta(days=offset)
        s = dt.datetime.combine(d, dt.time(), tzinfo=tz)
        item = Upcoming(d, campaign.calendar.holiday_name(d))
        for occ in planner.occurrences(s, s + dt.timedelta(days=1)):
            spec = rules[occ.rule_id]
            item.items.append(
                (
                    occ.at,
                    occ.rule_id,
                    ", ".join(spec.rule.channels),
                    len(spec.targets),
                    occ.estimated,
                )
            )
        upcoming.append(item)
    return req.render(
        "today.html",
        title="今日 Today",
        day=day,
        prev_day=day - dt.timedelta(days=1),
        next_day=day + dt.timedelta(days=1),
        holiday=campaign.calendar.holiday_name(day),
        working=campaign.calendar.is_working_day(day),
        rows=rows,
        upcoming=upcoming,
    )


def _row(
    at: dt.datetime,
    rule_id: str,
    occurrence_id: str,
    channel_id: str,
    targets: str,
    record: OccurrenceState | None,
    coverage: CoverageRow | None,
    now: dt.datetime,
    estimated: bool,
) -> Row:
    if coverage is not None:
        state = "fired" if record is None or record.status == "fired" else record.status
    elif record is not None:
        state = record.status
    else:
        state = "planned" if at > now else "due"
    return Row(
        at,
        rule_id,
        occurrence_id,
        channel_id,
        targets,
        state,
        STATE_LABELS.get(state, state),
        estimated,
        tally(coverage) if coverage is not None else None,
        record.reason if record is not None and state in ("missed", "skipped", "failed") else "",
    )
