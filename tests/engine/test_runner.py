"""`run`'s core in virtual time: exactly the plan, catch-up within the grace, missed beyond it, resume."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.channel import Status
from broadcaster.engine.clock import VirtualClock
from broadcaster.engine.runner import Runner
from broadcaster.log import DeliveryLog, Event
from broadcaster.model.config import load_campaign
from broadcaster.model.plan import Planner
from tests.conftest import REPO, TZ
from tests.engine.helpers import TOKEN_ENV, at, load, write_engine_campaign
from tests.fakes.webhook_server import Mode, WebhookFake

KEY = b"runner-key"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeliveryLog]:
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    yield log
    log.close()


def make_runner(
    campaign,
    store: DeliveryLog,
    clock: VirtualClock,
    tmp_path: Path,
    grace: dt.timedelta = dt.timedelta(hours=2),
) -> Runner:
    return Runner(
        campaign, store, clock=clock, hash_key=KEY, state_dir=tmp_path / "var", grace=grace
    )


def run_until(runner: Runner, clock: VirtualClock, end: dt.datetime) -> None:
    """What APScheduler does in `run`, in virtual time: wake at each next occurrence and tick."""
    while True:
        wake = runner.next_wake(clock.now())
        if wake is None or wake >= end:
            break
        clock.set(wake)
        runner.tick(wake)


def test_run_fires_exactly_what_plan_lists_over_a_year(tmp_path: Path, store: DeliveryLog) -> None:
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    campaign = load_campaign(tmp_path / "schedules.yaml", today=dt.date(2026, 11, 24), environ={})
    start, end = dt.datetime(2026, 12, 1, tzinfo=TZ), dt.datetime(2027, 12, 1, tzinfo=TZ)
    clock = VirtualClock(start)
    runner = make_runner(campaign, store, clock, tmp_path)
    runner.checked_until = start
    try:
        run_until(runner, clock, end)
    finally:
        runner.dispatcher.close()
    planned = [o.id for o in Planner(campaign).occurrences(start, end)]
    fired = store.occurrence_states(start, end)
    assert len(planned) > 3000
    assert sorted(fired) == sorted(planned)
    assert {s.status for s in fired.values()} == {"done"}
    plan_deliveries = sum(i.recipients for i in Planner(campaign).items(start, end, render=False))
    assert len(store.deliveries(since=start, until=end)) == plan_deliveries


def test_catch_up_within_the_grace_and_missed_beyond_it(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    rules = [
        {
            "id": "hourly",
            "channels": ["handoff"],
            "targets": {"tags": ["group"]},
            "when": {"daily": True, "at": "08:00", "repeat": {"every": "1h", "until": "20:00"}},
        }
    ]
    campaign = load(write_engine_campaign(tmp_path, webhook_server.url, rules=rules))
    clock = VirtualClock(at(2026, 3, 3, 7, 59))
    runner = make_runner(campaign, store, clock, tmp_path)
    runner.checked_until = clock.now()
    run_until(runner, clock, at(2026, 3, 3, 10, 30))  # fires 08:00, 09:00, 10:00, then "goes down"
    runner.dispatcher.close()
    # back at 15:30 with a 2 h grace: 11:00-13:00 are missed, 14:00 and 15:00 are caught up
    clock.set(at(2026, 3, 3, 15, 30))
    restarted = make_runner(campaign, store, clock, tmp_path)
    restarted.checked_until = restarted.start_point(clock.now())
    assert restarted.checked_until == at(2026, 3, 3, 10)
    restarted.tick(clock.now())
    restarted.dispatcher.close()
    states = store.occurrence_states(at(2026, 3, 3), at(2026, 3, 4))
    by_hour = {dt.datetime.fromisoformat(k.split("@")[1]).hour: s for k, s in states.items()}
    assert {h: s.status for h, s in by_hour.items()} == {
        8: "done",
        9: "done",
        10: "done",
        11: "missed",
        12: "missed",
        13: "missed",
        14: "done",
        15: "done",
    }
    assert "beyond the grace of 2:00:00" in by_hour[11].reason
    assert by_hour[14].reason.startswith("补发 caught up 1:30:00 late")


def test_a_restart_never_resends_and_resumes_what_was_interrupted(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    campaign = load(write_engine_campaign(tmp_path, webhook_server.url, contacts=6))
    clock = VirtualClock(at(2026, 3, 3, 10))
    runner = make_runner(campaign, store, clock, tmp_path)
    occurrence = next(
        Planner(campaign).rule_occurrences(campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4))
    )
    # an earlier process planned six deliveries, was sending two (the gateway got one), then died
    pairs = runner.dispatcher.prepare(occurrence)
    store.begin_occurrence(occurrence.id, occurrence.rule_id, occurrence.at, clock.now())
    store.add_deliveries([r for _, r in pairs], clock.now())
    (d1, _), (d2, _) = pairs[0], pairs[1]
    store.append(
        [
            Event(d1.key, Status.SENDING, clock.now(), attempt=1),
            Event(d2.key, Status.SENDING, clock.now(), attempt=1),
        ]
    )
    runner.dispatcher.channel("sms").send([d1])  # reached the gateway; the answer was never logged
    assert len(webhook_server.sends) == 1
    runner.sweep()  # right after the crash: the four planned go, the two cut off wait to settle
    assert len(webhook_server.sends) == 5
    assert [e.status for e in store.events(d1.key)] == [Status.PLANNED, Status.SENDING]
    # past the webhook's settle time (2 + 2 + 2 s)
    clock.set(clock.now() + dt.timedelta(seconds=10))
    resumed = runner.sweep()
    runner.dispatcher.close()
    assert resumed == 2
    assert {s.status for s in store.deliveries()} == {Status.ACCEPTED}
    assert webhook_server.repeated_keys() == {}
    assert len(webhook_server.sends) == 6
    assert [e.status for e in store.events(d1.key)] == [
        Status.PLANNED,
        Status.SENDING,
        Status.INTERRUPTED,
        Status.ACCEPTED,
    ]
    assert [e.status for e in store.events(d2.key)][:3] == [
        Status.PLANNED,
        Status.SENDING,
        Status.INTERRUPTED,
    ]


def test_a_failing_tick_is_logged_and_the_next_one_works(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(at(2026, 3, 3, 9, 59))
    runner = make_runner(campaign, store, clock, tmp_path)
    runner.checked_until = clock.now()
    real_fire = runner.dispatcher.fire
    monkeypatch.setattr(
        runner.dispatcher, "fire", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    clock.set(at(2026, 3, 3, 10))
    assert runner.tick(clock.now()) == []
    assert any(kind == "error" and "boom" in text for _, kind, text in runner.activity.lines)
    monkeypatch.setattr(runner.dispatcher, "fire", real_fire)
    reports = runner.tick(clock.now())  # the failed occurrences are tried again
    runner.dispatcher.close()
    assert sorted(r.occurrence_id for r in reports) == [
        "blast@2026-03-03T10:00",
        "groups@2026-03-03T10:00",
    ]


def test_an_occurrence_that_keeps_failing_is_logged_and_blocks_nothing(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(at(2026, 3, 3, 9, 59))
    runner = make_runner(campaign, store, clock, tmp_path)
    runner.checked_until = clock.now()
    real_fire = runner.dispatcher.fire

    def fire(occurrence, **kw):
        if occurrence.rule_id == "blast":
            raise RuntimeError("template broke")
        return real_fire(occurrence, **kw)

    monkeypatch.setattr(runner.dispatcher, "fire", fire)
    clock.set(at(2026, 3, 3, 10))
    assert [r.occurrence_id for r in runner.tick(clock.now())] == ["groups@2026-03-03T10:00"]
    for minute in (1, 2):
        clock.set(at(2026, 3, 3, 10, minute))
        assert runner.tick(clock.now()) == []
    runner.dispatcher.close()
    states = store.occurrence_states(at(2026, 3, 3), at(2026, 3, 4))
    assert states["groups@2026-03-03T10:00"].status == "done"
    assert states["blast@2026-03-03T10:00"].status == "failed"
    assert (
        states["blast@2026-03-03T10:00"].reason == "触发失败 failed to fire 3 times: template broke"
    )


def test_an_invalid_edit_is_refused_and_a_valid_one_applied(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url)
    campaign = load(path)
    clock = VirtualClock(at(2026, 3, 3, 9))
    runner = Runner(
        campaign,
        store,
        clock=clock,
        hash_key=KEY,
        state_dir=tmp_path / "var",
        environ=TOKEN_ENV,
    )
    good = path.read_text(encoding="utf-8")
    assert '"weekdays"' in good
    path.write_text(good.replace('"weekdays"', '"wekdays"'), encoding="utf-8")
    _touch(path)
    assert runner.reload_if_changed() is False
    assert runner.campaign is campaign
    assert any(
        "edit refused" in text and "did you mean 'weekdays'?" in text
        for _, _, text in runner.activity.lines
    )
    edited = good.replace('"tue",', '"mon", "tue",', 1)
    assert edited != good
    path.write_text(edited, encoding="utf-8")
    _touch(path)
    assert runner.reload_if_changed() is True
    assert runner.campaign.rule("groups").rule.when.weekdays == ["mon", "tue", "fri"]
    assert runner.reload_if_changed() is None
    runner.dispatcher.close()


def test_the_scheduler_survives_a_raising_job(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """With real APScheduler: a job that raises is reported and the scheduler keeps its wake job."""
    campaign = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(dt.datetime.now(TZ))
    runner = make_runner(campaign, store, clock, tmp_path)
    runner.start()
    try:
        assert runner.healthy()
        runner.scheduler.add_job(lambda: 1 / 0, id="bad")  # type: ignore[union-attr]
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while not any("ZeroDivisionError" in text for _, _, text in runner.activity.lines):
            assert dt.datetime.now() < deadline
            runner.stopped.wait(0.05)
        assert runner.healthy()
    finally:
        runner.stop(timeout=5)


def _touch(path: Path) -> None:
    import os

    stat = path.stat()
    os.utime(path, (stat.st_atime + 10, stat.st_mtime + 10))


def test_unknown_outcomes_are_reconciled_by_the_sweep(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    campaign = load(
        write_engine_campaign(
            tmp_path, webhook_server.url, contacts=2, settings={"status_url": None}
        )
    )
    clock = VirtualClock(at(2026, 3, 3, 10))
    runner = make_runner(campaign, store, clock, tmp_path)
    webhook_server.on_request(1, Mode.CLOSE)
    occurrence = next(
        Planner(campaign).rule_occurrences(campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4))
    )
    runner.dispatcher.fire(occurrence)
    assert sorted(s.status.value for s in store.deliveries()) == ["accepted", "unknown"]
    runner.sweep()  # still no way to reconcile: it stays unknown and is not re-sent
    runner.dispatcher.close()
    assert sorted(s.status.value for s in store.deliveries()) == ["accepted", "unknown"]
    assert webhook_server.repeated_keys() == {}


def test_a_one_off_send_held_by_quiet_hours_is_finished_by_the_sweep(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    from broadcaster.model.adhoc import AdHoc

    campaign = load(
        write_engine_campaign(
            tmp_path,
            webhook_server.url,
            contacts=3,
            channel={"quiet_hours": "21:00-08:00", "max_length": 200},
        )
    )
    clock = VirtualClock(at(2026, 3, 3, 23, 10))
    runner = make_runner(campaign, store, clock, tmp_path)
    adhoc = AdHoc(
        "alert",
        ("sms",),
        ("people",),
        template="alert",
        vars={"alert_text": "近期有人冒充快递员以理赔为名行骗"},
    )
    occurrence = adhoc.occurrence(clock.now().astimezone(TZ))
    runner.dispatcher.fire(
        occurrence,
        rule=adhoc.spec(campaign, occurrence.at),
        extra_vars=adhoc.vars,
        fired_note=adhoc.note(),
    )
    assert {s.status for s in store.deliveries()} == {Status.PLANNED}
    assert webhook_server.sends == []
    clock.set(at(2026, 3, 4, 8, 0))
    assert runner.sweep() == 3
    runner.dispatcher.close()
    assert {s.status for s in store.deliveries()} == {Status.ACCEPTED}
    assert all(
        "近期有人冒充快递员以理赔为名行骗" in store.text(s.text_sha256) for s in store.deliveries()
    )
    assert len(webhook_server.sends) == 3


def test_outcomes_that_arrive_later_are_collected_by_the_sweep(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """A channel with late outcomes (receipts, a person's confirmation) is asked about what is
    still only accepted; what it confirms becomes delivered, the rest waits."""
    import dataclasses

    from broadcaster.channel import Result
    from broadcaster.channels.outbox import OutboxChannel

    confirmed: set[str] = set()

    class ReceiptOutbox(OutboxChannel):
        def reconcile(self, pending):  # type: ignore[no-untyped-def]
            assert all(d.provider_id for d in pending)  # what the provider answered at send time
            return [
                Result(d.key, Status.DELIVERED, reason="DELIVRD", provider_id=d.provider_id)
                for d in pending
                if d.key in confirmed
            ]

    campaign = load(write_engine_campaign(tmp_path, webhook_server.url))
    handoff = campaign.channels["handoff"]
    campaign.channels["handoff"] = dataclasses.replace(
        handoff,
        plugin=ReceiptOutbox,
        capabilities=dataclasses.replace(handoff.capabilities, late_outcomes=True),
    )
    clock = VirtualClock(at(2026, 3, 3, 10))
    runner = make_runner(campaign, store, clock, tmp_path)
    occurrence = next(
        Planner(campaign).rule_occurrences(campaign.rule("groups"), at(2026, 3, 3), at(2026, 3, 4))
    )
    runner.dispatcher.fire(occurrence)
    first, second = sorted(store.deliveries(), key=lambda s: s.target_id)
    confirmed.add(first.key)
    clock.set(at(2026, 3, 3, 10, 5))
    assert runner.collect_late_outcomes() == 1
    runner.dispatcher.close()
    assert store.latest([first.key])[first.key].status is Status.DELIVERED
    assert store.latest([second.key])[second.key].status is Status.ACCEPTED
    [coverage] = store.coverage()
    assert (coverage.targeted, coverage.accepted, coverage.delivered) == (2, 2, 1)
