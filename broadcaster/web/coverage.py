"""Figures per send, remembered until the send changes.

Counting the deliveries of a send by status reads every one of them: 100,000 rows for
an SMS blast. A send's figures change only when one of its deliveries gets an event, so
they are kept with the log position (the highest event id) they were read at, and
dropped when a later event touches that send: each request first reads the events
written since the previous one (an index range, as many rows as changed) to learn which
sends they touched. On SQLite one writer commits event ids in order, so nothing is
missed. On PostgreSQL two writers may commit ids out of order, so an entry there also
expires after `PG_TTL` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from broadcaster.log.models import deliveries, delivery_events
from broadcaster.log.records import CoverageRow
from broadcaster.web import queries

__all__ = ["SendCache"]

T = TypeVar("T")
PG_TTL = 120.0  # seconds an entry lives at most on PostgreSQL
MAX_GAP = 500_000  # events since the last look beyond which everything is read afresh
MAX_ENTRIES = 20_000


class SendCache:
    """Per-send figures (coverage by channel and target), valid until the send changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watermark: int | None = None  # events up to here were looked at
        self._touched: dict[str, int] = {}  # occurrence id -> highest watermark that saw it change
        self._entries: dict[tuple[str, str, str], tuple[int, float, Any]] = {}

    def per_send(
        self,
        conn: Connection,
        kind: str,
        campaign: str,
        occurrence_ids: Sequence[str],
        compute: Callable[[Connection, list[str]], dict[str, T]],
    ) -> dict[str, T]:
        """`compute(conn, ids)` for the sends not remembered (or changed since), by send."""
        top = self._refresh(conn)
        now = time.monotonic()
        ttl = PG_TTL if conn.dialect.name == "postgresql" else float("inf")
        out: dict[str, T] = {}
        missing: list[str] = []
        with self._lock:
            for occ in dict.fromkeys(occurrence_ids):
                found = self._entries.get((kind, campaign, occ))
                if found is not None and found[1] > now and self._touched.get(occ, -1) <= found[0]:
                    out[occ] = found[2]
                else:
                    missing.append(occ)
        if missing:
            fresh = compute(conn, missing)
            with self._lock:
                if len(self._entries) > MAX_ENTRIES:
                    self._entries.clear()
                for occ in missing:
                    value = fresh[occ]
                    self._entries[(kind, campaign, occ)] = (top, now + ttl, value)
                    out[occ] = value
        return out

    def figures(
        self, conn: Connection, campaign: str, occurrence_ids: Sequence[str]
    ) -> dict[str, list[queries.TargetFigures]]:
        """Each send's figures per channel and target (see `queries.send_figures`)."""
        return self.per_send(conn, "figures", campaign, occurrence_ids, queries.send_figures)

    def coverage(
        self,
        conn: Connection,
        campaign: str,
        occurrence_ids: Sequence[str],
        *,
        channel: str | None = None,
        target: str | None = None,
    ) -> list[CoverageRow]:
        """Like `queries.coverage_for`: newest send first, each channel a row."""
        found = self.figures(conn, campaign, occurrence_ids)
        rows = [
            row
            for occ, figures in found.items()
            for row in queries.coverage_of(occ, figures, channel=channel, target=target)
        ]
        rows.sort(key=lambda c: (c.scheduled_at, c.occurrence_id, c.channel_id), reverse=True)
        return rows

    def _refresh(self, conn: Connection) -> int:
        """Learn which sends changed since the last look; the log position read at."""
        e, d = delivery_events, deliveries
        top = int(conn.execute(sa.select(sa.func.max(e.c.id))).scalar() or 0)
        with self._lock:
            since = self._watermark
        if since is None or top - since > MAX_GAP or top < since:
            with self._lock:
                self._entries.clear()
                self._touched.clear()
                self._watermark = top
            return top
        if top == since:
            return top
        changed = (
            sa.select(d.c.occurrence_id)
            .distinct()
            .select_from(e.join(d, d.c.id == e.c.delivery_id))
            .where(e.c.id > since, e.c.id <= top)
        )
        touched = [occ for (occ,) in conn.execute(changed)]
        with self._lock:
            for occ in touched:
                self._touched[occ] = max(self._touched.get(occ, -1), top)
            self._watermark = max(self._watermark or 0, top)
        return top
