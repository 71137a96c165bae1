"""The three bot channels through the real dispatch path: log, shared limits, resends.

Several rules fire at once onto the same groups' bots, with long messages split into
parts, on a virtual clock that the fakes read too: every bot's limit holds without a
single refusal, every part arrives whole and in order, a removed bot fails once and
is never tried again, a lost answer is re-sent at most once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.engine.app import App
from broadcaster.engine.clock import VirtualClock
from broadcaster.engine.recovery import Recovery
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import ErrorClass, Status
from tests.fakes.dingtalk import DingTalkFake
from tests.fakes.feishu import FeishuFake
from tests.fakes.group_bot import BotFake, Mode
from tests.fakes.wecom import WeComFake

from .group_bot_campaign import DAY, GROUPS, at, bot_environ, write_bot_campaign

KEY = b"bots-test-key"
PART = re.compile(r"^\((\d+)/(\d+)\) ")


class Bots:
    """The three fakes, their bots, the campaign and its dispatcher on one virtual clock."""

    def __init__(self, folder: Path, store: DeliveryLog, **kw: Any) -> None:
        self.clock = VirtualClock(at(10))
        now = self.clock.now
        self.wecom = WeComFake(lambda: now().timestamp())
        self.ding = DingTalkFake(lambda: now().timestamp())
        self.feishu = FeishuFake(lambda: now().timestamp())
        self.fakes: list[BotFake] = [self.wecom, self.ding, self.feishu]
        for fake in self.fakes:
            fake.start()
        env = bot_environ()
        for n in range(1, GROUPS + 1):
            self.wecom.add_bot(env[f"WECOM_G{n}"])
            self.ding.add_bot(
                env[f"DING_G{n}"], secret=env[f"DING_SECRET_G{n}"], keywords=("提醒",)
            )
            self.feishu.add_bot(env[f"FEISHU_G{n}"], secret=env[f"FEISHU_SECRET_G{n}"])
        path = write_bot_campaign(
            folder, wecom=self.wecom.url, dingtalk=self.ding.url, feishu=self.feishu.url, **kw
        )
        self.app = App.load(path, now=at(9), environ=env, state_dir=folder / "var")
        self.store = store
        self.dispatcher = self.app.dispatcher(store, KEY, clock=self.clock, heartbeat=False)
        self.recovery = Recovery(self.dispatcher)

    def fire_all(self) -> None:
        planner = Planner(self.app.campaign)
        start = dt.datetime.combine(DAY, dt.time(), tzinfo=at(0).tzinfo)
        handles = [
            self.dispatcher.fire(o)
            for spec in self.app.campaign.rules
            for o in planner.rule_occurrences(spec, start, start + dt.timedelta(days=1))
        ]
        for handle in handles:
            handle.wait()

    def sweep(self, when: dt.datetime) -> None:
        self.clock.set(when)
        self.recovery.sweep().wait()

    def close(self) -> None:
        self.dispatcher.close()
        for fake in self.fakes:
            fake.stop()
        errors = [e for fake in self.fakes for e in fake.errors]
        assert errors == []


@pytest.fixture
def make_bots(tmp_path: Path) -> Iterator[Any]:
    made: list[Bots] = []

    def make(store: DeliveryLog, **kw: Any) -> Bots:
        bots = Bots(tmp_path / f"c{len(made)}", store, **kw)
        made.append(bots)
        return bots

    yield make
    for bots in made:
        bots.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeliveryLog]:
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    yield log
    log.close()


def runs(messages: list[str]) -> list[int]:
    """The part counts of the whole messages a bot received, each part in order; fails on a
    part out of place."""
    out, expected, total = [], 1, 0
    for text in messages:
        m = PART.match(text)
        assert m is not None, text[:40]
        i, n = int(m.group(1)), int(m.group(2))
        assert i == expected and (i == 1 or n == total), (i, n, expected)
        expected, total = (1, 0) if i == n else (i + 1, n)
        if i == n:
            out.append(n)
    assert expected == 1, "a message stopped in the middle"
    return out


def test_a_burst_onto_the_same_bots_keeps_every_limit_and_every_part_in_order(
    make_bots: Any, store: DeliveryLog
) -> None:
    """4 rules × 6 groups at 10:00; WeCom through two channel instances: 24 posts per
    WeCom bot (20 a minute allowed), 24 per DingTalk robot (20, then a 10-minute block),
    Feishu 5 a second."""
    bots = make_bots(store)
    bots.fire_all()
    rows = store.deliveries()
    assert len(rows) == 4 * 4 * GROUPS
    assert {(r.status, r.error_class) for r in rows} == {(Status.ACCEPTED, None)}
    for fake in bots.fakes:
        assert (fake.rate_refusals, dict(fake.refused)) == (0, {}), type(fake).__name__
    env = bot_environ()
    for n in range(1, GROUPS + 1):
        wecom = [m["content"] for m in bots.wecom.accepted[env[f"WECOM_G{n}"]]]
        ding = [m["text"] for m in bots.ding.accepted[env[f"DING_G{n}"]]]
        feishu = [
            "".join(e["text"] for line in m["post"]["zh_cn"]["content"] for e in line)
            for m in bots.feishu.accepted[env[f"FEISHU_G{n}"]]
        ]
        assert runs(wecom) == [3] * 8  # 4 rules × 2 channel instances, 3 parts each
        assert runs(ding) == [6] * 4  # 2,048-byte parts
        assert len(feishu) == 4 and not any(PART.match(t) for t in feishu)  # fits 18,000 bytes
    # the limits cost time: 24 posts to one WeCom bot at 18 a minute need over a minute
    sends = sorted(
        e.at
        for r in store.deliveries(channel="wecom")
        for e in store.events(r.key)
        if e.status is Status.SENDING
    )
    assert bots.clock.now() - at(10) >= dt.timedelta(seconds=60)
    assert sends[0] == at(10)


def test_without_pacing_the_parts_the_fake_would_refuse(
    make_bots: Any, store: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The burst test can fail: parts sent back to back (one slot per delivery) break the
    WeCom limit."""
    from broadcaster.engine.dispatch import Dispatcher

    monkeypatch.setattr(Dispatcher, "_pacer", lambda self, profile: lambda endpoint: True)
    off = {"enabled": False}  # only WeCom sends: nothing else moves the virtual clock
    bots = make_bots(store, channels={"ding": off, "feishu": off})
    bots.fire_all()
    assert bots.wecom.rate_refusals > 0


def test_a_removed_bot_fails_once_for_good_and_the_others_go_on(
    make_bots: Any, store: DeliveryLog
) -> None:
    bots = make_bots(store, rules=1)
    removed = bot_environ()["WECOM_G2"]
    bots.wecom.remove_bot(removed)
    bots.fire_all()
    failed = store.deliveries(status=Status.FAILED)
    assert {(r.channel_id, r.target_id, r.error_class) for r in failed} == {
        ("wecom", "g2", ErrorClass.CONFIG),
        ("wecom_urgent", "g2", ErrorClass.CONFIG),
    }
    assert all(r.attempt == 1 for r in failed)
    assert "invalid key or bot removed" in failed[0].reason
    assert removed not in failed[0].reason
    tried = [r for r in bots.wecom.requests if r.query["key"] == [removed]]
    assert len(tried) == 2  # one per channel, never again
    bots.sweep(at(12))
    assert len([r for r in bots.wecom.requests if r.query["key"] == [removed]]) == 2
    assert len(store.deliveries(status=Status.ACCEPTED)) == 4 * GROUPS - 2


def test_a_5xx_is_re_sent_once_from_the_part_it_reached(make_bots: Any, store: DeliveryLog) -> None:
    bots = make_bots(store, rules=1, groups=1)
    bots.wecom.queue(Mode.OK, Mode.SERVER_ERROR)  # the first delivery's part 2 gets a 502
    bots.fire_all()
    [unknown] = store.deliveries(status=Status.UNKNOWN)
    assert (unknown.channel_id in ("wecom", "wecom_urgent"), unknown.parts_done) == (True, 1)
    assert PART.match(bots.wecom.requests[1].json()["markdown"]["content"])[0] == "(2/3) "
    bots.sweep(at(11))  # settled: re-sent once, from part 2
    rows = store.deliveries(channel="wecom") + store.deliveries(channel="wecom_urgent")
    assert sorted((r.status, r.resends) for r in rows) == [
        (Status.ACCEPTED, 0),
        (Status.ACCEPTED, 1),
    ]
    contents = [m["content"] for m in bots.wecom.accepted[bot_environ()["WECOM_G1"]]]
    numbers = [PART.match(c)[0] for c in contents]  # type: ignore[index]
    assert numbers[-2:] == ["(2/3) ", "(3/3) "]  # the resend: part 1 is not posted again
    assert sorted(numbers) == ["(1/3) "] * 2 + ["(2/3) "] * 2 + ["(3/3) "] * 2


def test_an_answer_lost_twice_is_sent_twice_at_most_then_left_to_an_operator(
    make_bots: Any, store: DeliveryLog
) -> None:
    bots = make_bots(store, rules=1, groups=1)
    bots.wecom.mode = Mode.SERVER_ERROR
    bots.fire_all()
    assert {r.status for r in store.deliveries(channel="wecom")} == {Status.UNKNOWN}
    bots.sweep(at(11))
    bots.sweep(at(12))
    bots.sweep(at(13))
    rows = store.deliveries(channel="wecom") + store.deliveries(channel="wecom_urgent")
    assert {(r.status, r.resends) for r in rows} == {(Status.UNRESOLVED, 1)}
    assert len(bots.wecom.requests) == 4  # two channels, each sent at most twice


def test_a_timeout_is_unknown_and_re_sent_once(make_bots: Any, store: DeliveryLog) -> None:
    bots = make_bots(store, rules=1, groups=1)
    bots.feishu.queue(Mode.HANG)  # the bot posts it, the answer never comes
    bots.fire_all()
    [row] = store.deliveries(channel="feishu")
    assert (row.status, row.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)
    assert "no answer within 0.5s" in row.reason
    bots.sweep(at(11))
    [row] = store.deliveries(channel="feishu")
    assert (row.status, row.resends) == (Status.ACCEPTED, 1)
    assert bots.feishu.total_accepted() == 2  # posted twice: the price of no idempotency key


def _occurrences(bots: Any) -> Iterator[Any]:
    planner = Planner(bots.app.campaign)
    start = dt.datetime.combine(DAY, dt.time(), tzinfo=at(0).tzinfo)
    for spec in bots.app.campaign.rules:
        yield from planner.rule_occurrences(spec, start, start + dt.timedelta(days=1))


def test_a_dingtalk_block_stops_every_sender_of_that_robot_for_ten_minutes(
    make_bots: Any, store: DeliveryLog
) -> None:
    off = {"enabled": False}
    bots = make_bots(
        store, rules=2, groups=2, channels={"wecom": off, "wecom_urgent": off, "feishu": off}
    )
    bots.ding.forced = (130101, "send too fast, exceed 20 times per minute")
    bots.ding.queue(Mode.CODE)  # the first request meets a robot that says it is blocked
    bots.fire_all()
    [refused, *_] = bots.ding.requests
    token = refused.query["access_token"][0]
    group = f"g{token.rsplit('-', 1)[1]}"
    rows = store.deliveries(channel="ding", target=group)
    assert {r.status for r in store.deliveries(channel="ding")} == {Status.ACCEPTED}
    events = [e for r in rows for e in store.events(r.key)]
    [throttled] = [e for e in events if e.error_class is ErrorClass.THROTTLED]
    assert "the robot is blocked for 10 minutes" in throttled.reason
    later = [e.at for e in events if e.status is Status.SENDING and e.at > throttled.at]
    assert later and min(later) >= throttled.at + dt.timedelta(minutes=10)
    assert bots.ding.refused == {130101: 1} and bots.ding.rate_refusals == 0


def test_a_bot_key_echoed_by_the_provider_is_never_stored(
    make_bots: Any, store: DeliveryLog
) -> None:
    off = {"enabled": False}
    bots = make_bots(
        store, rules=1, groups=1, channels={"wecom_urgent": off, "ding": off, "feishu": off}
    )
    key = bot_environ()["WECOM_G1"]
    bots.wecom.mode, bots.wecom.forced = Mode.CODE, (93000, f"invalid webhook url {key}")
    bots.fire_all()
    [row] = store.deliveries(channel="wecom")
    assert (row.status, row.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    stored = [(e.reason, e.detail) for e in store.events(row.key)]
    assert "invalid webhook url ***" in row.reason
    assert not any(key in f"{reason} {detail}" for reason, detail in stored)
