"""Clocks: the real one, and a virtual one for `simulate` and tests (sleeping advances it)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    def now(self) -> dt.datetime: ...  # aware, UTC

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time; `sleep` wakes early when `interrupt()` is called (clean shutdown)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def interrupt(self) -> None:
        self._stop.set()


class VirtualClock:
    """Time that moves only when told: `sleep` advances it at once, nobody waits."""

    def __init__(self, start: dt.datetime):
        if start.tzinfo is None:
            raise ValueError("VirtualClock needs an aware datetime")
        self._now = start.astimezone(dt.UTC)
        self._lock = threading.Lock()
        self.slept = 0.0  # total virtual seconds slept, for reports and tests

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            self.slept += seconds

    def set(self, when: dt.datetime) -> None:
        """Move to `when` (never backwards)."""
        with self._lock:
            when = when.astimezone(dt.UTC)
            if when > self._now:
                self._now = when

    def interrupt(self) -> None:
        return None
