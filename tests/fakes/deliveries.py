"""Test deliveries: deterministic keys, a phone number as address, shown masked."""

from __future__ import annotations

import datetime as dt
import hashlib

from broadcaster.channel import Delivery, Message, MessageKind, Recipient
from tests.conftest import NOW

__all__ = ["delivery"]


def delivery(
    n: int = 1,
    *,
    channel: str = "hook",
    kind: MessageKind = MessageKind.SMS,
    text: str = "【反诈提醒】凡是刷单返利都是诈骗，请拨打96110咨询。",
    address: str | None = None,
    display: str | None = None,
) -> Delivery:
    """The n-th test delivery: a deterministic key, a phone number shown masked."""
    address = address or f"138{n:08d}"
    display = display or f"{address[:3]}****{address[-4:]}"
    occurrence = "twice-weekly@2026-03-03T10:00"
    key = hashlib.sha256(f"mini|{occurrence}|{channel}|{address}".encode()).hexdigest()
    return Delivery(
        key=key,
        occurrence_id=occurrence,
        rule_id="twice-weekly",
        channel_id=channel,
        recipient=Recipient("town", address, display),
        message=Message(kind, text, f"{kind.value}/alpha.j2", "0" * 64, "routine", "alpha"),
        scheduled_at=NOW + dt.timedelta(days=1, hours=1),
    )
