"""The log's chain head and record count, printed on every report and lookup record.

The hash chain itself is the audit work's (`DeliveryLog.chain_head()`); until it is
there, the head is None and shown as "—".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from broadcaster.log import DeliveryLog
from broadcaster.log.models import delivery_events

__all__ = ["LogSeal", "chain_head", "seal"]


@dataclass(frozen=True)
class LogSeal:
    """What a printed report is checked against later: the chain head and how many records."""

    head: str | None
    records: int

    @property
    def head_shown(self) -> str:
        return self.head or "—"

    def line(self) -> str:
        return f"链头 chain head: {self.head_shown} · 记录数 records: {self.records:,}"


def chain_head(log: DeliveryLog) -> str | None:
    """The log's chain head when the log keeps a hash chain, else None."""
    method: Any = getattr(log, "chain_head", None)
    if method is None:
        return None
    head = method() if callable(method) else method
    if head is None:
        return None
    return str(getattr(head, "hash", head))


def seal(log: DeliveryLog) -> LogSeal:
    """The chain head and the number of delivery-log events (records)."""
    count = log.read(
        lambda conn: int(
            conn.execute(sa.select(sa.func.count()).select_from(delivery_events)).scalar() or 0
        )
    )
    return LogSeal(chain_head(log), count)
