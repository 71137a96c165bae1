"""Where send tasks run: an in-process thread pool by default, one lane per channel.

A `SendTask` is plain data: the campaign, the occurrence, the channel, the endpoint's
hash and the delivery keys. It carries no number, no text and no live object, so it
can cross a process or a broker: whoever runs it (`Dispatcher.execute`) reads what
it needs from the delivery log and the office's config. Each channel has its own
lane of threads (its `concurrency`), so a rate-limited fan-out on one channel never
holds up the sends of another.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Executor",
    "Lane",
    "ProcessExecutor",
    "SendTask",
    "Sizer",
    "TaskReport",
    "ThreadExecutor",
    "gather",
]


@dataclass(frozen=True)
class SendTask:
    """One send() call's worth of deliveries to one endpoint: the unit an executor runs."""

    campaign: str
    occurrence_id: str
    channel_id: str
    endpoint: str  # the endpoint's hash, as logged (an endpoint may hold a bot key)
    keys: tuple[str, ...]


@dataclass
class TaskReport:
    """What running one task came to: deliveries by status, and errors (plain data)."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, status: str, n: int = 1) -> None:
        self.counts[status] = self.counts.get(status, 0) + n


class Executor(Protocol):
    """Runs send tasks; the default is a thread pool in this process.

    `local` says whether tasks run in the dispatcher's own process: then it keeps its
    claims on what it queued; otherwise it gives them back once queued, and the process
    that runs a task claims its deliveries itself.
    """

    local: bool

    def submit(self, task: SendTask) -> Future[TaskReport]: ...

    def shutdown(self, wait: bool = True) -> None: ...


class Sizer:
    """How many threads a lane wants, judged from how many sends it finishes a second.

    Doubling while that grows by at least `GAIN` times (a step short of doubling, up to
    the lane's size, by proportionally less), quadrupling after a step that paid in full
    (`FULL`: the gateway is slow, not this process); back to the previous size when it
    did not pay (the gateway or this process is saturated: more threads would only queue
    for the CPU), staying there `HOLD_SECONDS`. The first measure after a step is not
    judged: the new threads were still starting, their first sends not yet finished, and
    it under-reads what the new size does (against a 200 ms gateway, the step from 64
    to 100 threads looked like no gain and held the lane at 64 for two seconds).
    """

    GAIN = 1.25
    FULL = 0.8  # a step that grew the sends at least this share as much as the threads
    HOLD_SECONDS = 2.0

    def __init__(self, start: int, size: int, *, floor: int = 1):
        self.target = max(1, min(start, size))
        self.size = size
        self.floor = floor
        self._before: tuple[int, float] | None = None  # (target, sends a second) before a step
        self._settling = False  # the next measure is the first after a step: not judged
        self._hold_until = float("-inf")

    def judge(self, rate: float, now: float) -> int:
        """The wanted size, given the sends a second finished at the current one."""
        if self._settling:
            self._settling = False
            return self.target
        before = self._before
        self._before = None
        factor = 2
        if before is not None:
            step = self.target / before[0]
            if rate < (1 + (self.GAIN - 1) * (step - 1)) * before[1]:
                self.target = max(self.floor, before[0])
                self._hold_until = now + self.HOLD_SECONDS
                return self.target
            if rate >= self.FULL * step * before[1]:
                factor = 4  # the sends grew as the threads did: the gateway waits, not the CPU
        if now >= self._hold_until and self.target < self.size:
            self._before = (self.target, rate)
            self.target = min(self.size, self.target * factor)
            self._settling = True
        return self.target


class Lane:
    """The threads of one channel: at most `size`, as many as make sends finish sooner.

    A lane starts with `FLOOR` threads and, while sends wait, doubles them as long as that
    finishes markedly more sends a second (the gateway is slow, more requests in flight
    help); when doubling does not pay (the gateway or this process is saturated: more
    threads would only queue), it goes back and tries again later.
    Against a gateway that answers in 200 ms it reaches `size` within a second; against
    an instant one a handful of threads keep the CPU busy.

    When sends are fast, a thread takes a run of queued tasks to one endpoint at once
    (`run_many`), as many as `run_cap(task)` allows (`MAX_RUN` at most): the dispatcher
    writes their attempts in one transaction and sends them one after another, so a
    fast gateway costs one commit per run instead of one per send. A run's report goes
    to its first task's future; the others get empty reports (sums stay right).
    """

    FLOOR = 4
    SAMPLE_SECONDS = 0.005  # how often a backlog is looked at
    MAX_RUN = 16  # tasks in one run, at most

    def __init__(
        self,
        run: Callable[[SendTask], TaskReport],
        size: int,
        name: str,
        *,
        run_many: Callable[[list[SendTask]], TaskReport] | None = None,
        run_cap: Callable[[SendTask], int] | None = None,
    ):
        self._run = run
        self._run_many = run_many
        self._run_cap = run_cap
        self.size = max(1, size)
        self._name = name
        self._queue: deque[tuple[Future[TaskReport], SendTask]] = deque()
        self._cond = threading.Condition()
        self._backlog = threading.Event()
        self.threads = 0  # running
        self.target = min(self.FLOOR, self.size)  # wanted
        self._idle = 0
        self._done = 0  # sends finished since the last decision, and when that was
        self._since = time.monotonic()
        self._closed = False
        self._grower: threading.Thread | None = None

    def submit(self, task: SendTask) -> Future[TaskReport]:
        future: Future[TaskReport] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("lane is shut down")
            self._queue.append((future, task))
            if self._idle:
                self._cond.notify()
            elif self.threads < self.target:
                self._start(1)
            elif self.target < self.size:
                self._backlog.set()
                if self._grower is None:
                    self._grower = threading.Thread(
                        target=self._grow, name=f"{self._name}-grow", daemon=True
                    )
                    self._grower.start()
        return future

    def _start(self, n: int) -> None:
        for _ in range(n):
            self.threads += 1
            name = f"{self._name}-{self.threads}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _grow(self) -> None:
        """While sends wait, let the sizer judge the sends finished at the current size."""
        sizer = Sizer(self.target, self.size, floor=self.FLOOR)
        while True:
            if not self._backlog.is_set():
                self._backlog.wait()
                with self._cond:  # a new backlog: count from now
                    self._done, self._since = 0, time.monotonic()
            time.sleep(self.SAMPLE_SECONDS)
            with self._cond:
                if self._closed:
                    return
                if not self._queue or self._idle:
                    self._backlog.clear()
                    continue
                if self._done < max(self.FLOOR, self.target):
                    continue  # not enough finished sends at this size to judge yet
                now = time.monotonic()
                rate = self._done / max(now - self._since, 1e-6)
                self.target = sizer.judge(rate, now)
                self._done, self._since = 0, now
                self._start(max(0, self.target - self.threads))  # surplus leaves after a send

    def _take(self) -> list[tuple[Future[TaskReport], SendTask]]:
        """The next task, and the run of tasks to the same endpoint queued behind it
        (called holding the condition)."""
        items = [self._queue.popleft()]
        if self._run_many is None or self._run_cap is None or not self._queue:
            return items
        task = items[0][1]
        want = min(self.MAX_RUN, self._run_cap(task))
        while len(items) < want and self._queue and self._queue[0][1].endpoint == task.endpoint:
            items.append(self._queue.popleft())
        return items

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                if not self._queue or self.threads > self.target:
                    self.threads -= 1
                    self._cond.notify_all()
                    return
                taken = self._take()
            items = [(f, t) for f, t in taken if f.set_running_or_notify_cancel()]
            if not items:
                continue
            try:
                if len(items) == 1:
                    items[0][0].set_result(self._run(items[0][1]))
                else:
                    assert self._run_many is not None
                    report = self._run_many([t for _, t in items])
                    items[0][0].set_result(report)
                    for f, _ in items[1:]:
                        f.set_result(TaskReport())
            except BaseException as exc:  # handed to whoever waits on the futures
                for f, _ in items:
                    if not f.done():
                        f.set_exception(exc)
            with self._cond:
                self._done += len(items)

    def shutdown(self, wait: bool = True) -> None:
        """Start nothing new; without `wait`, cancel what has not started."""
        with self._cond:
            self._closed = True
            if not wait:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._cond.notify_all()
            self._backlog.set()
            if wait:
                while self.threads:
                    self._cond.wait()


class ThreadExecutor:
    """One lane of threads per channel, at most the channel's concurrency."""

    local = True

    def __init__(
        self,
        run: Callable[[SendTask], TaskReport],
        lanes: Mapping[str, int],
        *,
        run_many: Callable[[list[SendTask]], TaskReport] | None = None,
        run_cap: Callable[[SendTask], int] | None = None,
    ):
        self._run = run
        self._run_many = run_many
        self._run_cap = run_cap
        self._sizes = dict(lanes)
        self._lanes: dict[str, Lane] = {}
        self._lock = threading.Lock()

    def _lane(self, channel_id: str) -> Lane:
        with self._lock:
            lane = self._lanes.get(channel_id)
            if lane is None:
                size = max(1, min(512, self._sizes.get(channel_id, 4)))
                lane = Lane(
                    self._run,
                    size,
                    f"send-{channel_id}",
                    run_many=self._run_many,
                    run_cap=self._run_cap,
                )
                self._lanes[channel_id] = lane
            return lane

    def submit(self, task: SendTask) -> Future[TaskReport]:
        return self._lane(task.channel_id).submit(task)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.shutdown(wait=wait)


class ProcessExecutor:
    """Tasks run by other processes (`broadcaster.engine.worker`), each of which loads the
    config and opens the log itself: what a task carries is all they share."""

    local = False

    def __init__(
        self,
        processes: int,
        *,
        config: str,
        db: str,
        state_dir: str,
        environ: Mapping[str, str],
    ):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from broadcaster.engine import worker

        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.start,
            initargs=(config, db, state_dir, dict(environ)),
        )

    def submit(self, task: SendTask) -> Future[TaskReport]:
        from broadcaster.engine import worker

        return self._pool.submit(worker.run, task)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def gather(futures: list[Future[TaskReport]]) -> TaskReport:
    """Wait for task futures; one report summing theirs (a task that raised is an error)."""
    total = TaskReport()
    for f in futures:
        try:
            report = f.result()
        except Exception as exc:  # reported, never raised
            total.errors.append(repr(exc))
            continue
        for status, n in report.counts.items():
            total.add(status, n)
        total.errors += report.errors
    return total
