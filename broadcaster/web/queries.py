"""Read queries of the console and the metrics, over the log's tables.

Every query reads through an index and returns a bounded number of rows, so a page
costs the same at 1,000,000 deliveries as at 1,000: lists are pages of a fixed size
(keyset, newest first), counts are grouped over one send or over the current-state
projection's indexes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broadcaster.log import queries as q
from broadcaster.log.models import deliveries, delivery_events, delivery_state, occurrences
from broadcaster.log.records import AreaCoverageRow, CoverageRow, DeliveryState, roll_up
from broadcaster.vocab import ErrorClass, Status

__all__ = [
    "LogFilter",
    "LogPage",
    "TargetFigures",
    "channel_errors",
    "coverage_for",
    "coverage_of",
    "deliveries_page",
    "occurrence_ids_in",
    "queue_depth",
    "receipt_lags",
    "send_figures",
    "waiting",
]

PAGE_SIZE = 100


@dataclass(frozen=True)
class LogFilter:
    """What the log page filters by (None: any)."""

    campaign: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    rule: str | None = None
    channel: str | None = None
    target: str | None = None
    status: Status | None = None
    occurrence: str | None = None
    recipient_hash: str | None = None


@dataclass(frozen=True)
class LogPage:
    rows: list[DeliveryState]
    next_cursor: str | None  # "scheduled_at-ISO|id" of the last row, when more follow


def _state_query_with_id() -> sa.Select[Any]:
    return q.state_query().add_columns(deliveries.c.id.label("row_id"))


def deliveries_page(
    conn: Connection, f: LogFilter, *, cursor: str | None = None, size: int = PAGE_SIZE
) -> LogPage:
    """One page of deliveries, newest first, after `cursor`."""
    d = deliveries
    query = q.filtered(
        _state_query_with_id(),
        campaign=f.campaign,
        since=f.since,
        until=f.until,
        rule=f.rule,
        channel=f.channel,
        target=f.target,
        occurrence=f.occurrence,
        status=[f.status] if f.status else None,
    )
    if f.recipient_hash is not None:  # the deliveries' column has the index
        query = query.where(d.c.recipient_hash == f.recipient_hash)
    if cursor:
        when_text, _, id_text = cursor.partition("|")
        try:
            when = dt.datetime.fromisoformat(when_text)
            row_id = int(id_text)
        except ValueError:
            when, row_id = None, None
        if when is not None and when.tzinfo is not None and row_id is not None:
            query = query.where(sa.tuple_(d.c.scheduled_at, d.c.id) < sa.tuple_(when, row_id))
    query = query.order_by(d.c.scheduled_at.desc(), d.c.id.desc()).limit(size + 1)
    rows = conn.execute(query).all()
    more = len(rows) > size
    rows = rows[:size]
    states = [_state(r) for r in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = f"{last.scheduled_at.isoformat()}|{last.row_id}"
    return LogPage(states, next_cursor)


def _state(row: Any) -> DeliveryState:
    m = dict(row._mapping)
    m.pop("row_id", None)
    m["status"] = Status(m["status"])
    m["error_class"] = ErrorClass(m["error_class"]) if m["error_class"] else None
    return DeliveryState(**m)


def occurrence_ids_in(
    conn: Connection,
    campaign: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    *,
    rule: str | None = None,
    limit: int | None = 20,
) -> list[str]:
    """The newest occurrences of a campaign fired in [since, until) (at most `limit`)."""
    o = occurrences
    query = (
        sa.select(o.c.occurrence_id, sa.func.max(o.c.scheduled_at).label("at"))
        .where(o.c.campaign == campaign, o.c.status == "fired")
        .group_by(o.c.occurrence_id)
        .order_by(sa.desc("at"))
        .limit(limit)
    )
    if since is not None:
        query = query.where(o.c.scheduled_at >= since)
    if until is not None:
        query = query.where(o.c.scheduled_at < until)
    if rule is not None:
        query = query.where(o.c.rule_id == rule)
    return [r[0] for r in conn.execute(query)]


def coverage_for(
    conn: Connection,
    campaign: str,
    occurrence_ids: Sequence[str],
    *,
    channel: str | None = None,
    target: str | None = None,
) -> list[CoverageRow]:
    """Coverage of the given sends (each read through the occurrence-channel index)."""
    out: list[CoverageRow] = []
    for occurrence_id in occurrence_ids:
        base = q.filtered(
            q.state_query(),
            campaign=campaign,
            occurrence=occurrence_id,
            channel=channel,
            target=target,
        )
        out += [q.coverage_row(r) for r in conn.execute(q.coverage_query(base))]
    out.sort(key=lambda c: (c.scheduled_at, c.occurrence_id, c.channel_id), reverse=True)
    return out


def queue_depth(
    conn: Connection, statuses: Iterable[Status], campaign: str | None = None
) -> list[tuple[str, int]]:
    """(channel, deliveries in these statuses): one index range per status."""
    s = delivery_state
    counts: dict[str, int] = {}
    for status in statuses:
        query = (
            sa.select(s.c.channel_id, sa.func.count())
            .where(s.c.status == Status(status).value)
            .group_by(s.c.channel_id)
        )
        if campaign is not None:
            query = query.where(s.c.campaign == campaign)
        for channel, n in conn.execute(query):
            counts[channel] = counts.get(channel, 0) + int(n)
    return sorted(counts.items())


def channel_errors(
    conn: Connection, since: dt.datetime, campaign: str | None = None
) -> list[tuple[str, str, int]]:
    """(channel, error class, deliveries) that failed, or whose outcome is unknown or
    unresolved, since `since`."""
    s = delivery_state
    bad = [Status.FAILED.value, Status.UNKNOWN.value, Status.UNRESOLVED.value]
    query = (
        sa.select(s.c.channel_id, s.c.error_class, sa.func.count())
        .where(s.c.status.in_(bad), s.c.since >= since)
        .group_by(s.c.channel_id, s.c.error_class)
    )
    if campaign is not None:
        query = query.where(s.c.campaign == campaign)
    return [(a, b or ErrorClass.UNKNOWN.value, int(n)) for a, b, n in conn.execute(query)]


def receipt_lags(
    conn: Connection, since: dt.datetime, limit: int = 20_000
) -> list[tuple[str, float]]:
    """(channel, seconds from accepted to delivered) of deliveries delivered since `since`."""
    s, e = delivery_state, delivery_events
    accepted = (
        sa.select(sa.func.min(e.c.at))
        .where(e.c.delivery_id == s.c.delivery_id, e.c.status == Status.ACCEPTED.value)
        .scalar_subquery()
    )
    query = (
        sa.select(s.c.channel_id, s.c.since, accepted.label("accepted_at"))
        .where(s.c.status == Status.DELIVERED.value, s.c.since >= since)
        .order_by(s.c.since.desc())
        .limit(limit)
    )
    out = []
    for channel, delivered_at, accepted_at in conn.execute(query):
        if accepted_at is None or delivered_at is None:
            continue
        out.append((channel, max(0.0, (delivered_at - accepted_at).total_seconds())))
    return out


def waiting(
    conn: Connection, campaign: str, channels: Sequence[str], *, limit: int = PAGE_SIZE
) -> list[DeliveryState]:
    """Deliveries of these channels still only accepted (no receipt, no confirmation yet),
    the longest waiting first."""
    if not channels:
        return []
    s = delivery_state
    query = (
        q.state_query()
        .where(
            s.c.campaign == campaign,
            s.c.status == Status.ACCEPTED.value,
            s.c.channel_id.in_(list(channels)),
        )
        .order_by(s.c.since)
        .limit(limit)
    )
    return [q.state_from_row(r) for r in conn.execute(query)]


@dataclass(frozen=True)
class TargetFigures:
    """One send's deliveries to one target on one channel, counted by how far they got."""

    rule_id: str
    channel_id: str
    target_id: str
    scheduled_at: dt.datetime
    counts: tuple[int, ...]  # as CoverageRow: targeted, accepted (or delivered), delivered,
    # failed, unknown, skipped, waiting, unresolved


def send_figures(conn: Connection, occurrence_ids: Sequence[str]) -> dict[str, list[TargetFigures]]:
    """Per send, its figures per channel and target: one reading of its deliveries serves
    every coverage filter and the duties (a target is reached when `accepted` > 0)."""
    d, s = deliveries, delivery_state

    def count(*wanted: Status) -> sa.ColumnElement[Any]:
        hit = s.c.status.in_([w.value for w in wanted])
        return sa.func.coalesce(sa.func.sum(sa.case((hit, 1), else_=0)), 0)

    out: dict[str, list[TargetFigures]] = {}
    for occ in occurrence_ids:
        query = (
            sa.select(
                sa.func.min(d.c.rule_id),
                d.c.channel_id,
                d.c.target_id,
                sa.func.min(d.c.scheduled_at),
                sa.func.count(),
                count(Status.ACCEPTED, Status.DELIVERED),
                count(Status.DELIVERED),
                count(Status.FAILED),
                count(Status.UNKNOWN, Status.SENDING, Status.INTERRUPTED),
                count(Status.SKIPPED),
                count(Status.PLANNED, Status.DEFERRED),
                count(Status.UNRESOLVED),
            )
            .select_from(d.join(s, s.c.delivery_id == d.c.id))
            .where(d.c.occurrence_id == occ)
            .group_by(d.c.channel_id, d.c.target_id)
        )
        out[occ] = [
            TargetFigures(rule, channel, target, at, tuple(int(n) for n in counts))
            for rule, channel, target, at, *counts in conn.execute(query)
        ]
    return out


def coverage_of(
    occurrence_id: str,
    figures: Sequence[TargetFigures],
    *,
    channel: str | None = None,
    target: str | None = None,
) -> list[CoverageRow]:
    """Coverage rows (one per channel) of a send from its figures, filtered."""
    by_channel: dict[str, tuple[str, dt.datetime, list[int]]] = {}
    for f in figures:
        if (channel is not None and f.channel_id != channel) or (
            target is not None and f.target_id != target
        ):
            continue
        found = by_channel.get(f.channel_id)
        if found is None:
            by_channel[f.channel_id] = (f.rule_id, f.scheduled_at, list(f.counts))
        else:
            sums = [a + b for a, b in zip(found[2], f.counts, strict=True)]
            by_channel[f.channel_id] = (found[0], min(found[1], f.scheduled_at), sums)
    return [
        CoverageRow(occurrence_id, rule, cid, at, *sums)
        for cid, (rule, at, sums) in sorted(by_channel.items())
    ]


def area_coverage(
    conn: Connection, campaign: str, occurrence_id: str, *, channel: str | None = None
) -> list[AreaCoverageRow]:
    """One send's coverage per area of the hierarchy, every level (县, 镇, 村, 组)."""
    base = q.filtered(q.state_query(), campaign=campaign, occurrence=occurrence_id, channel=channel)
    rows = conn.execute(q.area_coverage_query(base))
    return roll_up((q.area_coverage_row(r) for r in rows), None)
