"""Rate limits per endpoint and concurrency caps, on an injected clock.

A limit belongs to the endpoint (one bot URL, one gateway account), not to the channel
instance or the rule: every channel posting to one WeCom bot shares the bot's budget.
A limit "count per seconds" is a strict sliding window: any window of `seconds` holds
at most `count` sends, and when channels name different limits for one endpoint each
of them holds. Callers reserve a slot and sleep until it; a provider's block (a 429
with Retry-After, DingTalk's 10 minutes) stops every caller of that endpoint.

`RateLimiter` is the interface: `LocalRateLimiter` keeps the windows in this process;
a shared implementation (PostgreSQL, Redis) lets several processes share one budget.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from broadcaster.engine.clock import Clock
from broadcaster.vocab import RateLimit

__all__ = ["ConcurrencySlots", "EndpointState", "LocalRateLimiter", "RateLimiter"]


@dataclass(frozen=True)
class EndpointState:
    """What a limiter knows of one endpoint, for people (the console, `/metrics`)."""

    endpoint: str
    limits: tuple[RateLimit, ...]
    recent: int  # sends in the longest window, up to now
    blocked_until: dt.datetime | None
    blocked_reason: str


class RateLimiter(Protocol):
    """Per-endpoint budgets shared by every channel and rule that posts to an endpoint."""

    def reserve(self, endpoint: str, limit: RateLimit | None) -> float: ...  # seconds to wait

    def block(self, endpoint: str, seconds: float, reason: str) -> None: ...

    def states(self) -> list[EndpointState]: ...


class _Windows:
    """Sliding windows of one endpoint: the slots taken, per distinct limit."""

    def __init__(self) -> None:
        self.slots: dict[RateLimit, deque[dt.datetime]] = {}
        self.blocked_until: dt.datetime | None = None
        self.reason = ""


class LocalRateLimiter:
    """Sliding-window limits kept in this process."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._lock = threading.Lock()
        self._endpoints: dict[str, _Windows] = {}

    def reserve(self, endpoint: str, limit: RateLimit | None) -> float:
        """Take the next free slot of `endpoint` (under every limit it has been given);
        return the seconds to wait for it."""
        with self._lock:
            w = self._endpoints.setdefault(endpoint, _Windows())
            if limit is not None:
                w.slots.setdefault(limit, deque())
            now = self.clock.now()
            slot = now
            if w.blocked_until is not None and w.blocked_until > slot:
                slot = w.blocked_until
            for lim, taken in w.slots.items():
                per = dt.timedelta(seconds=lim.per_seconds)
                if len(taken) >= lim.count:
                    slot = max(slot, taken[-lim.count] + per)
                if taken and slot < taken[-1]:
                    slot = taken[-1]
            for lim, taken in w.slots.items():
                taken.append(slot)
                while len(taken) > lim.count:
                    taken.popleft()
            return max(0.0, (slot - now).total_seconds())

    def block(self, endpoint: str, seconds: float, reason: str = "") -> None:
        """Nobody sends to `endpoint` for `seconds` (a 429 with Retry-After, a provider block)."""
        with self._lock:
            w = self._endpoints.setdefault(endpoint, _Windows())
            until = self.clock.now() + dt.timedelta(seconds=seconds)
            if w.blocked_until is None or until > w.blocked_until:
                w.blocked_until = until
                w.reason = reason

    def states(self) -> list[EndpointState]:
        with self._lock:
            now = self.clock.now()
            out = []
            for endpoint, w in sorted(self._endpoints.items()):
                longest = max(w.slots, key=lambda lim: lim.per_seconds, default=None)
                recent = 0
                if longest is not None:
                    start = now - dt.timedelta(seconds=longest.per_seconds)
                    recent = sum(1 for t in w.slots[longest] if start < t <= now)
                blocked = w.blocked_until if w.blocked_until and w.blocked_until > now else None
                out.append(
                    EndpointState(
                        endpoint, tuple(w.slots), recent, blocked, w.reason if blocked else ""
                    )
                )
            return out


class ConcurrencySlots:
    """How many sends run at once: per channel instance, and per endpoint when capped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[str, threading.BoundedSemaphore] = {}
        self._endpoints: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def slot(
        self, channel_id: str, concurrency: int, endpoint: str, endpoint_concurrency: int | None
    ) -> Iterator[None]:
        """Hold one of the channel's (and the endpoint's) concurrent-send slots."""
        with self._lock:
            channel_cap = self._channels.setdefault(
                channel_id, threading.BoundedSemaphore(concurrency)
            )
            endpoint_cap = None
            if endpoint_concurrency:
                endpoint_cap = self._endpoints.setdefault(
                    endpoint, threading.BoundedSemaphore(endpoint_concurrency)
                )
        with channel_cap:
            if endpoint_cap is None:
                yield
            else:
                with endpoint_cap:
                    yield
