"""The figures of a weekly or monthly report, from the delivery log by SQL aggregates.

The log is never loaded: each column of the chart (a week of a month, a day of a week) is
one aggregate over an index range of `scheduled_at`, grouped by channel, target, template
and current status: its rows number targets x templates x statuses, whatever the number of
deliveries. People are counted once per list by `count(DISTINCT recipient_hash)`; the
duties' per-person cadence streams one row per person of the duty's lists and keeps only
those short of it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broadcaster.log import DeliveryLog
from broadcaster.log.models import deliveries, delivery_state
from broadcaster.model.campaign import Campaign
from broadcaster.model.duties import _periods
from broadcaster.reports.chain import LogSeal
from broadcaster.reports.offline import Activity
from broadcaster.reports.periods import Deadline, Period
from broadcaster.vocab import Addressing, Status

__all__ = ["NONE", "Report", "Table", "build_report"]

NONE = "无数据 none"
REACHED = {Status.ACCEPTED.value, Status.DELIVERED.value}
FAILED = {Status.FAILED.value}
SKIPPED = {Status.SKIPPED.value}
SHORTFALL_ROWS = 5_000  # people listed by name at most; the count is always complete
STALE_SCREEN = dt.timedelta(hours=24)  # a screen with no item accepted for this long
LATE_HOP = dt.timedelta(hours=2)  # a relay hop reached this long after it was due


@dataclass
class Table:
    """One sheet of the XLSX, one CSV file, one table of the HTML page."""

    key: str  # file name stem, HTML id
    name: str  # sheet name (Chinese, at most 31 characters)
    title: str  # "渠道 Channels"
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    percent: set[int] = field(default_factory=set)  # columns holding a rate 0..1
    note: str = ""


@dataclass
class Report:
    campaign_id: str
    campaign_name: str
    office: str
    period: Period
    generated_at: dt.datetime
    seal: LogSeal
    deadlines: list[Deadline]
    tables: list[Table]
    per_bucket: dict[str, list[int]]  # channel -> deliveries reached per chart column
    buckets: list[str]
    townships: list[tuple[str, int, int]]  # (township, reached, deliveries)
    deliveries: int
    reached: int
    offline_count: int
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.deliveries == 0 and self.offline_count == 0

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _bucket_rows(
    conn: Connection, *, campaign: str, since: dt.datetime, until: dt.datetime
) -> list[tuple[str, str, str, str, str, int]]:
    d, s = deliveries, delivery_state
    query = (
        sa.select(
            d.c.channel_id,
            d.c.target_id,
            d.c.target_path,
            d.c.template,
            s.c.status,
            sa.func.count(),
        )
        .select_from(d.join(s, s.c.delivery_id == d.c.id))
        .where(d.c.scheduled_at >= since, d.c.scheduled_at < until, d.c.campaign == campaign)
        .group_by(d.c.channel_id, d.c.target_id, d.c.target_path, d.c.template, s.c.status)
    )
    return [(a, b, c, e, f, int(n)) for a, b, c, e, f, n in conn.execute(query)]


def _people(
    conn: Connection, campaign: str, since: dt.datetime, until: dt.datetime
) -> dict[str, tuple[int, int]]:
    """channel -> (people targeted, people reached), each person counted once per list."""
    d, s = deliveries, delivery_state
    hit = s.c.status.in_(sorted(REACHED))
    query = (
        sa.select(
            d.c.channel_id,
            d.c.target_id,
            sa.func.count(sa.distinct(d.c.recipient_hash)),
            sa.func.count(sa.distinct(sa.case((hit, d.c.recipient_hash), else_=None))),
        )
        .select_from(d.join(s, s.c.delivery_id == d.c.id))
        .where(d.c.scheduled_at >= since, d.c.scheduled_at < until, d.c.campaign == campaign)
        .group_by(d.c.channel_id, d.c.target_id)
    )
    out: dict[str, tuple[int, int]] = {}
    for channel, _, total, reached in conn.execute(query):
        a, b = out.get(channel, (0, 0))
        out[channel] = (a + int(total), b + int(reached))
    return out


def township_of(path: str) -> str:
    """The area a target counts under: the second level of its path (township, school),
    or the top level for targets directly under it."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3:
        return parts[1]
    return f"{parts[0]} 本级 county level" if parts else "—"


def topic_of(template: str) -> str:
    return template.rsplit("/", 1)[-1].split(".", 1)[0]


def _split(counts: Counter[str]) -> list[int]:
    """[deliveries, reached, failed, skipped, pending] of a status counter."""
    total = sum(counts.values())
    reached = sum(n for k, n in counts.items() if k in REACHED)
    failed = sum(n for k, n in counts.items() if k in FAILED)
    skipped = sum(n for k, n in counts.items() if k in SKIPPED)
    return [total, reached, failed, skipped, total - reached - failed - skipped]


COUNT_HEADERS = [
    "计划投递 deliveries",
    "已触达 reached",
    "失败 failed",
    "跳过 skipped",
    "未完成 pending",
    "触达率 rate",
]


def build_report(
    log: DeliveryLog,
    campaign: Campaign,
    period: Period,
    *,
    seal: LogSeal,
    deadlines: list[Deadline],
    activities: Sequence[Activity] = (),
    generated_at: dt.datetime,
) -> Report:
    """Every figure of the report for `period`."""
    tz = campaign.tz
    buckets = period.buckets()
    per_key: dict[tuple[str, str, str, str], Counter[str]] = defaultdict(Counter)
    per_bucket: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
    for i, (_, first, last) in enumerate(buckets):
        since = dt.datetime.combine(first, dt.time(), tzinfo=tz)
        until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        rows = log.read(partial(_bucket_rows, campaign=campaign.id, since=since, until=until))
        for channel, target, path, template, status, n in rows:
            per_key[(channel, target, path, template)][status] += n
            if status in REACHED:
                per_bucket[channel][i] += n
    since, until = period.bounds(tz)
    people = log.read(lambda conn: _people(conn, campaign.id, since, until))

    by_channel: dict[str, Counter[str]] = defaultdict(Counter)
    by_area: dict[str, Counter[str]] = defaultdict(Counter)
    by_audience: dict[str, Counter[str]] = defaultdict(Counter)
    by_topic: dict[str, Counter[str]] = defaultdict(Counter)
    for (channel, target, path, template), counts in per_key.items():
        node = campaign.targets.nodes.get(target)
        by_channel[channel].update(counts)
        by_area[township_of(path)].update(counts)
        by_audience[(node.audience if node else None) or "—"].update(counts)
        by_topic[topic_of(template)].update(counts)

    def counted(key: Any, counts: Counter[str], *lead: Any) -> list[Any]:
        split = _split(counts)
        return [key, *lead, *split, rate(split[1], split[0])]

    channels = Table(
        "channels",
        "渠道",
        "渠道 Channels",
        [
            "渠道 channel",
            "名称 name",
            "类型 kind",
            *COUNT_HEADERS,
            "名单人数 people targeted",
            "触达人数 people reached",
        ],
        percent={8},
    )
    for cid in sorted(by_channel):
        spec = campaign.channels.get(cid)
        row = counted(
            cid, by_channel[cid], spec.name if spec else "", spec.kind.value if spec else ""
        )
        if spec is not None and spec.addressing is Addressing.CONTACTS:
            row += list(people.get(cid, (0, 0)))
        else:
            row += [None, None]  # not sent per person
        channels.rows.append(row)

    offline_by_area: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    inside = [a for a in activities if period.first <= a.date <= period.last]
    for a in inside:
        totals = offline_by_area[a.township]
        totals[0] += 1
        totals[1] += a.households
        totals[2] += a.people
    areas = Table(
        "areas",
        "区域",
        "区域 Areas (乡镇/单位 township or unit)",
        [
            "乡镇/单位 area",
            *COUNT_HEADERS,
            "线下活动 offline activities",
            "入户户数 households",
            "受众人数 people",
        ],
        percent={6},
    )
    for area in sorted(set(by_area) | set(offline_by_area)):
        areas.rows.append(counted(area, by_area.get(area, Counter())) + offline_by_area[area])

    audiences = Table(
        "audiences",
        "对象类型",
        "对象类型 Audiences",
        ["对象类型 audience", *COUNT_HEADERS],
        percent={6},
    )
    for audience in sorted(by_audience):
        audiences.rows.append(counted(audience, by_audience[audience]))

    topics = campaign.renderer.topics
    themes = Table(
        "themes",
        "诈骗类型",
        "诈骗类型主题 Fraud-type themes",
        ["主题 topic", "名称 name", *COUNT_HEADERS],
        percent={7},
    )
    for topic in sorted(by_topic):
        known = topics.get(topic)
        themes.rows.append(counted(topic, by_topic[topic], known.name if known else ""))

    weekly = Table(
        "per_period",
        "分周" if period.kind == "monthly" else "分日",
        ("每周 Per week" if period.kind == "monthly" else "每日 Per day") + " (已触达 reached)",
        ["渠道 channel", *[label for label, _, _ in buckets], "合计 total"],
    )
    for cid in sorted(per_bucket):
        weekly.rows.append([cid, *per_bucket[cid], sum(per_bucket[cid])])

    shortfalls = Table(
        "shortfalls",
        "未达标",
        "未达工作要求 Below the duties' cadence",
        [
            "要求 duty",
            "周期 period",
            "对象 target",
            "名称 name",
            "接收方 recipient",
            "要求次数 required",
            "实际触达 reached",
        ],
    )
    notes = _shortfalls(log, campaign, period, shortfalls)

    checks = Table(
        "checks",
        "核查",
        "核查 Checks: 显示屏、转发确认、接力 screens, hand-offs, relays",
        ["类别 kind", "对象 target", "名称 name", "详情 detail"],
    )
    _checks(log, campaign, period, checks)

    offline = Table(
        "offline",
        "线下活动",
        "线下活动 Offline activities (入户宣传登记表)",
        [
            "日期 date",
            "乡镇(街道) township",
            "村(社区) village",
            "活动类型 kind",
            "入户户数 households",
            "受众人数 people",
            "宣传人员 staff",
            "备注 note",
        ],
    )
    for a in sorted(inside, key=lambda a: (a.date, a.township, a.village)):
        offline.rows.append(
            [a.date, a.township, a.village, a.kind, a.households, a.people, a.staff, a.note]
        )
    outside = len(activities) - len(inside)
    if outside:
        notes.append(
            f"线下活动 {outside} 条不在本期 offline rows outside the period left out: {outside}"
        )

    total = sum(r[3] for r in channels.rows)
    reached = sum(r[4] for r in channels.rows)
    summary = Table("summary", "概要", "概要 Summary", ["项目 item", "内容 value"])
    summary.rows += [
        ["活动 campaign", f"{campaign.config.campaign.name} ({campaign.id})"],
        ["单位 office", campaign.config.campaign.office],
        ["周期 period", period.title],
        ["生成时间 generated", f"{generated_at.astimezone(tz):%Y-%m-%d %H:%M}"],
        ["链头 chain head", seal.head_shown],
        ["记录数 records", seal.records],
        ["计划投递 deliveries", total],
        ["已触达 reached", reached],
        ["触达率 rate", rate(reached, total)],
        ["线下活动 offline activities", len(inside)],
        ["入户户数 households visited", sum(a.households for a in inside)],
        *[["报送期限 due", d.line()] for d in deadlines],
    ]
    summary.percent = {1}
    townships = sorted(
        ((area, c[1], c[0]) for area, counts in by_area.items() if (c := _split(counts))),
        key=lambda t: t[0],
    )
    report = Report(
        campaign.id,
        campaign.config.campaign.name,
        campaign.config.campaign.office,
        period,
        generated_at,
        seal,
        deadlines,
        [summary, channels, areas, audiences, themes, weekly, shortfalls, checks, offline],
        dict(per_bucket),
        [label for label, _, _ in buckets],
        townships,
        total,
        reached,
        len(inside),
        notes,
    )
    if report.empty:
        report.notes.insert(
            0, f"本期无数据 no deliveries and no offline activities in {period.label}"
        )
    return report


def _pairs(conn: Connection, *, query: sa.Select[Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in conn.execute(query)}


def _all(conn: Connection, *, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(query)]


def _duty_channels(campaign: Campaign, duty: Any) -> list[str]:
    return [
        cid
        for cid, spec in campaign.channels.items()
        if (not duty.channels or cid in duty.channels)
        and (not duty.kinds or spec.kind in duty.kinds)
    ]


def _shortfalls(log: DeliveryLog, campaign: Campaign, period: Period, table: Table) -> list[str]:
    """Targets (groups, screens) and people (on lists) reached fewer times than a duty asks,
    over each whole week or month of the period."""
    notes: list[str] = []
    d, s = deliveries, delivery_state
    tz = campaign.tz
    for duty in campaign.config.duties:
        spans = list(_periods(duty.per, period.first, period.last))
        if not spans:
            notes.append(
                f"{duty.id}: 本期不含完整的{'周' if duty.per == 'week' else '月'} the period"
                f" holds no whole {duty.per}: not judged"
            )
            continue
        channels = _duty_channels(campaign, duty)
        selected = campaign.targets.select(**duty.targets.model_dump())
        groups = [t for t in selected if not campaign.targets[t].contacts]
        lists = [t for t in selected if campaign.targets[t].contacts]
        for label, first, last in spans:
            since = dt.datetime.combine(first, dt.time(), tzinfo=tz)
            until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
            base = (
                sa.select()
                .select_from(d.join(s, s.c.delivery_id == d.c.id))
                .where(
                    d.c.campaign == campaign.id,
                    d.c.scheduled_at >= since,
                    d.c.scheduled_at < until,
                    d.c.channel_id.in_(channels),
                    s.c.status.in_(sorted(REACHED)),
                )
            )
            if groups:
                sends = sa.func.count(sa.distinct(d.c.occurrence_id))
                query = (
                    base.add_columns(d.c.target_id, sends)
                    .where(d.c.target_id.in_(groups))
                    .group_by(d.c.target_id)
                )
                got: dict[str, int] = log.read(partial(_pairs, query=query))
                for t in groups:
                    n = int(got.get(t, 0))
                    if n < duty.at_least:
                        node = campaign.targets[t]
                        table.rows.append([duty.name, label, t, node.name, "", duty.at_least, n])
            if lists:
                _people_short(log, campaign, duty, label, base, lists, table, notes)
    return notes


def _people_short(
    log: DeliveryLog,
    campaign: Campaign,
    duty: Any,
    label: str,
    base: sa.Select[Any],
    lists: Iterable[str],
    table: Table,
    notes: list[str],
) -> None:
    d = deliveries
    for list_id in lists:
        node = campaign.targets[list_id]
        query = (
            base.add_columns(d.c.recipient_hash, sa.func.count(sa.distinct(d.c.occurrence_id)))
            .where(d.c.target_id == list_id)
            .group_by(d.c.recipient_hash)
        )

        def read(conn: Connection, q: sa.Select[Any] = query) -> dict[str, int]:
            return {h: int(n) for h, n in conn.execute(q)}

        got = log.read(read)
        short = 0
        for contact in node.contacts:
            n = got.get(log.recipient_hash(contact.number), 0)
            if n >= duty.at_least:
                continue
            short += 1
            if short <= SHORTFALL_ROWS:
                who = f"{contact.name} {contact.display}".strip()
                table.rows.append([duty.name, label, list_id, node.name, who, duty.at_least, n])
        if short > SHORTFALL_ROWS:
            notes.append(
                f"{node.name}: {short} 人未达标，仅列出 {SHORTFALL_ROWS} people short, first"
                f" {SHORTFALL_ROWS} listed"
            )


def _checks(log: DeliveryLog, campaign: Campaign, period: Period, table: Table) -> None:
    """Stale screens, unconfirmed hand-offs, late relay hops: what the log shows of them."""
    d, s = deliveries, delivery_state
    since, until = period.bounds(campaign.tz)
    led = [cid for cid, c in campaign.channels.items() if c.kind.value == "led"]
    handoff = [
        cid for cid, c in campaign.channels.items() if "handoff" in c.type or "hand_off" in c.type
    ]
    relay = [cid for cid, c in campaign.channels.items() if "relay" in c.type]
    found = False
    if led:
        latest = sa.func.max(
            sa.case((s.c.status.in_(sorted(REACHED)), d.c.scheduled_at), else_=None)
        )
        query = (
            sa.select(d.c.target_id, latest, sa.func.count())
            .select_from(d.join(s, s.c.delivery_id == d.c.id))
            .where(
                d.c.campaign == campaign.id,
                d.c.channel_id.in_(led),
                d.c.scheduled_at >= since,
                d.c.scheduled_at < until,
            )
            .group_by(d.c.target_id)
        )
        rows = log.read(lambda conn: [tuple(r) for r in conn.execute(query)])
        for target, last, n in sorted(rows, key=lambda r: str(r[0])):
            if last is None or until - last > STALE_SCREEN:
                found = True
                name = campaign.targets[target].name if target in campaign.targets else ""
                when = f"{last.astimezone(campaign.tz):%Y-%m-%d %H:%M}" if last else "—"
                table.rows.append(
                    [
                        "显示屏未更新 stale screen",
                        target,
                        name,
                        f"最后更新 last item accepted: {when} ({n} planned)",
                    ]
                )
    for kind, chosen, wanted in (
        ("转发未确认 unconfirmed hand-off", handoff, [Status.ACCEPTED.value]),
        ("接力超时 late relay hop", relay, None),
    ):
        if not chosen:
            continue
        query = (
            sa.select(d.c.target_id, d.c.scheduled_at, s.c.status, s.c.since)
            .select_from(d.join(s, s.c.delivery_id == d.c.id))
            .where(
                d.c.campaign == campaign.id,
                d.c.channel_id.in_(chosen),
                d.c.scheduled_at >= since,
                d.c.scheduled_at < until,
            )
            .order_by(d.c.scheduled_at)
            .limit(SHORTFALL_ROWS)
        )
        rows = log.read(partial(_all, query=query))
        for target, at, status, reached_at in rows:
            late = (
                status in wanted if wanted else status not in REACHED or reached_at - at > LATE_HOP
            )
            if late:
                found = True
                name = campaign.targets[target].name if target in campaign.targets else ""
                table.rows.append(
                    [
                        kind,
                        target,
                        name,
                        f"{at.astimezone(campaign.tz):%m-%d %H:%M} {Status(status).label}",
                    ]
                )
    if not found:
        table.note = NONE
