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
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Executor",
    "ProcessExecutor",
    "SendTask",
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


class ThreadExecutor:
    """One thread pool per channel, sized to the channel's concurrency."""

    local = True

    def __init__(self, run: Callable[[SendTask], TaskReport], lanes: Mapping[str, int]):
        self._run = run
        self._sizes = dict(lanes)
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def _lane(self, channel_id: str) -> ThreadPoolExecutor:
        with self._lock:
            lane = self._lanes.get(channel_id)
            if lane is None:
                size = max(1, min(512, self._sizes.get(channel_id, 4)))
                lane = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"send-{channel_id}")
                self._lanes[channel_id] = lane
            return lane

    def submit(self, task: SendTask) -> Future[TaskReport]:
        return self._lane(task.channel_id).submit(self._run, task)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.shutdown(wait=wait, cancel_futures=not wait)


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
