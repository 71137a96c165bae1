"""Clocks: the real one, a virtual one for `simulate`, and a manual one for tests.

* `SystemClock`: wall-clock time; `interrupt()` wakes every sleeper (a clean stop).
* `VirtualClock`: sleeping advances time at once; for one flow at a time (`simulate`).
* `ManualClock`: sleepers wait until the test moves time past their wake-up; several
  threads can wait on it, as on the real clock, and nobody waits on the wall clock.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol

from broadcaster.errors import InvalidArgumentError

__all__ = ["Clock", "ManualClock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    def now(self) -> dt.datetime: ...  # aware, UTC

    def sleep(self, seconds: float) -> None: ...  # may return early after interrupt()

    def interrupt(self) -> None: ...  # wake every sleeper now, and every later one


def _aware(start: dt.datetime) -> dt.datetime:
    if start.tzinfo is None:
        raise InvalidArgumentError("时钟需要带时区的时间 a clock needs an aware datetime")
    return start.astimezone(dt.UTC)


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
        self._now = _aware(start)
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
        when = _aware(when)
        with self._lock:
            if when > self._now:
                self._now = when

    def interrupt(self) -> None:
        return None


class ManualClock:
    """Time moved by the test (`advance`, `set`); `sleep` blocks until time reaches its end.

    `wait_for_sleepers(n)` lets a test wait until n threads are asleep on the clock, so
    it can move time only once the work it wants to observe has gone as far as it can.
    """

    def __init__(self, start: dt.datetime):
        self._now = _aware(start)
        self._cond = threading.Condition()
        self._sleepers = 0
        self._interrupted = False

    def now(self) -> dt.datetime:
        with self._cond:
            return self._now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._cond:
            until = self._now + dt.timedelta(seconds=seconds)
            self._sleepers += 1
            self._cond.notify_all()
            try:
                while self._now < until and not self._interrupted:
                    self._cond.wait()
            finally:
                self._sleepers -= 1
                self._cond.notify_all()

    def set(self, when: dt.datetime) -> None:
        """Move to `when` (never backwards) and wake whoever's time has come."""
        when = _aware(when)
        with self._cond:
            if when > self._now:
                self._now = when
            self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        self.set(self.now() + dt.timedelta(seconds=seconds))

    @property
    def sleepers(self) -> int:
        with self._cond:
            return self._sleepers

    def wait_for_sleepers(self, count: int, timeout: float = 30.0) -> bool:
        """Block until at least `count` threads sleep on this clock (False after `timeout`
        real seconds: a safety net for a broken test, not a way to pass time)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._sleepers >= count, timeout)

    def interrupt(self) -> None:
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()
