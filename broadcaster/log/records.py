"""Values written to and read from the delivery log."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from broadcaster.vocab import ErrorClass, Status

__all__ = [
    "AreaCoverageRow",
    "Claim",
    "CoverageRow",
    "DeliveryRecord",
    "DeliveryState",
    "Event",
    "LeaseState",
    "OccurrenceState",
    "canonical",
    "roll_up",
]


def canonical(record: Any) -> str:
    """Canonical JSON of a record (sorted keys, fixed separators, UTF-8 kept): what a hash chain signs."""

    def default(value: Any) -> Any:
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
        if isinstance(value, Status | ErrorClass):
            return value.value
        raise TypeError(type(value))

    return json.dumps(
        asdict(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default
    )


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as planned: written once, before anything is sent."""

    key: str  # idempotency key, unique
    campaign: str
    occurrence_id: str
    rule_id: str
    channel_id: str
    endpoint: str  # rate-limit key, hashed (it may hold a bot key)
    target_id: str
    recipient_display: str  # masked: 138****5678
    recipient_hash: str  # keyed hash of the address: find a person without storing the number
    kind: str
    template: str
    template_sha: str
    text_sha256: str
    text: str  # stored once per distinct sha256 in the messages table
    scheduled_at: dt.datetime  # aware
    target_path: str = ""  # the target's place in the hierarchy when planned: 示范县/东风镇/李家村
    payload: str | None = field(default=None, repr=False)  # canonical JSON of params/parts/files
    payload_sha256: str | None = None


@dataclass(frozen=True)
class Event:
    """One status change of one delivery.

    `next_check` and `keep_lease` are not stored in the event: they steer the
    delivery's current state (when the engine looks at it again; whether the writing
    process keeps its claim), which the writer updates in the same transaction.
    """

    key: str
    status: Status
    at: dt.datetime  # aware
    error_class: ErrorClass | None = None
    reason: str = ""
    provider_id: str | None = None
    attempt: int = 0
    step: int = 0  # split messages: first part sent (sending), parts accepted (outcomes)
    detail: str = ""  # the provider's answer, scrubbed, for audit
    actor: str = ""  # who decided it, when a person did (operator:NAME)
    next_check: dt.datetime | None = field(default=None, compare=False)
    keep_lease: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class DeliveryState:
    """A delivery with its current state."""

    key: str
    campaign: str
    occurrence_id: str
    rule_id: str
    channel_id: str
    endpoint: str
    target_id: str
    recipient_display: str
    recipient_hash: str
    kind: str
    template: str
    template_sha: str
    text_sha256: str
    scheduled_at: dt.datetime
    target_path: str
    payload_sha256: str | None
    status: Status
    status_at: dt.datetime
    error_class: ErrorClass | None
    reason: str
    provider_id: str | None
    attempt: int  # attempts so far (sending events)
    resends: int  # sends after an unknown outcome
    parts_done: int
    next_check: dt.datetime | None
    lease_owner: str | None
    lease_until: dt.datetime | None


@dataclass(frozen=True)
class Claim:
    """The result of claiming deliveries: what this process now holds, and the rest."""

    held: dict[str, DeliveryState]  # key -> state, claimed by the caller
    others: dict[str, DeliveryState]  # key -> state, held by another process or finished


@dataclass(frozen=True)
class OccurrenceState:
    """An occurrence's latest record: fired, done, missed, skipped or failed."""

    campaign: str
    occurrence_id: str
    rule_id: str
    scheduled_at: dt.datetime
    status: str  # fired | done | missed | skipped | failed
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class LeaseState:
    """Who holds a leadership lease, and whether the caller got it."""

    name: str
    owner: str
    until: dt.datetime
    info: str
    acquired: bool


@dataclass(frozen=True)
class CoverageRow:
    """Per occurrence and channel: how many were targeted, and how far they got."""

    occurrence_id: str
    rule_id: str
    channel_id: str
    scheduled_at: dt.datetime
    targeted: int
    accepted: int  # accepted or delivered
    delivered: int
    failed: int
    unknown: int  # unknown, sending, interrupted
    skipped: int
    waiting: int = 0  # planned or deferred: not sent yet
    unresolved: int = 0  # an operator must decide


@dataclass(frozen=True)
class AreaCoverageRow:
    """Per send, channel and area of the hierarchy (县/镇/村/组): how far its people got.

    `answered`: delivered calls the provider reported answered (voice)."""

    occurrence_id: str
    rule_id: str
    channel_id: str
    scheduled_at: dt.datetime
    area: str  # the target's path, with the person's own area below it, "/"-joined
    targeted: int
    accepted: int  # accepted or delivered
    delivered: int
    answered: int
    failed: int
    skipped: int


def roll_up(rows: Iterable[AreaCoverageRow], depth: int | None) -> list[AreaCoverageRow]:
    """Rows summed into areas `depth` levels deep (None: as logged), in send and area order.

    An area is counted in itself and in every area above it, so each level adds up."""
    sums: dict[tuple[str, str, str], list[Any]] = {}
    for r in rows:
        parts = [p for p in r.area.split("/") if p]
        levels = range(1, len(parts) + 1) if depth is None else [min(depth, len(parts))]
        for level in dict.fromkeys(levels):
            area = "/".join(parts[:level])
            key = (r.occurrence_id, r.channel_id, area)
            found = sums.get(key)
            counts = [r.targeted, r.accepted, r.delivered, r.answered, r.failed, r.skipped]
            if found is None:
                sums[key] = [r.rule_id, r.scheduled_at, counts]
            else:
                found[1] = min(found[1], r.scheduled_at)
                found[2] = [a + b for a, b in zip(found[2], counts, strict=True)]
    out = [
        AreaCoverageRow(occ, rule, cid, at, area, *counts)
        for (occ, cid, area), (rule, at, counts) in sums.items()
    ]
    out.sort(key=lambda r: (r.scheduled_at, r.occurrence_id, r.channel_id, r.area))
    return out
