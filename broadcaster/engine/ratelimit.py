"""Per-endpoint rate limits and concurrency caps, on an injected clock.

A limit "count per seconds" is enforced as a strict sliding window: any window of
`seconds` holds at most `count` sends (a provider counting per minute never sees
more). Callers reserve a slot and sleep until it; a provider's Retry-After blocks
the endpoint for every caller.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from broadcaster.channel import RateLimit
from broadcaster.engine.clock import Clock

__all__ = ["EndpointLimiter", "Limiters"]


class EndpointLimiter:
    """Sliding-window slots for one endpoint."""

    def __init__(self, limit: RateLimit | None, clock: Clock):
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._slots: deque[dt.datetime] = deque()
        self._blocked_until: dt.datetime | None = None

    def reserve(self) -> float:
        """Take the next free slot; return the seconds to wait for it."""
        with self._lock:
            now = self.clock.now()
            slot = now
            if self._blocked_until is not None and self._blocked_until > slot:
                slot = self._blocked_until
            if self.limit is not None:
                per = dt.timedelta(seconds=self.limit.per_seconds)
                if len(self._slots) >= self.limit.count:
                    slot = max(slot, self._slots[-self.limit.count] + per)
                if self._slots and slot < self._slots[-1]:
                    slot = self._slots[-1]
                self._slots.append(slot)
                while len(self._slots) > self.limit.count:
                    self._slots.popleft()
            return max(0.0, (slot - now).total_seconds())

    def block(self, seconds: float) -> None:
        """Nobody sends to this endpoint for `seconds` (a 429 with Retry-After, a breaker)."""
        with self._lock:
            until = self.clock.now() + dt.timedelta(seconds=seconds)
            if self._blocked_until is None or until > self._blocked_until:
                self._blocked_until = until

    def wait(self) -> None:
        self.clock.sleep(self.reserve())


class Limiters:
    """All endpoint limiters and concurrency caps of one engine, shared by every rule."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._lock = threading.Lock()
        self._endpoints: dict[tuple[str, str], EndpointLimiter] = {}
        self._channel_caps: dict[str, threading.BoundedSemaphore] = {}
        self._endpoint_caps: dict[tuple[str, str], threading.BoundedSemaphore] = {}

    def endpoint(self, channel_id: str, endpoint: str, limit: RateLimit | None) -> EndpointLimiter:
        key = (channel_id, endpoint)
        with self._lock:
            found = self._endpoints.get(key)
            if found is None or found.limit != limit:
                found = self._endpoints[key] = EndpointLimiter(limit, self.clock)
            return found

    @contextmanager
    def slot(
        self, channel_id: str, concurrency: int, endpoint: str, endpoint_concurrency: int | None
    ) -> Iterator[None]:
        """Hold one of the channel's (and the endpoint's) concurrent-send slots."""
        with self._lock:
            channel_cap = self._channel_caps.setdefault(
                channel_id, threading.BoundedSemaphore(concurrency)
            )
            endpoint_cap = None
            if endpoint_concurrency:
                endpoint_cap = self._endpoint_caps.setdefault(
                    (channel_id, endpoint), threading.BoundedSemaphore(endpoint_concurrency)
                )
        with channel_cap:
            if endpoint_cap is None:
                yield
            else:
                with endpoint_cap:
                    yield
