"""Send tasks are plain data: the same tasks run in other processes, resolving everything
from the log and the config by key, and nothing is sent twice."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from broadcaster.engine.clock import SystemClock
from broadcaster.engine.executor import (
    Lane,
    ProcessExecutor,
    SendTask,
    Sizer,
    TaskReport,
    gather,
)
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import Status
from tests.engine.helpers import TOKEN_ENV, at, load, write_engine_campaign
from tests.fakes.webhook_server import WebhookFake

KEY = "process-pool-key"


def test_a_send_task_carries_no_number_no_text_and_no_live_object() -> None:
    task = SendTask("county", "blast@2026-03-03T10:00", "sms", "0f1e2d3c4b5a6978", ("k1", "k2"))
    data = pickle.dumps(task)
    assert pickle.loads(data) == task
    assert b"138" not in data and b"+86" not in data  # references, not numbers


def test_tasks_run_through_a_process_pool_send_each_delivery_once(
    tmp_path: Path, webhook_server: WebhookFake, log_url: str
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url, contacts=40)
    environ = {**TOKEN_ENV, "BROADCASTER_LOG_KEY": KEY}
    # this process holds a token the gateway refuses: only the pool's processes can send
    app = load(path, environ={**environ, "TEST_SECRET_TOKEN": "not-the-gateway-token"})
    store = DeliveryLog.open(log_url, hash_key=KEY.encode())
    pool = ProcessExecutor(
        2, config=str(path), db=log_url, state_dir=str(tmp_path / "var"), environ=environ
    )
    dispatcher = app.dispatcher(store, KEY.encode(), clock=SystemClock(), executor=pool)
    try:
        occurrence = next(
            Planner(app.campaign).rule_occurrences(
                app.campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        report = dispatcher.fire(occurrence).wait()
    finally:
        pool.shutdown(wait=True)
        dispatcher.close()
    assert report.counts == {"accepted": 40}, report
    rows = store.deliveries(campaign="engine", channel="sms")
    store.close()
    assert {r.status for r in rows} == {Status.ACCEPTED}
    assert webhook_server.duplicate_sends() == {} and len(webhook_server.accepted) == 40
    assert len(webhook_server.sends) == 40  # none with this process's token


# -- the thread lane -------------------------------------------------------------------------


def _judged(sizer: Sizer, rates: list[float], start: float = 0.0) -> list[int]:
    """The sizes after each measure (one every 0.1 s); the first measure after a step is
    the new threads starting, and is not judged."""
    return [sizer.judge(rate, start + i / 10) for i, rate in enumerate(rates)]


def test_the_sizer_doubles_while_more_threads_finish_more_sends_against_a_slow_gateway() -> None:
    sizer = Sizer(4, 100, floor=4)
    sizes = []
    for i in range(10):  # 200 ms a send: a lane of n threads finishes n / 0.2 a second
        sizes.append(sizer.judge(sizer.target / 0.2, i / 10))
    # each step paid in full (twice the threads, twice the sends): the next one is larger
    assert sizes == [8, 8, 32, 32, 100, 100, 100, 100, 100, 100]


def test_a_step_that_pays_only_in_part_is_followed_by_a_doubling() -> None:
    sizer = Sizer(4, 100, floor=4)
    assert _judged(sizer, [20.0, 20.0, 30.0, 30.0, 40.0]) == [8, 8, 16, 16, 32]


def test_the_first_measure_after_a_step_is_not_judged() -> None:
    sizer = Sizer(4, 100, floor=4)
    # 8 threads, just started, finish fewer sends than 4 did: not a verdict yet
    assert _judged(sizer, [20.0, 14.0, 30.0]) == [8, 8, 16]


def test_a_step_short_of_doubling_needs_a_proportionally_smaller_gain() -> None:
    sizer = Sizer(64, 100, floor=4)
    assert _judged(sizer, [310.0, 300.0]) == [100, 100]
    assert sizer.judge(360.0, 0.3) == 100  # 1.56 times the threads, 1.16 times the sends: kept
    held = Sizer(64, 100, floor=4)
    assert _judged(held, [310.0, 300.0, 320.0]) == [100, 100, 64]  # 1.03 times: back


def test_the_sizer_goes_back_when_doubling_does_not_pay_and_tries_again_later() -> None:
    sizer = Sizer(4, 100, floor=4)
    # 4 threads finish 2,000 sends a second; 8 barely more: saturated, back to 4, held
    assert _judged(sizer, [2000.0, 2050.0, 2100.0, 2000.0]) == [8, 8, 4, 4]
    assert sizer.judge(2000.0, 0.2 + Sizer.HOLD_SECONDS) == 8  # then tried again
    assert sizer.judge(2500.0, 2.3) == 8  # settling
    assert sizer.judge(2600.0, 2.4) == 16  # a quarter more and up is still worth it


def test_the_sizer_never_exceeds_the_channel_concurrency_nor_falls_below_the_floor() -> None:
    sizer = Sizer(4, 6, floor=4)
    assert _judged(sizer, [20.0, 25.0, 30.0, 30.0]) == [6, 6, 6, 6]
    small = Sizer(4, 2, floor=4)
    assert small.target == 2 and small.judge(10.0, 0.0) == 2
    shrinking = Sizer(4, 100, floor=4)
    assert _judged(shrinking, [100.0, 60.0, 50.0]) == [8, 8, 4]  # never below the floor


def _blocked(release: threading.Event, started: list[str]) -> Callable[[SendTask], TaskReport]:
    lock = threading.Lock()

    def run(task: SendTask) -> TaskReport:
        with lock:
            started.append(task.keys[0])
        release.wait(10)
        report = TaskReport()
        report.add("accepted")
        return report

    return run


def _task(i: int) -> SendTask:
    return SendTask("c", "r@t", "sms", "e", (f"k{i}",))


def test_a_lane_runs_every_task_once_and_starts_no_more_threads_than_its_floor_at_once() -> None:
    release, started = threading.Event(), []
    lane = Lane(_blocked(release, started), 50, "send-test")
    futures = [lane.submit(_task(i)) for i in range(20)]
    assert lane.threads == Lane.FLOOR
    release.set()
    assert gather(futures).counts == {"accepted": 20}
    assert sorted(started) == sorted(f"k{i}" for i in range(20))
    lane.shutdown(wait=True)
    assert lane.threads == 0


def test_a_lane_shut_down_without_waiting_cancels_what_has_not_started() -> None:
    release, started = threading.Event(), []
    lane = Lane(_blocked(release, started), 2, "send-test")
    futures = [lane.submit(_task(i)) for i in range(6)]
    lane.shutdown(wait=False)
    release.set()
    cancelled = [f for f in futures if f.cancelled()]
    assert len(cancelled) >= 4  # at most the two running ones finish
    assert all(f.result() is not None for f in futures if not f.cancelled())
    with pytest.raises(RuntimeError):
        lane.submit(_task(9))


def test_a_lane_hands_tasks_queued_for_one_endpoint_to_one_thread_as_runs() -> None:
    """One thread; while it is busy, tasks queue up; then they go as runs of at most the cap,
    never mixing endpoints, and every future gets its report."""
    release, started = threading.Event(), []
    runs: list[list[str]] = []

    def run_many(tasks: list[SendTask]) -> TaskReport:
        runs.append([t.keys[0] for t in tasks])
        report = TaskReport()
        report.add("accepted", len(tasks))
        return report

    busy = threading.Event()
    blocked = _blocked(release, started)

    def run(task: SendTask) -> TaskReport:
        busy.set()
        return blocked(task)

    lane = Lane(run, 1, "send-test", run_many=run_many, run_cap=lambda t: 3)
    first = lane.submit(_task(0))
    assert busy.wait(10)  # the only thread is busy with the first task
    tasks = [_task(i) for i in range(1, 6)] + [SendTask("c", "r@t", "sms", "other", ("x",))]
    futures = [first] + [lane.submit(t) for t in tasks]
    release.set()
    assert gather(futures).counts == {"accepted": 7}
    assert runs == [["k1", "k2", "k3"], ["k4", "k5"]]  # the cap, then the rest for "e"
    assert started == ["k0", "x"]  # the other endpoint's task ran on its own
    lane.shutdown(wait=True)
