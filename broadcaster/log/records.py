"""Values written to and read from the delivery log."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from broadcaster.channel import ErrorClass, Status

__all__ = [
    "CoverageRow",
    "DeliveryRecord",
    "DeliveryState",
    "Event",
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
    endpoint: str  # rate-limit key (masked if it holds a secret)
    target_id: str
    recipient_display: str  # masked: 138****5678
    recipient_hash: str  # keyed hash of the address: find a person without storing the number
    kind: str
    template: str
    template_sha: str
    text_sha256: str
    text: str  # stored once per distinct sha256 in the messages table
    scheduled_at: dt.datetime  # aware


@dataclass(frozen=True)
class Event:
    """One status change of one delivery."""

    key: str
    status: Status
    at: dt.datetime  # aware
    error_class: ErrorClass | None = None
    reason: str = ""
    provider_id: str | None = None
    attempt: int = 0


@dataclass(frozen=True)
class DeliveryState:
    """A delivery with its latest event."""

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
    status: Status
    status_at: dt.datetime
    error_class: ErrorClass | None
    reason: str
    provider_id: str | None
    attempt: int


@dataclass(frozen=True)
class OccurrenceState:
    """An occurrence's latest record: fired, missed, skipped or failed."""

    occurrence_id: str
    rule_id: str
    scheduled_at: dt.datetime
    status: str  # fired | done | missed | skipped | failed
    reason: str
    at: dt.datetime


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
    unknown: int  # unknown, sending, interrupted, planned
    skipped: int
