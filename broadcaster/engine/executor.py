"""Where send tasks run: an in-process thread pool by default.

Planning and execution meet only here. A `SendTask` is plain data (picklable: the
deliveries with their rendered messages); an executor runs `Dispatcher.execute` for
it. A distributed pool (Celery, Procrastinate on PostgreSQL) can take the thread
pool's place by implementing `Executor`, without any channel noticing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from broadcaster.channel import Delivery

__all__ = ["Executor", "SendTask", "ThreadExecutor"]


@dataclass(frozen=True)
class SendTask:
    """One send() call's worth of deliveries to one endpoint: the unit an executor runs."""

    occurrence_id: str
    channel_id: str
    endpoint: str
    deliveries: tuple[Delivery, ...]


class Executor(Protocol):
    """Runs send tasks; the default is a thread pool in this process."""

    def submit(self, fn: Callable[[], Any]) -> Future[Any]: ...

    def shutdown(self, wait: bool = True) -> None: ...


class ThreadExecutor:
    """A thread pool sized to the largest concurrency the channels need."""

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="send")

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        return self._pool.submit(fn)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
