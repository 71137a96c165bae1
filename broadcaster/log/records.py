"""Values written to and read from the delivery log."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from broadcaster.vocab import ErrorClass, Status

__all__ = [
    "Claim",
    "CoverageRow",
    "DeliveryRecord",
    "DeliveryState",
    "Event",
    "LeaseState",
    "OccurrenceState",
    "canonical",
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
