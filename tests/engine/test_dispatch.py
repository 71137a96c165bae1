"""The dispatch path against real fake gateways: log first, claim, retry only what failed
retryably, reconcile the rest after it settles, defer at the moment of sending."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import requests

from broadcaster.engine.clock import Clock, ManualClock, VirtualClock
from broadcaster.engine.dispatch import RUN_SECONDS
from broadcaster.engine.executor import Lane, SendTask, TaskReport
from broadcaster.engine.recovery import Recovery, SweepReport
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Occurrence, Planner
from broadcaster.vocab import ErrorClass, Status
from tests.engine.helpers import DAY, at, load, numbers, write_engine_campaign
from tests.fakes.batch_gateway import BatchGatewayFake
from tests.fakes.http import serving
from tests.fakes.webhook_server import Mode, WebhookFake

KEY = b"test-key"


@pytest.fixture
def store(log_url: str) -> Iterator[DeliveryLog]:
    log = DeliveryLog.open(log_url, hash_key=KEY)
    yield log
    log.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[DeliveryLog]:
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    yield log
    log.close()


@pytest.fixture
def batch_gateway() -> Iterator[BatchGatewayFake]:
    yield from serving(BatchGatewayFake())


class Engine:
    """A campaign aimed at the fakes, its dispatcher and its sweep, on a virtual clock."""

    def __init__(
        self,
        folder: Path,
        server: WebhookFake,
        store: DeliveryLog,
        clock: Clock | None = None,
        **kw: Any,
    ):
        self.path = write_engine_campaign(folder, server.url, **kw)
        self.app = load(self.path)
        self.campaign = self.app.campaign
        self.clock: Any = clock or VirtualClock(at(2026, 3, 3, 10))
        self.store = store
        self.dispatcher = self.app.dispatcher(store, KEY, clock=self.clock, heartbeat=False)
        self.recovery = Recovery(self.dispatcher)

    def occurrence(self, rule: str = "blast") -> Occurrence:
        spec = self.campaign.rule(rule)
        return next(Planner(self.campaign).rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4)))

    def fire(self, rule: str = "blast") -> TaskReport:
        return self.dispatcher.fire(self.occurrence(rule)).wait()

    def sweep(self, when: dt.datetime | None = None) -> SweepReport:
        if when is not None:
            self.clock.set(when)
        report = self.recovery.sweep()
        report.wait()
        return report

    def statuses(self, channel: str = "sms") -> dict[str, Status]:
        return {s.recipient_display: s.status for s in self.store.deliveries(channel=channel)}

    def close(self) -> None:
        self.dispatcher.close()


@pytest.fixture
def make_engine(tmp_path: Path, webhook_server: WebhookFake) -> Iterator[Any]:
    made: list[Engine] = []

    def make(store: DeliveryLog, **kw: Any) -> Engine:
        engine = Engine(tmp_path / f"c{len(made)}", webhook_server, store, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def sends_at(store: DeliveryLog) -> list[dt.datetime]:
    return sorted(
        e.at for r in store.deliveries() for e in store.events(r.key) if e.status is Status.SENDING
    )


# --- the happy path -----------------------------------------------------------------------------


def test_every_delivery_is_logged_before_it_is_sent_and_again_with_its_outcome(
    make_engine: Any, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(store, contacts=5)
    handle = engine.dispatcher.fire(engine.occurrence())
    assert handle.first_time
    assert handle.wait().counts == {"accepted": 5}
    rows = store.deliveries()
    assert len(rows) == 5
    assert {r.status for r in rows} == {Status.ACCEPTED}
    assert sorted(r.recipient_display for r in rows) == [f"138****000{i}" for i in range(1, 6)]
    for row in rows:
        assert [e.status for e in store.events(row.key)] == [
            Status.PLANNED,
            Status.SENDING,
            Status.ACCEPTED,
        ]
        assert row.provider_id and row.provider_id.startswith("biz-")
        assert row.target_path == "测试镇/短信名单"
        assert row.lease_owner is None  # claims are given back once answered
        assert store.text(row.text_sha256).endswith("如有疑问请拨96110或110。")
        payload = store.payload(row.payload_sha256)
        assert payload and payload["theme"] == "routine" and payload["parts"] == []
        assert payload["topic"] in ("order_brushing", "loan", "fake_police")
    assert set(webhook_server.key_counts) == {r.key for r in rows}
    assert webhook_server.repeated_keys() == {}
    assert [(c.targeted, c.accepted) for c in store.coverage()] == [(5, 5)]


def test_a_plugin_gets_a_real_requests_session(make_engine: Any, sqlite_store: DeliveryLog) -> None:
    engine = make_engine(sqlite_store)
    channel = engine.dispatcher.channel("sms")
    assert isinstance(channel.context.http, requests.Session)
    channel.context.http.headers.update({"X-Test": "1"})  # what a bot plugin may do


def test_firing_again_sends_nothing_twice(
    make_engine: Any, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(store, contacts=4)
    engine.fire()
    again = engine.dispatcher.fire(engine.occurrence())
    assert not again.first_time
    assert again.wait().counts == {"accepted": 4}
    assert len(webhook_server.sends) == 4


def test_keys_include_the_target_and_reveal_no_number(
    make_engine: Any, sqlite_store: DeliveryLog, tmp_path: Path
) -> None:
    """The same number on two lists is two deliveries, as plan counts two."""
    engine = make_engine(sqlite_store, contacts=2)
    occurrence = engine.occurrence()
    first = [p.record.key for p in engine.dispatcher.preparer.prepare(occurrence)]
    second = [p.record.key for p in engine.dispatcher.preparer.prepare(occurrence)]
    assert first == second and len(set(first)) == 2
    assert all(n not in k for k in first for n in numbers(2))
    from broadcaster.engine.prepare import delivery_key

    a = delivery_key(KEY, "c", "o", "sms", "village-1", "+8613800000001")
    b = delivery_key(KEY, "c", "o", "sms", "village-2", "+8613800000001")
    assert a != b


def test_the_exact_text_of_each_delivery_is_what_plan_renders(
    make_engine: Any, sqlite_store: DeliveryLog
) -> None:
    engine = make_engine(sqlite_store, contacts=1)
    occurrence = engine.occurrence()
    [item] = list(Planner(engine.campaign).expand(occurrence))
    engine.fire()
    [row] = sqlite_store.deliveries()
    assert len(sqlite_store.text(row.text_sha256)) == item.length
    assert row.template == item.template
    assert row.scheduled_at == dt.datetime.combine(DAY, dt.time(10), tzinfo=occurrence.at.tzinfo)


# --- retries: only what failed retryably, never the batch -----------------------------------------


def test_a_retried_batch_resends_only_what_failed_retryably(
    make_engine: Any, sqlite_store: DeliveryLog, batch_gateway: BatchGatewayFake
) -> None:
    """Batch of 100: each number is sent at most once unless its own result was retryable."""
    engine = make_engine(
        sqlite_store, contacts=100, batch={"url": batch_gateway.url, "batch_size": 100}
    )
    prepared = list(engine.dispatcher.preparer.prepare(engine.occurrence("bulk")))
    keys = [p.record.key for p in prepared]
    plan = {
        "OK": (["OK"], 1, Status.ACCEPTED),
        "THROTTLED": (["THROTTLED", "OK"], 2, Status.ACCEPTED),
        "BUSY": (["BUSY", "BUSY", "OK"], 3, Status.ACCEPTED),
        "LOST": (["LOST"], 1, Status.UNKNOWN),
        "BAD": (["BAD"], 1, Status.FAILED),
    }
    groups = {name: keys[i * 20 : (i + 1) * 20] for i, name in enumerate(plan)}
    for name, group in groups.items():
        for k in group:
            batch_gateway.script[k] = plan[name][0]
    engine.fire("bulk")
    latest = sqlite_store.latest(keys)
    for name, (_, arrivals, status) in plan.items():
        for k in groups[name]:
            assert batch_gateway.arrivals[k] == arrivals, name
            assert latest[k].status is status, name
    assert batch_gateway.duplicates() == {}
    assert batch_gateway.calls == 3  # 100, then the 40 retryable, then the 20 still busy
    throttled = groups["THROTTLED"][0]
    events = sqlite_store.events(throttled)
    deferred = next(e for e in events if e.status is Status.DEFERRED)
    resent = [e for e in events if e.status is Status.SENDING][1]
    assert deferred.error_class is ErrorClass.THROTTLED
    assert (resent.at - deferred.at).total_seconds() >= 5  # the provider's retry_after


def test_server_errors_are_retried_only_when_the_receiver_deduplicates(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=1, settings={"receiver_deduplicates": True})
    webhook_server.queue(Mode.HTTP_503, Mode.HTTP_502)
    engine.fire()
    [row] = sqlite_store.deliveries()
    assert row.status is Status.ACCEPTED and row.attempt == 3
    events = [(e.status, e.error_class) for e in sqlite_store.events(row.key)]
    assert events == [
        (Status.PLANNED, None),
        (Status.SENDING, None),
        (Status.DEFERRED, ErrorClass.TRANSIENT),
        (Status.SENDING, None),
        (Status.DEFERRED, ErrorClass.TRANSIENT),
        (Status.SENDING, None),
        (Status.ACCEPTED, None),
    ]
    assert 1 <= engine.clock.slept < 20  # exponential backoff, never a real wait
    assert len(webhook_server.accepted) == 1


def test_a_5xx_from_a_receiver_that_does_not_deduplicate_is_never_resent(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=1)
    webhook_server.queue(Mode.HTTP_503)
    engine.fire()
    [row] = sqlite_store.deliveries()
    assert row.status is Status.UNKNOWN
    assert len(webhook_server.sends) == 1


def test_429_retry_after_is_honoured(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=1)
    webhook_server.retry_after = "30"
    webhook_server.queue(Mode.THROTTLED)
    engine.fire()
    [row] = sqlite_store.deliveries()
    assert row.status is Status.ACCEPTED
    events = sqlite_store.events(row.key)
    throttled = next(e for e in events if e.error_class is ErrorClass.THROTTLED)
    resent = [e for e in events if e.status is Status.SENDING][1]
    assert (resent.at - throttled.at).total_seconds() >= 30


def test_permanent_failures_are_not_retried(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=2)
    webhook_server.mode = Mode.ERROR_CODE
    engine.fire()
    assert {r.status for r in sqlite_store.deliveries()} == {Status.FAILED}
    assert {r.error_class for r in sqlite_store.deliveries()} == {ErrorClass.CONTENT}
    assert len(webhook_server.sends) == 2


def test_what_stays_retryable_after_the_task_waits_for_the_sweep(
    make_engine: Any, sqlite_store: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    engine = make_engine(sqlite_store)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    engine.fire("groups")
    rows = sqlite_store.deliveries()
    assert {(r.status, r.error_class, r.reason) for r in rows} == {
        (Status.DEFERRED, ErrorClass.TRANSIENT, "磁盘已满 disk full")
    }
    assert all(r.next_check and r.lease_owner is None for r in rows)  # the sweep takes them
    assert all(sqlite_store.text(r.text_sha256) for r in rows)  # the exact text is kept
    monkeypatch.undo()
    engine.sweep(max(r.next_check for r in rows if r.next_check))
    assert {r.status for r in sqlite_store.deliveries()} == {Status.ACCEPTED}


# --- unknown outcomes ---------------------------------------------------------------------------


def test_an_unknown_outcome_is_reconciled_after_it_settles_not_resent(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=3)
    webhook_server.on_request(2, Mode.CLOSE)  # the gateway acts, then the answer is lost
    engine.fire()
    assert sorted(engine.statuses().values()) == [Status.ACCEPTED, Status.ACCEPTED, Status.UNKNOWN]
    engine.sweep(at(2026, 3, 3, 10, 0, 3))  # inside the settle time (2 + 2 + 2 s): not asked
    assert [r for r in webhook_server.requests if r.method == "GET"] == []
    engine.sweep(at(2026, 3, 3, 10, 0, 7))
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    assert webhook_server.repeated_keys() == {}
    lost = next(
        r
        for r in sqlite_store.deliveries()
        if any(e.status is Status.UNKNOWN for e in sqlite_store.events(r.key))
    )
    assert sqlite_store.events(lost.key)[-1].reason == "对账确认已到达 reconciled: it arrived"
    assert [e.status for e in sqlite_store.events(lost.key)].count(Status.UNKNOWN) == 1


def test_a_not_found_is_never_asked_before_the_request_could_land(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """The gateway takes the send and is still working when the client gives up: asking at
    once would hear 404 and send again. The engine asks only once the attempt has settled."""
    engine = make_engine(sqlite_store, contacts=2, settings={"timeout": [0.2, 0.2]})
    webhook_server.mode = Mode.HANG
    engine.fire()
    assert set(engine.statuses().values()) == {Status.UNKNOWN}
    for seconds in (0.5, 1.0, 2.0):  # settle = 0.2 + 0.2 + 2 s
        engine.sweep(at(2026, 3, 3, 10) + dt.timedelta(seconds=seconds))
    assert [r.path for r in webhook_server.requests if r.method == "GET"] == []
    webhook_server.mode = Mode.OK
    engine.sweep(at(2026, 3, 3, 10, 0, 5))
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    assert webhook_server.duplicate_sends() == {} and len(webhook_server.sends) == 2


def test_without_a_way_to_reconcile_an_unknown_outcome_goes_to_an_operator(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=2, settings={"status_url": None})
    webhook_server.on_request(1, Mode.CLOSE)
    engine.fire()
    assert sorted(s.value for s in engine.statuses().values()) == ["accepted", "unknown"]
    engine.sweep(at(2026, 3, 3, 10, 1))
    assert sorted(s.value for s in engine.statuses().values()) == ["accepted", "unresolved"]
    engine.dispatcher.fire(engine.occurrence()).wait()  # a restart does not re-send it either
    engine.sweep(at(2026, 3, 3, 11))
    assert webhook_server.repeated_keys() == {}
    assert len(webhook_server.sends) == 2
    [stuck] = sqlite_store.deliveries(status=Status.UNRESOLVED)
    assert stuck.next_check is None and "operator" in stuck.reason


def test_resend_on_unknown_counts_only_sends_after_an_unknown(
    make_engine: Any, sqlite_store: DeliveryLog, batch_gateway: BatchGatewayFake
) -> None:
    """A 503 then a lost answer is one unknown: the one allowed re-send is still there."""
    engine = make_engine(
        sqlite_store, contacts=1, batch={"url": batch_gateway.url, "resend_on_unknown": 1}
    )
    [p] = list(engine.dispatcher.preparer.prepare(engine.occurrence("bulk")))
    batch_gateway.script[p.record.key] = ["BUSY", "LOST", "OK"]
    engine.fire("bulk")
    assert sqlite_store.latest([p.record.key])[p.record.key].status is Status.UNKNOWN
    engine.sweep(at(2026, 3, 3, 10, 5))
    state = sqlite_store.latest([p.record.key])[p.record.key]
    assert state.status is Status.ACCEPTED and state.resends == 1
    statuses = [e.status for e in sqlite_store.events(p.record.key)]
    assert statuses == [
        Status.PLANNED,
        Status.SENDING,
        Status.DEFERRED,
        Status.SENDING,
        Status.UNKNOWN,
        Status.SENDING,
        Status.ACCEPTED,
    ]


# --- limits and quiet hours ---------------------------------------------------------------------


def test_a_disabled_channel_logs_its_deliveries_as_skipped(
    sqlite_store: DeliveryLog, webhook_server: WebhookFake, tmp_path: Path
) -> None:
    path = write_engine_campaign(
        tmp_path / "off", webhook_server.url, contacts=2, channel={"enabled": "auto"}
    )
    app = load(path, environ={})
    dispatcher = app.dispatcher(sqlite_store, KEY, clock=VirtualClock(at(2026, 3, 3, 10)))
    try:
        occurrence = next(
            Planner(app.campaign).rule_occurrences(
                app.campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        assert dispatcher.fire(occurrence).wait().counts == {"skipped": 2}
    finally:
        dispatcher.close()
    rows = sqlite_store.deliveries()
    assert {(r.status, r.error_class) for r in rows} == {(Status.SKIPPED, ErrorClass.DISABLED)}
    assert rows[0].reason == "缺少环境变量 environment variable TEST_SECRET_TOKEN not set"
    assert webhook_server.sends == []


def test_rate_limit_is_a_strict_sliding_window_per_endpoint(
    make_engine: Any, sqlite_store: DeliveryLog
) -> None:
    engine = make_engine(
        sqlite_store, contacts=12, channel={"rate_limit": "5/60s", "concurrency": 3}
    )
    engine.fire()
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    sends = sends_at(sqlite_store)
    assert len(sends) == 12
    for i in range(len(sends) - 5):
        assert sends[i + 5] - sends[i] >= dt.timedelta(seconds=60)  # never 6 in one minute
    assert sends[-1] - sends[0] >= dt.timedelta(seconds=120)


def test_two_channels_posting_to_one_endpoint_share_its_limit(
    tmp_path: Path, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """Two channel instances, one gateway URL: 5/60s between them, not 5/60s each."""
    path = write_engine_campaign(
        tmp_path, webhook_server.url, contacts=5, channel={"rate_limit": "5/60s"}
    )
    import json

    config = json.loads(path.read_text(encoding="utf-8"))
    config["channels"]["sms2"] = config["channels"]["sms"]
    config["rules"][0]["channels"] = ["sms", "sms2"]
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    app = load(path)
    clock = VirtualClock(at(2026, 3, 3, 10))
    dispatcher = app.dispatcher(sqlite_store, KEY, clock=clock, heartbeat=False)
    try:
        occurrence = next(
            Planner(app.campaign).rule_occurrences(
                app.campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        dispatcher.fire(occurrence).wait()
    finally:
        dispatcher.close()
    sends = sends_at(sqlite_store)
    assert len(sends) == 10
    for i in range(len(sends) - 5):
        assert sends[i + 5] - sends[i] >= dt.timedelta(seconds=60)


def test_throttled_sends_never_leave_inside_quiet_hours(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """10 SMS at 20:55 limited to 1 a minute, quiet from 21:00: five leave, five wait for 08:00."""
    engine = make_engine(
        sqlite_store,
        contacts=10,
        channel={"rate_limit": "1/60s", "concurrency": 1, "quiet_hours": "21:00-08:00"},
        clock=VirtualClock(at(2026, 3, 3, 20, 55)),
    )
    engine.fire()
    sends = sends_at(sqlite_store)
    assert len(sends) == 5
    assert all(s.astimezone(at(2026, 3, 3).tzinfo).time() < dt.time(21) for s in sends)
    deferred = sqlite_store.deliveries(status=Status.DEFERRED)
    assert len(deferred) == 5
    assert {(d.error_class, d.next_check) for d in deferred} == {
        (ErrorClass.QUIET, at(2026, 3, 4, 8))
    }
    assert all("deferred: quiet hours 21:00-08:00" in d.reason for d in deferred)
    engine.sweep(at(2026, 3, 4, 8, 0))
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    assert len(webhook_server.sends) == 10 and webhook_server.duplicate_sends() == {}


# --- stopping -----------------------------------------------------------------------------------


def test_stop_is_bounded_and_interrupts_only_what_is_in_flight(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(
        sqlite_store,
        contacts=6,
        channel={"concurrency": 1},
        settings={"timeout": [5, 60]},
        clock=ManualClock(at(2026, 3, 3, 10)),
    )
    webhook_server.mode = Mode.HANG  # the provider takes the first send and never answers
    engine.dispatcher.fire(engine.occurrence())
    webhook_server.wait_for(1)  # the first request is out, the other five are queued
    left = engine.dispatcher.stop(timeout=0.5)
    assert len(left) == 1
    statuses = engine.statuses()
    assert sorted(s.value for s in statuses.values()) == ["interrupted"] + ["planned"] * 5
    engine.dispatcher.close()
    other = sqlite_store.claim(
        [s.key for s in sqlite_store.deliveries()],
        owner="next-process",
        now=engine.clock.now(),
        lease_until=engine.clock.now() + dt.timedelta(minutes=1),
    )
    assert len(other.held) == 6  # every claim was given back at once
    assert len(webhook_server.sends) == 1


# --- runs: fast sends to one endpoint, one `sending` write for several -------------------------


class _Held:
    """An executor that keeps the tasks it is given, for the test to run as one run."""

    local = True

    def __init__(self) -> None:
        self.tasks: list[SendTask] = []

    def submit(self, task: SendTask) -> Future[TaskReport]:
        self.tasks.append(task)
        return Future()

    def shutdown(self, wait: bool = True) -> None:
        pass


def _run_engine(make_engine: Any, store: DeliveryLog, **kw: Any) -> tuple[Any, _Held]:
    held = _Held()
    engine = make_engine(store, **kw)
    engine.dispatcher = engine.app.dispatcher(
        store, KEY, clock=engine.clock, heartbeat=False, executor=held
    )
    engine.dispatcher.fire(engine.occurrence())
    return engine, held


def test_a_run_writes_its_attempts_in_one_transaction_and_sends_each_once(
    make_engine: Any, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine, held = _run_engine(make_engine, store, contacts=5)
    writes: list[int] = []
    start = store.start_attempt

    def spy(events: Any, **kw: Any) -> dict[str, int]:
        writes.append(len(events))
        return start(events, **kw)

    store.start_attempt = spy  # type: ignore[method-assign]
    report = engine.dispatcher.execute_run(held.tasks)
    store.flush()  # outcomes are committed without the sender waiting
    assert report.counts == {"accepted": 5}
    assert writes == [5]  # one `sending` write before the first request of the run
    assert len(webhook_server.sends) == 5 and webhook_server.repeated_keys() == {}
    assert {r.lease_owner for r in store.deliveries()} == {None}


def test_a_throttled_answer_ends_a_run_and_what_was_not_sent_is_sent_after_the_wait(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine, held = _run_engine(make_engine, sqlite_store, contacts=5)
    webhook_server.retry_after = "30"
    webhook_server.queue(Mode.OK, Mode.THROTTLED)
    report = engine.dispatcher.execute_run(held.tasks)
    sqlite_store.flush()
    assert report.counts == {"accepted": 5, "deferred": 4}  # 1 throttled, 3 never sent, retried
    # 1 accepted, 1 throttled, then the four others once each: nothing sent twice
    assert len(webhook_server.sends) == 6 and webhook_server.duplicate_sends() == {}
    rows = sqlite_store.deliveries()
    not_sent = [
        r for r in rows if any("未发出 not sent" in e.reason for e in sqlite_store.events(r.key))
    ]
    assert len(not_sent) == 3
    for row in not_sent:
        events = sqlite_store.events(row.key)
        assert [e.status for e in events] == [
            Status.PLANNED,
            Status.SENDING,
            Status.DEFERRED,
            Status.SENDING,
            Status.ACCEPTED,
        ]
        assert (events[3].at - events[2].at).total_seconds() >= 30  # waited for Retry-After
    assert webhook_server.key_counts.most_common(1)[0][1] == 2  # only the throttled one again


def test_stopping_ends_a_run_and_leaves_what_was_not_sent_deferred_not_interrupted(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine, held = _run_engine(make_engine, sqlite_store, contacts=4)
    webhook_server.delay = 0.3
    webhook_server.queue(Mode.SLOW)
    worker = threading.Thread(target=engine.dispatcher.execute_run, args=(held.tasks,))
    worker.start()
    webhook_server.wait_for(1)  # the first request of the run is out
    engine.dispatcher.stopping.set()
    worker.join(10)
    assert not worker.is_alive()
    sqlite_store.flush()
    statuses = sorted(s.value for s in engine.statuses().values())
    assert statuses == ["accepted", "deferred", "deferred", "deferred"]
    assert len(webhook_server.sends) == 1
    for row in sqlite_store.deliveries(status=Status.DEFERRED):
        assert "正在停止 stopping" in row.reason and row.lease_owner is None


def test_quiet_hours_starting_during_a_run_hold_back_the_rest_until_morning(
    make_engine: Any, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """Five SMS at 20:59:59.975, one every 10 ms, quiet from 21:00: three leave."""
    engine, held = _run_engine(
        make_engine,
        sqlite_store,
        contacts=5,
        channel={"rate_limit": "1/0.01s", "quiet_hours": "21:00-08:00"},
        clock=VirtualClock(at(2026, 3, 3, 20, 59, 59) + dt.timedelta(milliseconds=975)),
    )
    engine.dispatcher.execute_run(held.tasks)
    sqlite_store.flush()
    assert len(webhook_server.sends) == 3  # 20:59:59.975, .985 and .995; the fourth is at 21:00
    deferred = sqlite_store.deliveries(status=Status.DEFERRED)
    assert {(d.error_class, d.next_check) for d in deferred} == {
        (ErrorClass.QUIET, at(2026, 3, 4, 8))
    }
    assert len(deferred) == 2
    engine.sweep(at(2026, 3, 4, 8, 0))
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    assert len(webhook_server.sends) == 5 and webhook_server.duplicate_sends() == {}


def test_runs_are_as_long_as_fast_sends_and_the_rate_limit_allow(
    make_engine: Any, sqlite_store: DeliveryLog
) -> None:
    fast = make_engine(sqlite_store).dispatcher
    limited = make_engine(sqlite_store, channel={"rate_limit": "100/1s"}).dispatcher
    task = SendTask("engine", "blast@x", "sms", "e", ("k",))
    assert fast.run_cap(task) == 1  # not timed yet: one task at a time
    fast._call_seconds["sms"] = 0.001
    assert fast.run_cap(task) == Lane.MAX_RUN
    fast._call_seconds["sms"] = 0.01
    assert fast.run_cap(task) == int(RUN_SECONDS / 0.01)
    fast._call_seconds["sms"] = 0.2  # a gateway answering in 200 ms: one at a time
    assert fast.run_cap(task) == 1
    limited._call_seconds["sms"] = 0.001
    assert limited.run_cap(task) == int(100 * RUN_SECONDS)
