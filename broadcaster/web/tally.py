"""Deliveries by channel and current status for /metrics, kept up to date from the events.

Counted once from the current-state table, then moved along with the events written
since: each delivery an event touched leaves the status of its last earlier event and
takes the status of its newest one. The cost of a scrape is the number of changes, not
the size of the log. Counted afresh every `RECOUNT` seconds, or after a large gap (and
so also catches up with any PostgreSQL commit that arrived out of event-id order).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broadcaster.log.models import deliveries, delivery_events, delivery_state

__all__ = ["StatusTally"]

RECOUNT = 300.0  # seconds between full counts
MAX_GAP = 200_000  # events since the last look beyond which it is counted afresh
CHUNK = 900


class StatusTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._watermark: int | None = None
        self._counted_at = 0.0

    def counts(self, conn: Connection) -> dict[tuple[str, str], int]:
        """(channel, status) -> deliveries, as of the snapshot `conn` reads."""
        with self._lock:
            e, s = delivery_events, delivery_state
            top = int(conn.execute(sa.select(sa.func.max(e.c.id))).scalar() or 0)
            since = self._watermark
            if (
                since is None
                or top < since
                or top - since > MAX_GAP
                or time.monotonic() - self._counted_at > RECOUNT
            ):
                query = sa.select(s.c.channel_id, s.c.status, sa.func.count()).group_by(
                    s.c.channel_id, s.c.status
                )
                self._counts = Counter({(c, st): int(n) for c, st, n in conn.execute(query)})
                self._watermark, self._counted_at = top, time.monotonic()
            elif top > since:
                self._move(conn, since, top)
                self._watermark = top
            return {k: v for k, v in self._counts.items() if v}

    def _move(self, conn: Connection, since: int, top: int) -> None:
        e, d = delivery_events, deliveries
        newest: dict[int, tuple[str, str]] = {}  # delivery id -> (channel, status now)
        query = (
            sa.select(e.c.delivery_id, d.c.channel_id, e.c.status)
            .select_from(e.join(d, d.c.id == e.c.delivery_id))
            .where(e.c.id > since, e.c.id <= top)
            .order_by(e.c.id)
        )
        for delivery_id, channel, status in conn.execute(query):
            newest[delivery_id] = (channel, status)
        ids = list(newest)
        before: dict[int, str] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            last = (
                sa.select(sa.func.max(e.c.id))
                .where(e.c.delivery_id.in_(chunk), e.c.id <= since)
                .group_by(e.c.delivery_id)
            )
            rows = conn.execute(
                sa.select(e.c.delivery_id, e.c.status).where(e.c.id.in_(last.scalar_subquery()))
            )
            before.update((i, st) for i, st in rows)
        for delivery_id, (channel, status) in newest.items():
            old = before.get(delivery_id)
            if old is not None:
                self._counts[(channel, old)] -= 1
            self._counts[(channel, status)] += 1
