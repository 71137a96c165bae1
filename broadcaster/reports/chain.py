"""The log's chain head and record count, printed on every report and lookup record: the
same pair `broadcaster verify-log` prints and `broadcaster log anchor` writes down, so an
auditor can check a printed report against the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from broadcaster.log import DeliveryLog

__all__ = ["LogSeal", "seal"]


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


def seal(log: DeliveryLog) -> LogSeal:
    """The log's chain head and the records its chain covers."""
    head, records = log.chain_head()
    return LogSeal(head, records)
