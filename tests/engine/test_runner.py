"""`run`'s core in virtual time: exactly the plan, never late behind a slow fan-out, one
scheduler per campaign, catch-up within the grace and missed beyond it, resume."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.channel import Result
from broadcaster.channels.outbox import OutboxChannel
from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock, VirtualClock
from broadcaster.engine.runner import Runner
from broadcaster.log import DeliveryLog, Event
from broadcaster.model.adhoc import AdHoc
from broadcaster.model.plan import Planner
from broadcaster.vocab import ErrorClass, QuietHours, Status
from tests.conftest import REPO, TZ
from tests.engine.helpers import DAY, at, load, write_engine_campaign
from tests.fakes.webhook_server import Mode, WebhookFake

KEY = b"runner-key"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeliveryLog]:
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    yield log
    log.close()


def make_runner(
    app: App,
    store: DeliveryLog,
    clock: Any,
    grace: dt.timedelta = dt.timedelta(hours=2),
) -> Runner:
    return app.runner(store, KEY, clock=clock, grace=grace)


def run_until(runner: Runner, clock: VirtualClock, end: dt.datetime) -> None:
    """What APScheduler does in `run`, in virtual time: wake at each next occurrence and tick."""
    while True:
        wake = runner.next_wake(clock.now())
        if wake is None or wake >= end:
            break
        clock.set(wake)
        for handle in runner.tick(wake):
            handle.wait()
    runner.finish(wait=True)


def blast(app: App) -> Any:
    return next(
        Planner(app.campaign).rule_occurrences(
            app.campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
        )
    )


def test_run_fires_exactly_what_plan_lists_over_a_year(tmp_path: Path, store: DeliveryLog) -> None:
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    app = App.load(
        tmp_path / "schedules.yaml", now=dt.datetime(2026, 11, 24, tzinfo=TZ), environ={}
    )
    start, end = dt.datetime(2026, 12, 1, tzinfo=TZ), dt.datetime(2027, 12, 1, tzinfo=TZ)
    clock = VirtualClock(start)
    runner = make_runner(app, store, clock)
    runner.checked_until = start
    try:
        run_until(runner, clock, end)
    finally:
        runner.close()
    planned = [o.id for o in Planner(app.campaign).occurrences(start, end)]
    fired = store.occurrence_states(app.campaign.id, start, end)
    assert len(planned) > 3000
    assert sorted(fired) == sorted(planned)
    assert {s.status for s in fired.values()} == {"done"}
    items = Planner(app.campaign).items(start, end, render=False)
    assert len(store.deliveries(since=start, until=end)) == sum(i.recipients for i in items)


def test_firing_never_waits_for_a_slow_fan_out(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """A 10:00 fan-out to 10,000 numbers at 10 a second takes 17 minutes: rules at 10:02 and
    10:05 fire at 10:02 and 10:05, and nothing is recorded missed."""
    rules = [
        {
            "id": "blast",
            "channels": ["sms"],
            "targets": {"tags": ["sms_list"]},
            "when": {"dates": [DAY.isoformat()], "at": "10:00"},
        },
        {
            "id": "r1002",
            "channels": ["handoff"],
            "targets": {"tags": ["group"]},
            "when": {"dates": [DAY.isoformat()], "at": "10:02"},
        },
        {
            "id": "r1005",
            "channels": ["handoff"],
            "targets": {"tags": ["group"]},
            "when": {"dates": [DAY.isoformat()], "at": "10:05"},
        },
    ]
    app = load(
        write_engine_campaign(
            tmp_path,
            webhook_server.url,
            contacts=10_000,
            rules=rules,
            channel={"rate_limit": "10/1s", "concurrency": 4},
        )
    )
    clock = ManualClock(at(2026, 3, 3, 10))
    runner = make_runner(app, store, clock)
    runner.checked_until = at(2026, 3, 3, 9, 59)
    try:
        [fan_out] = runner.tick()  # returns while the fan-out is still being sent
        for minute in (2, 5):
            clock.set(at(2026, 3, 3, 10, minute))
            fired = runner.tick()
            assert [h.occurrence.id for h in fired] == [
                f"r10{minute:02d}@2026-03-03T10:{minute:02d}"
            ]
            fired[0].wait()
            runner.finish()
        states = store.occurrence_states(app.campaign.id, at(2026, 3, 3), at(2026, 3, 4))
        assert {
            k: (s.status, s.scheduled_at) for k, s in states.items() if k != fan_out.occurrence.id
        } == {
            "r1002@2026-03-03T10:02": ("done", at(2026, 3, 3, 10, 2)),
            "r1005@2026-03-03T10:05": ("done", at(2026, 3, 3, 10, 5)),
        }
        assert states[fan_out.occurrence.id].status == "fired"  # still sending
        assert not fan_out.done()
        assert len(webhook_server.sends) <= 10 * 5 * 60 + 10  # never faster than the limit
    finally:
        runner.stop(timeout=1)
        runner.close()
    assert webhook_server.duplicate_sends() == {}


def test_two_campaigns_share_one_log_and_both_fire(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """A county and a township with the same rule ids, one log: each fires its own."""
    apps = []
    for name in ("county", "township"):
        path = write_engine_campaign(tmp_path / name, webhook_server.url, contacts=2)
        config = json.loads(path.read_text(encoding="utf-8"))
        config["campaign"]["id"] = name
        path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        apps.append(load(path))
    clock = VirtualClock(at(2026, 3, 3, 10))
    for app in apps:
        runner = make_runner(app, store, clock)
        runner.checked_until = at(2026, 3, 3, 9, 59)
        for handle in runner.tick():
            handle.wait()
        runner.finish(wait=True)
        runner.close()
    for app in apps:
        states = store.occurrence_states(app.campaign.id, at(2026, 3, 3), at(2026, 3, 4))
        assert {s.status for s in states.values()} == {"done"}
        assert sorted(states) == ["blast@2026-03-03T10:00", "groups@2026-03-03T10:00"]
        assert len(store.deliveries(campaign=app.campaign.id, channel="sms")) == 2
    assert len(webhook_server.sends) == 4


def test_only_one_runner_schedules_and_a_standby_takes_over(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(at(2026, 3, 3, 10))
    first, second = make_runner(app, store, clock), make_runner(app, store, clock)
    first.checked_until = second.checked_until = at(2026, 3, 3, 9, 59)
    assert [h.occurrence.id for h in first.tick()] == [
        "blast@2026-03-03T10:00",
        "groups@2026-03-03T10:00",
    ]
    assert second.tick() == []  # stands by
    assert not second.leader and "stands by" in second.standby_reason
    assert f"pid {os.getpid()}" in second.standby_reason
    first.finish(wait=True)
    first.close()  # gives the lease back: the standby takes over at once
    assert second.claim_leadership()
    assert second.tick(at(2026, 3, 3, 10, 1)) == []  # nothing fires twice
    second.close()
    assert len(webhook_server.sends) == 3


def test_a_dead_leader_is_replaced_within_the_lease(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(at(2026, 3, 3, 9))
    dead, standby = make_runner(app, store, clock), make_runner(app, store, clock)
    assert dead.claim_leadership() and not standby.claim_leadership()
    clock.set(at(2026, 3, 3, 9) + dt.timedelta(seconds=dead.lease - 1))
    assert not standby.claim_leadership()
    clock.set(at(2026, 3, 3, 9) + dt.timedelta(seconds=dead.lease + 1))
    assert standby.claim_leadership()  # the first never renewed: it died
    assert not dead.claim_leadership() and not dead.leader
    dead.dispatcher.close()
    standby.close()


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
    app = load(write_engine_campaign(tmp_path, webhook_server.url, rules=rules))
    clock = VirtualClock(at(2026, 3, 3, 7, 59))
    runner = make_runner(app, store, clock)
    runner.checked_until = clock.now()
    run_until(runner, clock, at(2026, 3, 3, 10, 30))  # fires 08:00, 09:00, 10:00, then "goes down"
    runner.close()
    # back at 15:30 with a 2 h grace: 11:00-13:00 are missed, 14:00 and 15:00 are caught up
    clock.set(at(2026, 3, 3, 15, 30))
    restarted = make_runner(app, store, clock)
    assert restarted.start_point(clock.now()) == at(2026, 3, 3, 10)
    restarted.recover()  # the sweep, then a tick from the last occurrence in the log
    said = [text for _, kind, text in restarted.activity.lines if kind == "start"]
    assert said == ["从 2026-03-03 10:00 补查 catching up since the last occurrence in the log"]
    restarted.finish(wait=True)
    restarted.close()
    states = store.occurrence_states(app.campaign.id, at(2026, 3, 3), at(2026, 3, 4))
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
    assert by_hour[14].reason.startswith("补发 caught up 1 小时 30 分 1 h 30 min late")


def test_a_restart_never_resends_and_resumes_what_was_interrupted(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    app = load(write_engine_campaign(tmp_path, webhook_server.url, contacts=6))
    clock = VirtualClock(at(2026, 3, 3, 10))
    occurrence = blast(app)
    # an earlier process planned six deliveries, was sending two (the gateway got one), then died
    earlier = app.dispatcher(store, KEY, clock=clock, owner="dead-process", heartbeat=False)
    prepared = list(earlier.preparer.prepare(occurrence))
    store.begin_occurrence(
        app.campaign.id, occurrence.id, occurrence.rule_id, occurrence.at, clock.now()
    )
    store.add_deliveries(
        [p.record for p in prepared],
        clock.now(),
        owner="dead-process",
        lease_until=clock.now() + dt.timedelta(seconds=60),
    )
    d1, d2 = prepared[0].delivery, prepared[1].delivery
    settle = clock.now() + dt.timedelta(seconds=6)
    store.start_attempt(
        [Event(d.key, Status.SENDING, clock.now(), next_check=settle) for d in (d1, d2)],
        owner="dead-process",
        lease_until=clock.now() + dt.timedelta(seconds=60),
    )
    earlier.channel("sms").send([d1])  # reached the gateway; the answer was never logged
    earlier.close()
    store.acquire_lease(  # and it held the scheduler lease
        f"scheduler:{app.campaign.id}",
        "dead-process",
        now=clock.now(),
        until=clock.now() + dt.timedelta(seconds=60),
        info="{}",
    )
    assert len(webhook_server.sends) == 1

    runner = make_runner(app, store, clock)
    assert runner.sweep() == 0  # a standby: the dead one's leases have not run out yet
    clock.set(at(2026, 3, 3, 10, 0, 5))
    assert not runner.claim_leadership()
    clock.set(at(2026, 3, 3, 10, 1, 1))  # past the lease and the webhook's settle (2 + 2 + 2 s)
    assert runner.claim_leadership()
    runner.recover()
    runner.finish(wait=True)
    runner.close()
    assert {s.status for s in store.deliveries()} == {Status.ACCEPTED}
    assert webhook_server.duplicate_sends() == {}
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
    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(at(2026, 3, 3, 9, 59))
    runner = make_runner(app, store, clock)
    runner.checked_until = clock.now()
    real_fire = runner.dispatcher.fire
    monkeypatch.setattr(
        runner.dispatcher, "fire", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    clock.set(at(2026, 3, 3, 10))
    assert runner.tick(clock.now()) == []
    assert any(kind == "error" and "boom" in text for _, kind, text in runner.activity.lines)
    monkeypatch.setattr(runner.dispatcher, "fire", real_fire)
    handles = runner.tick(clock.now())  # the failed occurrences are tried again
    runner.finish(wait=True)
    runner.close()
    assert sorted(h.occurrence.id for h in handles) == [
        "blast@2026-03-03T10:00",
        "groups@2026-03-03T10:00",
    ]


def test_an_occurrence_that_keeps_failing_is_logged_and_blocks_nothing(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(at(2026, 3, 3, 9, 59))
    runner = make_runner(app, store, clock)
    runner.checked_until = clock.now()
    real_fire = runner.dispatcher.fire

    def fire(occurrence: Any, **kw: Any) -> Any:
        if occurrence.rule_id == "blast":
            raise RuntimeError("template broke")
        return real_fire(occurrence, **kw)

    monkeypatch.setattr(runner.dispatcher, "fire", fire)
    clock.set(at(2026, 3, 3, 10))
    assert [h.occurrence.id for h in runner.tick(clock.now())] == ["groups@2026-03-03T10:00"]
    for minute in (1, 2):
        clock.set(at(2026, 3, 3, 10, minute))
        assert runner.tick(clock.now()) == []
    runner.finish(wait=True)
    runner.close()
    states = store.occurrence_states(app.campaign.id, at(2026, 3, 3), at(2026, 3, 4))
    assert states["groups@2026-03-03T10:00"].status == "done"
    assert states["blast@2026-03-03T10:00"].status == "failed"
    assert (
        states["blast@2026-03-03T10:00"].reason == "触发失败 failed to fire 3 times: template broke"
    )


def test_an_invalid_edit_is_refused_and_a_valid_one_applied(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url)
    app = load(path)
    clock = VirtualClock(at(2026, 3, 3, 9))
    runner = make_runner(app, store, clock)
    good = path.read_text(encoding="utf-8")
    assert '"weekdays"' in good
    path.write_text(good.replace('"weekdays"', '"wekdays"'), encoding="utf-8")
    _touch(path)
    assert runner.reload_if_changed() is False
    assert runner.app is app
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
    people = tmp_path / "people.csv"  # a contact list is watched like the YAML
    people.write_text(people.read_text(encoding="utf-8") + "P9,13800009999\n", encoding="utf-8")
    _touch(people)
    assert runner.reload_if_changed() is True
    assert len(runner.campaign.targets["people"].contacts) == 4
    runner.close()


def test_the_scheduler_survives_a_raising_job(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """With real APScheduler: a job that raises is reported and the scheduler keeps its wake job."""
    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    clock = VirtualClock(dt.datetime.now(TZ))
    runner = make_runner(app, store, clock)
    assert runner.step()  # takes the lead, recovers, starts APScheduler
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
        runner.close()


def test_a_dead_log_writer_stops_the_runner(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    from broadcaster.errors import LogWriterDeadError

    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    runner = make_runner(app, store, VirtualClock(at(2026, 3, 3, 9)))
    assert runner.claim_leadership()
    store._writer._dead = LogWriterDeadError("日志写入线程已停止 the delivery log's writer stopped")
    with pytest.raises(LogWriterDeadError):
        runner.step()
    store._writer._dead = None
    runner.close()


def _touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime + 10, stat.st_mtime + 10))


def test_a_one_off_send_held_by_quiet_hours_is_finished_by_the_sweep(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    app = load(
        write_engine_campaign(
            tmp_path,
            webhook_server.url,
            contacts=3,
            channel={"quiet_hours": "21:00-08:00", "max_length": 200},
        )
    )
    clock = VirtualClock(at(2026, 3, 3, 23, 10))
    runner = make_runner(app, store, clock)
    assert runner.claim_leadership()
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
        rule=adhoc.spec(app.campaign, occurrence.at),
        extra_vars=adhoc.vars,
        fired_note=adhoc.note(),
    ).wait()
    assert {s.status for s in store.deliveries()} == {Status.DEFERRED}
    assert webhook_server.sends == []
    clock.set(at(2026, 3, 4, 8, 0))
    assert runner.sweep() == 3
    runner.close()
    assert {s.status for s in store.deliveries()} == {Status.ACCEPTED}
    assert all(
        "近期有人冒充快递员以理赔为名行骗" in store.text(s.text_sha256) for s in store.deliveries()
    )
    assert len(webhook_server.sends) == 3


def test_outcomes_that_arrive_later_are_collected_until_the_window_ends(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    """A channel with late outcomes (receipts, a person's confirmation) is asked about what is
    still only accepted; what it confirms becomes delivered; after its window, no more asking."""
    confirmed: set[str] = set()
    asked: list[str] = []

    class ReceiptOutbox(OutboxChannel):
        def reconcile(self, pending):  # type: ignore[no-untyped-def]
            assert all(d.provider_id for d in pending)  # what the provider answered at send time
            asked.extend(d.key for d in pending)
            return [
                Result(d.key, Status.DELIVERED, reason="DELIVRD", provider_id=d.provider_id)
                for d in pending
                if d.key in confirmed
            ]

    app = load(write_engine_campaign(tmp_path, webhook_server.url))
    handoff = app.channels["handoff"]
    app.channels["handoff"] = dataclasses.replace(
        handoff,
        plugin=ReceiptOutbox,
        capabilities=dataclasses.replace(
            handoff.capabilities, outcome_window=3600, outcome_poll=300
        ),
    )
    clock = VirtualClock(at(2026, 3, 3, 10))
    runner = make_runner(app, store, clock)
    assert runner.claim_leadership()
    occurrence = next(
        Planner(app.campaign).rule_occurrences(
            app.campaign.rule("groups"), at(2026, 3, 3), at(2026, 3, 4)
        )
    )
    runner.dispatcher.fire(occurrence).wait()
    first, second = sorted(store.deliveries(), key=lambda s: s.target_id)
    confirmed.add(first.key)
    clock.set(at(2026, 3, 3, 10, 4))
    assert runner.sweep() == 0  # not asked before the poll interval
    clock.set(at(2026, 3, 3, 10, 6))
    assert runner.sweep() == 2
    assert store.latest([first.key])[first.key].status is Status.DELIVERED
    assert store.latest([second.key])[second.key].status is Status.ACCEPTED
    clock.set(at(2026, 3, 3, 11, 30))  # past the window: asked one last time, then no more
    runner.sweep()
    asked.clear()
    clock.set(at(2026, 3, 3, 13))
    assert runner.sweep() == 0 and asked == []
    runner.close()
    [coverage] = store.coverage()
    assert (coverage.targeted, coverage.accepted, coverage.delivered) == (2, 2, 1)


def test_deliveries_whose_rule_left_the_config_are_still_finished(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url, contacts=2)
    app = load(path)
    clock = VirtualClock(at(2026, 3, 3, 23, 30))  # quiet hours: the sends wait for 08:00
    app.channels["sms"] = dataclasses.replace(
        app.channels["sms"],
        capabilities=dataclasses.replace(
            app.channels["sms"].capabilities,
            quiet_hours=QuietHours.parse("21:00-08:00"),
        ),
    )
    runner = make_runner(app, store, clock)
    assert runner.claim_leadership()
    runner.dispatcher.fire(blast(app)).wait()
    assert {s.status for s in store.deliveries()} == {Status.DEFERRED}
    runner.close()
    people = tmp_path / "people.csv"  # the list is emptied before the morning
    people.write_text("name,phone\n", encoding="utf-8")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["rules"] = [r for r in config["rules"] if r["id"] != "blast"]
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    later = load(path)
    clock.set(at(2026, 3, 4, 8, 1))
    restarted = make_runner(later, store, clock)
    assert restarted.claim_leadership()
    restarted.sweep()
    restarted.close()
    rows = store.deliveries(channel="sms")
    assert {(r.status, r.error_class) for r in rows} == {(Status.SKIPPED, ErrorClass.REMOVED)}
    assert all(r.next_check is None for r in rows)  # never looked at again
    assert webhook_server.sends == []


def test_unknown_outcomes_without_a_way_to_reconcile_go_to_an_operator(
    tmp_path: Path, store: DeliveryLog, webhook_server: WebhookFake
) -> None:
    app = load(
        write_engine_campaign(
            tmp_path, webhook_server.url, contacts=2, settings={"status_url": None}
        )
    )
    clock = VirtualClock(at(2026, 3, 3, 10))
    runner = make_runner(app, store, clock)
    assert runner.claim_leadership()
    webhook_server.on_request(1, Mode.CLOSE)
    runner.dispatcher.fire(blast(app)).wait()
    assert sorted(s.status.value for s in store.deliveries()) == ["accepted", "unknown"]
    runner.sweep()  # inside the settle time: nothing yet
    assert sorted(s.status.value for s in store.deliveries()) == ["accepted", "unknown"]
    clock.set(at(2026, 3, 3, 10, 1))
    runner.sweep()
    runner.close()
    assert sorted(s.status.value for s in store.deliveries()) == ["accepted", "unresolved"]
    assert webhook_server.repeated_keys() == {}
