"""Shared pieces of the console pages: dates from the query, target lists, status tallies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from broadcaster.log.records import CoverageRow
from broadcaster.model.campaign import Campaign
from broadcaster.vocab import Status
from broadcaster.web.errors import WebError

__all__ = ["Tally", "day_arg", "names_of", "share", "tally"]


def day_arg(text: str, default: dt.date, name: str = "date") -> dt.date:
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise WebError(f"日期格式错误 {name}: expected YYYY-MM-DD, got {text[:40]!r}") from None


def names_of(campaign: Campaign, target_ids: Sequence[str], shown: int = 6) -> str:
    names = [campaign.targets[t].name if t in campaign.targets else t for t in target_ids]
    head = "、".join(names[:shown])
    if len(names) > shown:
        head += f" 等 {len(names)} 个 ({len(names) - shown} more)"
    return head


def share(part: int, whole: int) -> str:
    """A share rounded down (5,984 of 6,000 is 99.7%, never 100%)."""
    if not whole:
        return "—"
    tenths = part * 1000 // whole
    return f"{tenths // 10}.{tenths % 10}%" if tenths % 10 else f"{tenths // 10}%"


@dataclass(frozen=True)
class Tally:
    """How far the deliveries of one send got, as badges (css class, label, count)."""

    badges: list[tuple[str, str, int]]
    targeted: int


def tally(c: CoverageRow) -> Tally:
    accepted_only = c.accepted - c.delivered
    parts = [
        ("delivered", Status.DELIVERED.label, c.delivered),
        ("accepted", Status.ACCEPTED.label, accepted_only),
        ("planned", "待发送 waiting to send", c.waiting),
        ("sending", "发送中/未知 sending or unknown", c.unknown),
        ("failed", Status.FAILED.label, c.failed),
        ("unresolved", "待人工 waiting for a person", c.unresolved),
        ("skipped", Status.SKIPPED.label, c.skipped),
    ]
    return Tally([p for p in parts if p[2]], c.targeted)
