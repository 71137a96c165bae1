"""The dispatch path against the real fake gateway: log first, retry what is safe, reconcile the rest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.channel import ErrorClass, Status
from broadcaster.engine.clock import VirtualClock
from broadcaster.engine.dispatch import Dispatcher
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Occurrence, Planner
from tests.engine.helpers import DAY, at, load, numbers, write_engine_campaign
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


class Engine:
    def __init__(self, folder: Path, server: WebhookFake, store: DeliveryLog, **kw: object):
        self.path = write_engine_campaign(folder, server.url, **kw)  # type: ignore[arg-type]
        self.campaign = load(self.path)
        self.clock = VirtualClock(at(2026, 3, 3, 10))
        self.store = store
        self.dispatcher = Dispatcher(
            self.campaign, store, clock=self.clock, hash_key=KEY, state_dir=folder / "var"
        )

    def occurrence(self, rule: str = "blast") -> Occurrence:
        spec = self.campaign.rule(rule)
        return next(Planner(self.campaign).rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4)))

    def statuses(self) -> dict[str, Status]:
        return {s.recipient_display: s.status for s in self.store.deliveries()}

    def close(self) -> None:
        self.dispatcher.close()


@pytest.fixture
def make_engine(tmp_path: Path, webhook_server: WebhookFake) -> Iterator:
    made: list[Engine] = []

    def make(store: DeliveryLog, **kw: object) -> Engine:
        engine = Engine(tmp_path / f"c{len(made)}", webhook_server, store, **kw)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def test_every_delivery_is_logged_before_it_is_sent_and_again_with_its_outcome(
    make_engine, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(store, contacts=5)
    report = engine.dispatcher.fire(engine.occurrence())
    assert report.first_time
    assert dict(report.counts) == {("sms", "accepted"): 5}
    rows = store.deliveries()
    assert len(rows) == 5
    assert {r.status for r in rows} == {Status.ACCEPTED}
    assert sorted(r.recipient_display for r in rows) == [
        "138****0001",
        "138****0002",
        "138****0003",
        "138****0004",
        "138****0005",
    ]
    for row in rows:
        assert [e.status for e in store.events(row.key)] == [
            Status.PLANNED,
            Status.SENDING,
            Status.ACCEPTED,
        ]
        assert row.provider_id and row.provider_id.startswith("biz-")
        assert store.text(row.text_sha256).endswith("如有疑问请拨96110或110。")
    assert set(webhook_server.key_counts) == {r.key for r in rows}
    assert webhook_server.repeated_keys() == {}
    assert [c.targeted for c in store.coverage()] == [5]
    assert [c.accepted for c in store.coverage()] == [5]


def test_firing_again_sends_nothing_twice(
    make_engine, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(store, contacts=4)
    engine.dispatcher.fire(engine.occurrence())
    again = engine.dispatcher.fire(engine.occurrence())
    assert not again.first_time
    assert dict(again.counts) == {("sms", "accepted"): 4}
    assert len(webhook_server.sends) == 4


def test_server_errors_are_retried_with_backoff_in_virtual_time(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=1)
    webhook_server.queue(Mode.HTTP_503, Mode.HTTP_502)
    engine.dispatcher.fire(engine.occurrence())
    [row] = sqlite_store.deliveries()
    assert row.status is Status.ACCEPTED and row.attempt == 3
    events = [(e.status, e.error_class) for e in sqlite_store.events(row.key)]
    assert events == [
        (Status.PLANNED, None),
        (Status.SENDING, None),
        (Status.FAILED, ErrorClass.TRANSIENT),
        (Status.SENDING, None),
        (Status.FAILED, ErrorClass.TRANSIENT),
        (Status.SENDING, None),
        (Status.ACCEPTED, None),
    ]
    assert 1 <= engine.clock.slept < 20  # exponential backoff, never a real wait
    assert len(webhook_server.accepted) == 1


def test_429_retry_after_is_honoured(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=1)
    webhook_server.retry_after = "30"
    webhook_server.queue(Mode.THROTTLED)
    engine.dispatcher.fire(engine.occurrence())
    [row] = sqlite_store.deliveries()
    assert row.status is Status.ACCEPTED
    events = sqlite_store.events(row.key)
    throttled = next(e for e in events if e.error_class is ErrorClass.THROTTLED)
    resent = [e for e in events if e.status is Status.SENDING][1]
    assert (resent.at - throttled.at).total_seconds() >= 30


def test_permanent_failures_are_not_retried(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=2)
    webhook_server.mode = Mode.ERROR_CODE
    engine.dispatcher.fire(engine.occurrence())
    assert {r.status for r in sqlite_store.deliveries()} == {Status.FAILED}
    assert {r.error_class for r in sqlite_store.deliveries()} == {ErrorClass.CONTENT}
    assert len(webhook_server.sends) == 2


def test_an_unknown_outcome_is_reconciled_not_resent(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=3)
    webhook_server.on_request(2, Mode.CLOSE)  # the gateway acts, then the answer is lost
    engine.dispatcher.fire(engine.occurrence())
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    assert webhook_server.repeated_keys() == {}
    lost = next(
        r
        for r in sqlite_store.deliveries()
        if any(e.status is Status.UNKNOWN for e in sqlite_store.events(r.key))
    )
    assert sqlite_store.events(lost.key)[-1].reason == "对账确认 confirmed by reconciling"


def test_without_a_way_to_reconcile_an_unknown_outcome_stays_unknown(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=2, settings={"status_url": None})
    webhook_server.on_request(1, Mode.CLOSE)
    engine.dispatcher.fire(engine.occurrence())
    statuses = sorted(s.value for s in engine.statuses().values())
    assert statuses == ["accepted", "unknown"]
    engine.dispatcher.fire(engine.occurrence())  # a restart does not re-send it either
    assert webhook_server.repeated_keys() == {}
    assert len(webhook_server.sends) == 2


def test_a_disabled_channel_logs_its_deliveries_as_skipped(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake, tmp_path: Path
) -> None:
    path = write_engine_campaign(
        tmp_path / "off", webhook_server.url, contacts=2, channel={"enabled": "auto"}
    )
    campaign = load(path, environ={})
    dispatcher = Dispatcher(
        campaign,
        sqlite_store,
        clock=VirtualClock(at(2026, 3, 3, 10)),
        hash_key=KEY,
        state_dir=tmp_path / "var",
    )
    try:
        occurrence = next(
            Planner(campaign).rule_occurrences(
                campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        dispatcher.fire(occurrence)
    finally:
        dispatcher.close()
    rows = sqlite_store.deliveries()
    assert {(r.status, r.error_class) for r in rows} == {(Status.SKIPPED, ErrorClass.DISABLED)}
    assert rows[0].reason == "缺少环境变量 environment variable TEST_SECRET_TOKEN not set"
    assert webhook_server.sends == []


def test_rate_limit_is_a_strict_sliding_window_per_endpoint(
    make_engine, sqlite_store: DeliveryLog
) -> None:
    engine = make_engine(
        sqlite_store, contacts=12, channel={"rate_limit": "5/60s", "concurrency": 3}
    )
    engine.dispatcher.fire(engine.occurrence())
    assert set(engine.statuses().values()) == {Status.ACCEPTED}
    sends = sorted(
        e.at
        for r in sqlite_store.deliveries()
        for e in sqlite_store.events(r.key)
        if e.status is Status.SENDING
    )
    assert len(sends) == 12
    for i in range(len(sends) - 5):
        assert sends[i + 5] - sends[i] >= dt.timedelta(seconds=60)  # never 6 in one minute
    assert sends[-1] - sends[0] >= dt.timedelta(seconds=120)


def test_quiet_hours_defer_a_send_instead_of_dropping_it(
    make_engine, sqlite_store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    engine = make_engine(sqlite_store, contacts=2, channel={"quiet_hours": "21:00-08:00"})
    engine.clock.set(at(2026, 3, 3, 23, 30))  # a late catch-up lands in quiet hours
    occurrence = engine.occurrence()
    engine.dispatcher.fire(occurrence)
    rows = sqlite_store.deliveries()
    assert {(r.status, r.error_class) for r in rows} == {(Status.PLANNED, ErrorClass.QUIET)}
    assert webhook_server.sends == []
    engine.clock.set(at(2026, 3, 4, 8, 1))
    engine.dispatcher.fire(occurrence)
    assert set(engine.statuses().values()) == {Status.ACCEPTED}


def test_a_full_disk_loses_nothing(
    make_engine, sqlite_store: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    engine = make_engine(sqlite_store)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    engine.dispatcher.fire(engine.occurrence("groups"))
    monkeypatch.undo()
    rows = sqlite_store.deliveries()
    assert {(r.status, r.error_class, r.reason) for r in rows} == {
        (Status.FAILED, ErrorClass.TRANSIENT, "磁盘已满 disk full")
    }
    assert all(sqlite_store.text(r.text_sha256) for r in rows)  # the exact text is kept


def test_idempotency_keys_are_stable_and_reveal_no_number(
    make_engine, sqlite_store: DeliveryLog
) -> None:
    engine = make_engine(sqlite_store, contacts=2)
    first = [d.key for d, _ in engine.dispatcher.prepare(engine.occurrence())]
    second = [d.key for d, _ in engine.dispatcher.prepare(engine.occurrence())]
    assert first == second and len(set(first)) == 2
    assert all(n not in k for k in first for n in numbers(2))


def test_the_exact_text_of_each_delivery_is_what_plan_renders(
    make_engine, sqlite_store: DeliveryLog
) -> None:
    engine = make_engine(sqlite_store, contacts=1)
    occurrence = engine.occurrence()
    [item] = list(engine.dispatcher.planner.expand(occurrence))
    engine.dispatcher.fire(occurrence)
    [row] = sqlite_store.deliveries()
    assert len(sqlite_store.text(row.text_sha256)) == item.length
    assert row.template == item.template
    assert row.scheduled_at == dt.datetime.combine(DAY, dt.time(10), tzinfo=occurrence.at.tzinfo)
