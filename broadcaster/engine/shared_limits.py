"""Rate limits shared by every process on one PostgreSQL log: the limiter of `broadcaster worker`.

Eight workers posting to one bot must stay within the bot's 20 a minute together, so
the sliding windows of `LocalRateLimiter` live in the database: each reservation takes
the endpoint's advisory lock for one short transaction, computes the next free slot
from the slots already given out (under every limit any channel named for the
endpoint), and records it. Slots are also paced evenly, one every `seconds / count`:
the time from taking a slot to reaching the provider differs between processes, and a
full window taken at once would let a slow first post and a fast next window meet in
the provider's count. A provider's block is a row every process reads. Slots
older than the longest window are deleted as new ones are taken.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from broadcaster.engine.clock import Clock
from broadcaster.engine.ratelimit import EndpointState
from broadcaster.log.engines import parse_url, pg_engine
from broadcaster.log.models import rate_blocks, rate_limits, rate_slots
from broadcaster.vocab import RateLimit

__all__ = ["SharedRateLimiter"]


_PEEK = (
    "SELECT (SELECT until FROM rate_blocks WHERE endpoint = %(e)s),"
    " EXISTS (SELECT 1 FROM rate_limits WHERE endpoint = %(e)s)"
)


def _lock_id(endpoint: str) -> int:
    """A signed 64-bit advisory-lock id for an endpoint."""
    return int.from_bytes(hashlib.sha256(endpoint.encode()).digest()[:8], "big", signed=True)


class SharedRateLimiter:
    """Sliding-window limits kept in the PostgreSQL log, shared by every process using it."""

    def __init__(self, url: str, clock: Clock, *, busy_timeout: float = 10.0):
        parsed = parse_url(url)
        if parsed.get_backend_name() != "postgresql":
            raise ValueError("shared rate limits need the PostgreSQL log")
        self.clock = clock
        self._engine = pg_engine(parsed, busy_timeout, pool_size=1)  # short transactions
        self._known: set[tuple[str, RateLimit]] = set()
        # the unlocked read of a send without a limit, on a connection kept open: it runs
        # for nearly every send, where a pool checkout and its ping cost more than the query
        self._peek_engine = pg_engine(parsed, busy_timeout, pool_size=1, isolation="AUTOCOMMIT")
        self._peek_conn: sa.Connection | None = None
        self._peek_lock = threading.Lock()

    def _peek(self, endpoint: str) -> tuple[dt.datetime | None, bool]:
        """The endpoint's block (if any) and whether any channel named a limit for it."""
        with self._peek_lock:
            try:
                return self._peek_once(endpoint)
            except sa.exc.DBAPIError:  # a connection cut: once more on a new one
                return self._peek_once(endpoint)

    def _peek_once(self, endpoint: str) -> tuple[dt.datetime | None, bool]:
        try:
            if self._peek_conn is None:
                self._peek_conn = self._peek_engine.connect()
            row = self._peek_conn.exec_driver_sql(_PEEK, {"e": endpoint}).one()
        except sa.exc.DBAPIError:
            self._drop_peek()
            raise
        return row[0], bool(row[1])

    def _drop_peek(self) -> None:
        if self._peek_conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._peek_conn.invalidate()
                self._peek_conn.close()
            self._peek_conn = None

    def reserve(self, endpoint: str, limit: RateLimit | None) -> float:
        """Take the next free slot of `endpoint` under every limit named for it; return the
        seconds to wait for it."""
        if limit is None:  # most sends: one read, no lock, unless another channel set a limit
            blocked, limited = self._peek(endpoint)
            if not limited:
                now = self.clock.now()
                return max(0.0, (blocked - now).total_seconds()) if blocked is not None else 0.0
        with self._engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_id(endpoint))))
            if limit is not None and (endpoint, limit) not in self._known:
                conn.execute(
                    pg_insert(rate_limits)
                    .values(endpoint=endpoint, count=limit.count, per_seconds=limit.per_seconds)
                    .on_conflict_do_nothing()
                )
                self._known.add((endpoint, limit))
            limits = conn.execute(
                sa.select(rate_limits.c.count, rate_limits.c.per_seconds).where(
                    rate_limits.c.endpoint == endpoint
                )
            ).all()
            now = self.clock.now()
            slot = now
            blocked = conn.execute(
                sa.select(rate_blocks.c.until).where(rate_blocks.c.endpoint == endpoint)
            ).scalar()
            if blocked is not None and blocked > slot:
                slot = blocked
            if limits:
                deepest = max(count for count, _ in limits)
                taken = list(
                    conn.execute(
                        sa.select(rate_slots.c.at)
                        .where(rate_slots.c.endpoint == endpoint)
                        .order_by(rate_slots.c.at.desc())
                        .limit(deepest)
                    ).scalars()
                )  # newest first
                for count, per in limits:
                    if len(taken) >= count:
                        slot = max(slot, taken[count - 1] + dt.timedelta(seconds=per))
                if taken:  # evenly paced after the newest slot
                    spacing = max(per / count for count, per in limits)
                    slot = max(slot, taken[0] + dt.timedelta(seconds=spacing))
                conn.execute(sa.insert(rate_slots).values(endpoint=endpoint, at=slot))
                longest = max(per for _, per in limits)
                conn.execute(
                    sa.delete(rate_slots).where(
                        rate_slots.c.endpoint == endpoint,
                        rate_slots.c.at < now - dt.timedelta(seconds=longest),
                    )
                )
            return max(0.0, (slot - now).total_seconds())

    def block(self, endpoint: str, seconds: float, reason: str = "") -> None:
        """Nobody sends to `endpoint` for `seconds`, in any process."""
        until = self.clock.now() + dt.timedelta(seconds=seconds)
        stmt = pg_insert(rate_blocks).values(endpoint=endpoint, until=until, reason=reason)
        stmt = stmt.on_conflict_do_update(
            index_elements=[rate_blocks.c.endpoint],
            set_={"until": until, "reason": reason},
            where=rate_blocks.c.until < until,
        )
        with self._engine.begin() as conn:
            conn.execute(stmt)

    def states(self) -> list[EndpointState]:
        now = self.clock.now()
        with self._engine.connect() as conn:
            limits: dict[str, list[RateLimit]] = {}
            for endpoint, count, per in conn.execute(sa.select(rate_limits)):
                limits.setdefault(endpoint, []).append(RateLimit(count, per))
            blocks = {
                e: (until, reason)
                for e, until, reason in conn.execute(sa.select(rate_blocks))
                if until > now
            }
            out = []
            for endpoint in sorted(set(limits) | set(blocks)):
                known = tuple(limits.get(endpoint, ()))
                longest = max((lim.per_seconds for lim in known), default=0.0)
                recent = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(rate_slots)
                    .where(
                        rate_slots.c.endpoint == endpoint,
                        rate_slots.c.at > now - dt.timedelta(seconds=longest),
                        rate_slots.c.at <= now,
                    )
                ).scalar_one()
                until, reason = blocks.get(endpoint, (None, ""))
                out.append(EndpointState(endpoint, known, recent, until, reason))
            return out

    def close(self) -> None:
        with self._peek_lock:
            self._drop_peek()
        self._peek_engine.dispose()
        self._engine.dispose()
