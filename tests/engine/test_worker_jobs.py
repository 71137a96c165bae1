"""A queued job that keeps failing (a poisoned job): it raises so the queue runs it again,
and after the last attempt its deliveries are recorded failed, with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from broadcaster.engine import worker
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.executor import SendTask, TaskReport
from broadcaster.engine.queue import MAX_ATTEMPTS
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import Status
from tests.engine.helpers import at, load, write_engine_campaign
from tests.log.fixtures import HASH_KEY


class Elsewhere:
    """An executor whose tasks run in other processes (nothing runs them here)."""

    local = False

    def submit(self, task: SendTask) -> Future[TaskReport]:
        return Future()

    def shutdown(self, wait: bool = True) -> None:
        return None


@pytest.fixture
def planned(tmp_path: Path) -> Iterator[tuple[DeliveryLog, list[str]]]:
    """A log with one occurrence's deliveries planned and handed over to other processes."""
    app = load(write_engine_campaign(tmp_path, "http://127.0.0.1:9", contacts=4))
    clock = ManualClock(at(2026, 3, 3, 10))
    with DeliveryLog.open(f"sqlite:///{tmp_path / 'log.sqlite3'}", hash_key=HASH_KEY) as log:
        scheduler = app.dispatcher(
            log, HASH_KEY, clock=clock, executor=Elsewhere(), heartbeat=False
        )
        spec = app.campaign.rule("blast")
        occurrence = next(
            Planner(app.campaign).rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4))
        )
        handle = scheduler.fire(occurrence)
        log.flush()
        scheduler.close()
        sender = app.dispatcher(log, HASH_KEY, clock=clock, heartbeat=False)
        worker._engine.update(dispatcher=sender)
        try:
            yield log, list(handle.keys)
        finally:
            worker._engine.clear()
            sender.close()


def job(attempts: int) -> SimpleNamespace:
    return SimpleNamespace(job=SimpleNamespace(attempts=attempts))


def test_a_poisoned_job_raises_until_its_last_attempt_then_its_deliveries_fail(
    planned: tuple[DeliveryLog, list[str]],
) -> None:
    log, keys = planned
    # a task naming a channel this worker's config does not have: it can never run
    poisoned = [asdict(SendTask("engine", "o", "ghost", "e", tuple(keys)))]
    for attempt in range(MAX_ATTEMPTS - 1):
        with pytest.raises(worker.PoisonedTaskError, match="ghost"):
            worker.run_bundle(job(attempt), poisoned)
        assert {s.status for s in log.deliveries(campaign="engine")} == {Status.PLANNED}
    with pytest.raises(worker.PoisonedTaskError):
        worker.run_bundle(job(MAX_ATTEMPTS - 1), poisoned)
    rows = log.deliveries(campaign="engine")
    assert {r.key for r in rows} == set(keys)
    assert {r.status for r in rows} == {Status.FAILED}
    [event] = [e for e in log.events(keys[0]) if e.status is Status.FAILED]
    assert f"failed {MAX_ATTEMPTS} times" in event.reason and "ghost" in event.reason


def test_a_malformed_job_raises_and_touches_nothing(
    planned: tuple[DeliveryLog, list[str]],
) -> None:
    log, _ = planned
    with pytest.raises((KeyError, TypeError)):
        worker.run_bundle(job(MAX_ATTEMPTS - 1), [{"bogus": 1}])
    assert {s.status for s in log.deliveries(campaign="engine")} == {Status.PLANNED}
