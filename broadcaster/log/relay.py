"""Relay hops in the delivery log: which delivery each hop depends on, when it is due,
whether it was done in time.

A hop (a push relayed one level down: township → village, village → grid group) is a
delivery of its own; `relay_hops` (migration 0007) adds its parent delivery, its level
and its deadline. A hop is done when its delivery is confirmed: delivered (a hand-off
confirmed through its link, or by an operator), or accepted on a channel whose outcome
is final when accepted (a group bot posted it). Late: not done by its deadline, or
done after it. Coverage counts hops apart from direct deliveries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broadcaster.log.models import deliveries, delivery_state, relay_hops
from broadcaster.vocab import ErrorClass, Status

__all__ = [
    "HopState",
    "RelayHop",
    "RelayTally",
    "handoff_label",
    "hop_states",
    "relay_tally",
]

# the outcome names a hand-off's reason starts with (channels/handoff.py, `confirm`)
HANDOFF_LABELS = {
    "handoff_sent": "待确认转发 handoff sent",
    "forwarded_confirmed": "已确认转发 forwarded (confirmed by a person)",
    "expired": "已过期未确认 expired",
}


def handoff_label(status: Status, reason: str) -> str:
    """A status as shown: a hand-off's own outcome words (a confirmation is never shown as
    delivered to the group's members), else the status's label."""
    word = reason.split(" ", 1)[0]
    if word in HANDOFF_LABELS and status in (Status.ACCEPTED, Status.DELIVERED, Status.FAILED):
        return HANDOFF_LABELS[word]
    return status.label


@dataclass(frozen=True)
class RelayHop:
    """Where a hop stands in the hierarchy; written once, with its delivery."""

    key: str
    campaign: str
    occurrence_id: str
    parent_key: str
    level: int  # 1: the first level below the push; 0: a hand-off sent directly
    level_tag: str  # the tag naming the level: village, grid, class ("" at level 0)
    due_at: dt.datetime  # aware
    person: str = ""  # who confirms it (a hand-off's grid worker or teacher); "": nobody
    confirm: bool = True  # done when confirmed (delivered); False: when accepted (a bot)


@dataclass(frozen=True)
class HopState:
    """A hop with its delivery's current state, judged at `now`."""

    hop: RelayHop
    rule_id: str
    channel_id: str
    target_id: str
    target_path: str
    recipient_display: str
    status: Status
    status_at: dt.datetime
    error_class: ErrorClass | None
    reason: str
    done: bool
    late: bool

    @property
    def key(self) -> str:
        return self.hop.key

    @property
    def done_at(self) -> dt.datetime | None:
        return self.status_at if self.done else None

    @property
    def waiting(self) -> bool:
        """Not done and not finished otherwise (failed, expired): someone still has to act."""
        return not self.done and self.status not in (Status.FAILED, Status.SKIPPED)

    @property
    def outcome(self) -> str:
        """What the hop came to, in words: 已确认 done, 逾期 late, 待确认 waiting…"""
        if self.done:
            return "逾期完成 done late" if self.late else "按时完成 done in time"
        if self.error_class is ErrorClass.EXPIRED:
            return "已过期未确认 expired"
        if self.status in (Status.FAILED, Status.SKIPPED):
            return "未完成 not done: " + self.status.label
        return "逾期未确认 late, waiting" if self.late else "待确认 waiting"


def _utc_aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def hop_states(
    conn: Connection,
    campaign: str,
    now: dt.datetime,
    *,
    late_only: bool = False,
    relayed_only: bool = False,
    since: dt.datetime | None = None,
    keys: Sequence[str] | None = None,
) -> list[HopState]:
    """Every hop and hand-off of a campaign (due after `since`), deadline first;
    `late_only`: the late ones; `relayed_only`: hops of a relay (level 1 and below)."""
    h, d, s = relay_hops, deliveries, delivery_state
    query = (
        sa.select(
            h,
            d.c.rule_id,
            d.c.channel_id,
            d.c.target_id,
            d.c.target_path,
            d.c.recipient_display,
            s.c.status,
            s.c.since,
            s.c.error_class,
            s.c.reason,
        )
        .join(d, d.c.key == h.c.key)
        .join(s, s.c.delivery_id == d.c.id)
        .where(h.c.campaign == campaign)
        .order_by(h.c.due_at, h.c.level, d.c.target_id)
    )
    if since is not None:
        query = query.where(h.c.due_at >= since)
    if keys is not None:
        query = query.where(h.c.key.in_(list(keys)))
    if late_only:
        query = query.where(h.c.due_at < now)
    if relayed_only:
        query = query.where(h.c.level > 0)
    out: list[HopState] = []
    for row in conn.execute(query):
        m = row._mapping
        status = Status(m["status"])
        at = _utc_aware(m["since"])
        due = _utc_aware(m["due_at"])
        done = status is Status.DELIVERED or (status is Status.ACCEPTED and not m["confirm"])
        late = (at > due) if done else (now > due)
        state = HopState(
            RelayHop(
                m["key"],
                m["campaign"],
                m["occurrence_id"],
                m["parent_key"],
                m["level"],
                m["level_tag"],
                due,
                m["person"],
                bool(m["confirm"]),
            ),
            m["rule_id"],
            m["channel_id"],
            m["target_id"],
            m["target_path"],
            m["recipient_display"],
            status,
            at,
            ErrorClass(m["error_class"]) if m["error_class"] else None,
            m["reason"],
            done,
            late,
        )
        if late_only and not late:
            continue
        out.append(state)
    return out


@dataclass
class RelayTally:
    """Hops counted apart from direct deliveries: in time, late, waiting, not done."""

    total: int = 0
    in_time: int = 0
    done_late: int = 0
    waiting: int = 0  # not done, deadline not passed
    overdue: int = 0  # not done, deadline passed, still open
    not_done: int = 0  # failed, expired, skipped

    @property
    def done(self) -> int:
        return self.in_time + self.done_late

    @property
    def late(self) -> int:
        return self.done_late + self.overdue


def relay_tally(states: Sequence[HopState]) -> dict[int, RelayTally]:
    """Per level (0: hand-offs sent directly) and in all (-1)."""
    out: dict[int, RelayTally] = {-1: RelayTally()}
    for st in states:
        for level in (-1, st.hop.level):
            t = out.setdefault(level, RelayTally())
            t.total += 1
            if st.done:
                if st.late:
                    t.done_late += 1
                else:
                    t.in_time += 1
            elif st.waiting:
                if st.late:
                    t.overdue += 1
                else:
                    t.waiting += 1
            else:
                t.not_done += 1
    return out
