"""Read queries of the delivery log: deliveries with their current state, coverage, history.

Every query reads the current-state projection (`delivery_state`), one row per
delivery, never the event history: at millions of deliveries the unfinished ones are
found through an index, not by scanning every event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from broadcaster.log.models import deliveries, delivery_events, delivery_state, occurrences
from broadcaster.log.records import (
    AreaCoverageRow,
    CoverageRow,
    DeliveryState,
    Event,
    OccurrenceState,
)
from broadcaster.vocab import ErrorClass, Status

__all__ = [
    "area_coverage_query",
    "area_coverage_row",
    "coverage_query",
    "coverage_row",
    "event_from_row",
    "filtered",
    "latest_occurrences",
    "occurrence_from_row",
    "state_from_row",
    "state_query",
]


def state_query() -> sa.Select[Any]:
    """Deliveries joined to their current state."""
    d, s = deliveries, delivery_state
    return sa.select(
        *(c for c in d.columns if c.name != "id"),
        s.c.status,
        s.c.since.label("status_at"),
        s.c.error_class,
        s.c.reason,
        s.c.provider_id,
        s.c.attempts.label("attempt"),
        s.c.resends,
        s.c.parts_done,
        s.c.next_check,
        s.c.lease_owner,
        s.c.lease_until,
    ).select_from(d.join(s, s.c.delivery_id == d.c.id))


def filtered(
    query: sa.Select[Any],
    *,
    campaign: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    rule: str | None = None,
    channel: str | None = None,
    target: str | None = None,
    occurrence: str | None = None,
    recipient_hash: str | None = None,
    status: Iterable[Status] | None = None,
) -> sa.Select[Any]:
    d, s = deliveries, delivery_state
    if since is not None:
        query = query.where(d.c.scheduled_at >= since)
    if until is not None:
        query = query.where(d.c.scheduled_at < until)
    if campaign is not None:
        query = query.where(s.c.campaign == campaign)
    if channel is not None:
        query = query.where(s.c.channel_id == channel)
    if recipient_hash is not None:  # the deliveries' column is indexed (with the time)
        query = query.where(d.c.recipient_hash == recipient_hash)
    equal: Mapping[str, str | None] = {
        "rule_id": rule,
        "target_id": target,
        "occurrence_id": occurrence,
    }
    for column, value in equal.items():
        if value is not None:
            query = query.where(d.c[column] == value)
    if status is not None:
        query = query.where(s.c.status.in_([Status(x).value for x in status]))
    return query


def state_from_row(row: Row[Any]) -> DeliveryState:
    m = dict(row._mapping)
    m["status"] = Status(m["status"])
    m["error_class"] = ErrorClass(m["error_class"]) if m["error_class"] else None
    return DeliveryState(**m)


def event_from_row(key: str, r: Row[Any]) -> Event:
    return Event(
        key,
        Status(r.status),
        r.at,
        ErrorClass(r.error_class) if r.error_class else None,
        r.reason,
        r.provider_id,
        r.attempt,
        r.step,
        r.detail or "",
        r.actor or "",
    )


def coverage_query(base: sa.Select[Any]) -> sa.Select[Any]:
    """Per occurrence and channel: targeted, and how many reached each current status."""
    sub = base.subquery()

    def count(*wanted: Status) -> sa.ColumnElement[Any]:
        hit = sub.c.status.in_([s.value for s in wanted])
        return sa.func.coalesce(sa.func.sum(sa.case((hit, 1), else_=0)), 0)

    when = sa.func.min(sub.c.scheduled_at)
    return (
        sa.select(
            sub.c.occurrence_id,
            sa.func.min(sub.c.rule_id),
            sub.c.channel_id,
            when,
            sa.func.count(),
            count(Status.ACCEPTED, Status.DELIVERED),
            count(Status.DELIVERED),
            count(Status.FAILED),
            count(Status.UNKNOWN, Status.SENDING, Status.INTERRUPTED),
            count(Status.SKIPPED),
            count(Status.PLANNED, Status.DEFERRED),
            count(Status.UNRESOLVED),
        )
        .group_by(sub.c.occurrence_id, sub.c.channel_id)
        .order_by(when, sub.c.occurrence_id, sub.c.channel_id)
    )


def area_coverage_query(base: sa.Select[Any]) -> sa.Select[Any]:
    """Per occurrence, channel and target path: targeted, accepted, delivered, answered..."""
    sub = base.subquery()

    def count(*wanted: Status) -> sa.ColumnElement[Any]:
        hit = sub.c.status.in_([s.value for s in wanted])
        return sa.func.coalesce(sa.func.sum(sa.case((hit, 1), else_=0)), 0)

    answered = sa.and_(sub.c.status == Status.DELIVERED.value, sub.c.reason.like("answered%"))
    return sa.select(
        sub.c.occurrence_id,
        sa.func.min(sub.c.rule_id),
        sub.c.channel_id,
        sa.func.min(sub.c.scheduled_at),
        sub.c.target_path,
        sa.func.count(),
        count(Status.ACCEPTED, Status.DELIVERED),
        count(Status.DELIVERED),
        sa.func.coalesce(sa.func.sum(sa.case((answered, 1), else_=0)), 0),
        count(Status.FAILED),
        count(Status.SKIPPED),
    ).group_by(sub.c.occurrence_id, sub.c.channel_id, sub.c.target_path)


def area_coverage_row(r: Row[Any]) -> AreaCoverageRow:
    v: tuple[Any, ...] = tuple(r)
    return AreaCoverageRow(v[0], v[1], v[2], v[3], v[4] or "", *(int(n) for n in v[5:]))


def coverage_row(r: Row[Any]) -> CoverageRow:
    v: tuple[Any, ...] = tuple(r)
    return CoverageRow(v[0], v[1], v[2], v[3], *(int(n) for n in v[4:]))


def latest_occurrences(campaign: str) -> sa.Select[Any]:
    """Each occurrence of a campaign with its latest record (max id: one index probe)."""
    o, o2 = occurrences, occurrences.alias("o2")
    newest = (
        sa.select(sa.func.max(o2.c.id))
        .where(o2.c.campaign == o.c.campaign, o2.c.occurrence_id == o.c.occurrence_id)
        .scalar_subquery()
    )
    return sa.select(o).where(o.c.campaign == campaign, o.c.id == newest)


def occurrence_from_row(r: Row[Any]) -> OccurrenceState:
    return OccurrenceState(
        r.campaign, r.occurrence_id, r.rule_id, r.scheduled_at, r.status, r.reason, r.at
    )


def history_query(key: str) -> sa.Select[Any]:
    e, d = delivery_events, deliveries
    return (
        sa.select(e)
        .select_from(e.join(d, d.c.id == e.c.delivery_id))
        .where(d.c.key == key)
        .order_by(e.c.id)
    )
