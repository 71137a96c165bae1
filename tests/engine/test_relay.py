"""Relay down the hierarchy (按时派发及时转发): the rule's relay validated with file and line,
each hop logged as a delivery of its own depending on the one above, deadlines judged in
virtual time (late flagged, confirmed in time not late), hops counted apart from direct
deliveries, `broadcaster log --late-relays` / `--handoffs` and `broadcaster confirm`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.app import App
from broadcaster.engine.registry import Registry
from broadcaster.errors import ConfigError
from broadcaster.log.relay import HopState, hop_states, relay_tally
from broadcaster.vocab import ErrorClass, Status
from tests.channels.relay_campaign import AT, ENV, confirm_by_link, relay_yaml
from tests.channels.relay_campaign import relay_live as relay_live  # the fixture
from tests.conftest import write_campaign
from tests.web.conftest import Live, fire

H = dt.timedelta(hours=1)


def hops(live: Live, now: dt.datetime) -> dict[str, HopState]:
    """target id -> its hop, judged at `now`."""
    found = live.service.log.read(lambda conn: hop_states(conn, "relay", now))
    return {s.target_id: s for s in found}


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relay", "expected"),
    [
        (
            "    relay:\n      via: wx\n      levels:\n        - {to: vilage, within: 2h}\n",
            "schedules.yaml:{n3}: rules[1].relay.levels[0].to: 未知的层级 unknown level 'vilage':"
            " a level is a tag some targets carry, e.g. grid, township, village"
            " (did you mean 'village'?)",
        ),
        (
            "    relay:\n      via: wx\n      levels:\n        - {to: village, within: 2 hours}\n",
            "schedules.yaml:{n3}: rules[1].relay.levels[0].within: 期限格式错误 expected a"
            ' deadline such as "90m", "2h" or "1d"; got \'2 hours\'',
        ),
        (
            "    relay:\n      via: wx\n      levels:\n        - {to: village, within: 30d}\n",
            "schedules.yaml:{n3}: rules[1].relay.levels[0].within: 期限过长 a relay deadline is"
            " at most 14 days (14d); got '30d'",
        ),
        (
            "    relay:\n      via: wechat\n      levels:\n        - {to: village, within: 2h}\n",
            "schedules.yaml:{n1}: rules[1].relay.via: 未知的渠道 unknown channel 'wechat';"
            " expected one of town-bot, wx, sms",
        ),
        (
            "    relay:\n      via: wx\n      levels:\n        - {to: grid, within: 2h}\n"
            "        - {to: village, within: 2h}\n",
            "schedules.yaml:{n4}: rules[1].relay.levels[1].to: 层级下没有对象 no target tagged"
            " 'village' below level 'grid'",
        ),
        (
            "    relay:\n      via: wx\n      levels:\n        - {to: village, within: 20h}\n"
            "        - {to: grid, within: 5h}\n",
            "schedules.yaml:{n4}: rules[1].relay.levels[1].within: 期限晚于链接有效期 this level"
            " is due 25 h after the push, but the links of channel 'wx' expire after 24 h"
            " (link_hours)",
        ),
    ],
    ids=[
        "unknown level",
        "bad deadline",
        "deadline too long",
        "unknown channel",
        "empty level",
        "after the links expire",
    ],
)
def test_a_bad_relay_is_refused_with_file_and_line(
    tmp_path: Path, relay: str, expected: str
) -> None:
    text = relay_yaml("https://fz.example.gov.cn", "http://127.0.0.1:9", relay=relay)
    path = write_campaign(tmp_path, text)
    lines = path.read_text(encoding="utf-8").splitlines()
    at = lines.index("    relay:") + 1
    with pytest.raises(ConfigError) as info:
        App.load(path, now=AT, environ=ENV, state_dir=tmp_path / "var", registry=Registry())
    want = expected.format(n1=at + 1, n3=at + 3, n4=at + 4)
    assert [str(i) for i in info.value.issues if i.severity == "error"] == [want]


# --- hops in the log -------------------------------------------------------------------------


def test_each_hop_is_a_delivery_depending_on_the_one_above(relay_live: Live) -> None:
    live = relay_live
    keys = fire(live, "case-push", AT)
    states = live.service.log.latest(keys)
    [push] = [k for k, s in states.items() if s.channel_id == "town-bot"]
    found = hops(live, AT)
    assert sorted(found) == ["g1", "g2", "g3", "v1", "v2"]
    assert {t: (s.hop.level, s.hop.level_tag) for t, s in found.items()} == {
        "v1": (1, "village"),
        "v2": (1, "village"),
        "g1": (2, "grid"),
        "g2": (2, "grid"),
        "g3": (2, "grid"),
    }
    assert found["v1"].hop.parent_key == push and found["v2"].hop.parent_key == push
    assert found["g1"].hop.parent_key == found["v1"].key
    assert found["g2"].hop.parent_key == found["v1"].key
    assert found["g3"].hop.parent_key == found["v2"].key
    assert {t: s.hop.due_at for t, s in found.items()} == {
        "v1": AT + 2 * H,
        "v2": AT + 2 * H,
        "g1": AT + 4 * H,
        "g2": AT + 4 * H,
        "g3": AT + 4 * H,
    }
    assert found["g1"].hop.person == "王网格员" and found["g1"].hop.confirm
    assert all(s.channel_id == "wx" and s.status is Status.ACCEPTED for s in found.values())
    assert not any(s.done or s.late for s in found.values())
    # every text carries the instruction for the level below it
    text = {s.target_id: live.service.log.text(s.text_sha256) for s in states.values()}
    by_key = {k: s for k, s in states.items()}
    assert text["town"] is not None and text["town"].endswith("请于2小时内转发至李家村、王家村。")
    v1_text = live.service.log.text(by_key[found["v1"].key].text_sha256) or ""
    assert v1_text.endswith("请于2小时内转发至李家村一网格群、李家村二网格群。")
    g1_text = live.service.log.text(by_key[found["g1"].key].text_sha256) or ""
    assert g1_text.startswith("### 甲类诈骗\n李家村一网格群：") and "请于" not in g1_text
    # firing again (a restart) logs nothing twice
    assert sorted(fire(live, "case-push", AT)) == sorted(keys)
    assert len(hops(live, AT)) == 5


def test_late_hops_are_flagged_and_in_time_ones_are_not(relay_live: Live) -> None:
    live = relay_live
    fire(live, "case-push", AT)
    found = hops(live, AT)
    live.clock.set(AT + 1 * H)  # li-cadre forwards within the hour
    confirm_by_link(live, found["v1"].key)
    live.clock.set(AT + 3 * H)  # wang-grid forwards before the grid deadline (AT + 4h)
    confirm_by_link(live, found["g1"].key)
    live.clock.set(AT + 5 * H)  # wu-cadre forwards three hours late
    confirm_by_link(live, found["v2"].key)
    now = AT + 5 * H + 30 * dt.timedelta(minutes=1)
    judged = hops(live, now)
    assert {t: s.outcome for t, s in judged.items()} == {
        "v1": "按时完成 done in time",
        "g1": "按时完成 done in time",
        "v2": "逾期完成 done late",
        "g2": "逾期未确认 late, waiting",
        "g3": "逾期未确认 late, waiting",
    }
    assert judged["v1"].done_at == AT + 1 * H
    assert judged["v2"].done_at == AT + 5 * H
    # before their deadline, unconfirmed hops are waiting, not late
    early = hops(live, AT + 90 * dt.timedelta(minutes=1))
    assert early["g2"].outcome == "待确认 waiting" and not early["g2"].late
    # counted per level, apart from the direct push
    tally = relay_tally(list(judged.values()))
    assert (tally[1].total, tally[1].in_time, tally[1].done_late) == (2, 1, 1)
    assert (tally[2].total, tally[2].in_time, tally[2].overdue) == (3, 1, 2)
    assert (tally[-1].done, tally[-1].late, tally[-1].waiting) == (3, 3, 0)
    late_only = live.service.log.read(lambda c: hop_states(c, "relay", now, late_only=True))
    assert sorted(s.target_id for s in late_only) == ["g2", "g3", "v2"]


def test_the_command_line_lists_late_hops_and_an_operator_confirms(
    relay_live: Live, log_url: str
) -> None:
    live = relay_live
    fire(live, "case-push", AT)
    found = hops(live, AT)
    live.clock.set(AT + 1 * H)
    confirm_by_link(live, found["v1"].key)
    config = live.app.config_path
    runner = CliRunner()
    base = ["-c", str(config)]
    shown = runner.invoke(
        cli,
        [*base, "log", "--late-relays", "--db", log_url, "--now", "2026-03-03T13:30"],
        env={"COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "逐级转发 relay hops" in out and "逾期的转发 late hops" in out
    assert "1 village" in out and "2 grid" in out
    assert "逾期 late: 4 / 5 次转发 hops" in out  # v2 and the three grids
    assert found["v2"].key[:12] in out and "吴村干" in out
    assert "李村干" not in out  # v1 was done in time: counted, not listed as late
    plain = runner.invoke(
        cli,
        [*base, "log", "--db", log_url, "--now", "2026-03-03T13:30"],
        env={"COLUMNS": "200"},
    )
    assert plain.exit_code == 0, plain.output
    # coverage per send and channel, then the hops counted apart from it
    assert plain.output.index("每次推送覆盖情况") < plain.output.index("逐级转发 relay hops")
    assert "逾期的转发 late hops: broadcaster log --late-relays" in plain.output
    # a hand-off's status in its own words: never "delivered" to the group's members
    assert "已确认转发" in plain.output and "待确认转发" in plain.output
    handoffs = runner.invoke(
        cli,
        [*base, "log", "--handoffs", "--db", log_url, "--now", "2026-03-03T13:30"],
        env={"COLUMNS": "200"},
    )
    assert handoffs.exit_code == 0, handoffs.output
    assert "周网格员" in handoffs.output and "吴村干" in handoffs.output
    assert "李村干" not in handoffs.output  # confirmed: counted, not listed
    assert "已确认 confirmed: 1" in handoffs.output
    assert "逾期未确认 overdue: 4 (4 人 people)" in handoffs.output
    # the operator confirms g3 after a phone call
    done = runner.invoke(
        cli,
        [
            *base,
            "confirm",
            found["g3"].key[:10],
            "--by",
            "赵主任",
            "--note",
            "电话确认已转发",
            "--db",
            log_url,
        ],
    )
    assert done.exit_code == 0, done.output
    assert "已记录 recorded: 1" in done.output
    state = live.service.log.latest([found["g3"].key])[found["g3"].key]
    assert state.status is Status.DELIVERED and state.error_class is ErrorClass.OPERATOR
    assert "operator:赵主任" in state.reason
    # a key that waits for nothing is refused, nothing written
    again = runner.invoke(
        cli, [*base, "confirm", found["v1"].key[:10], "--by", "赵", "--note", "x", "--db", log_url]
    )
    assert again.exit_code == 2
    assert "没有待确认的转发 no hop or hand-off waits for this key" in again.output


def test_targets_without_their_person_or_notification_address_are_refused(
    tmp_path: Path,
) -> None:
    text = relay_yaml("https://fz.example.gov.cn", "http://127.0.0.1:9").replace(
        "address: {wx: {key: zhou-grid, name: 周网格员}, sms: zhou-grid}", "address: {}"
    )
    path = write_campaign(tmp_path, text)
    line = path.read_text(encoding="utf-8").splitlines().index("            address: {}") + 1
    with pytest.raises(ConfigError) as info:
        App.load(path, now=AT, environ=ENV, state_dir=tmp_path / "var", registry=Registry())
    assert sorted(str(i) for i in info.value.issues if i.severity == "error") == [
        f"schedules.yaml:{line}: targets[0].children[1].children[0].address: 缺少地址 target"
        " 'g3' (王家村一网格群) has no address for channel 'wx', which sends to each target's"
        " own address",
        f"schedules.yaml:{line}: targets[0].children[1].children[0].address: 缺少地址 target"
        " 'g3' has no address on channel 'sms', which sends the hand-off link of channel 'wx'"
        " to its person",
    ]


def test_a_direct_hand_off_is_due_after_confirm_hours_and_listed_by_person(
    relay_live: Live, log_url: str
) -> None:
    live = relay_live
    friday = dt.datetime(2026, 3, 6, 10, 0, tzinfo=AT.tzinfo)
    keys = fire(live, "grid-weekly", friday)
    found = live.service.log.read(lambda conn: hop_states(conn, "relay", friday))
    assert sorted(s.target_id for s in found) == ["g1", "g2", "g3"]
    assert {(s.hop.level, s.hop.parent_key, s.hop.due_at) for s in found} == {
        (0, "", friday + 24 * H)  # confirm_hours: 24
    }
    assert set(keys) >= {s.key for s in found}
    live.clock.set(friday + 2 * H)
    confirm_by_link(live, next(s.key for s in found if s.target_id == "g1"))
    runner = CliRunner()
    base = ["-c", str(live.app.config_path)]
    out = runner.invoke(
        cli,
        [*base, "log", "--handoffs", "--db", log_url, "--now", "2026-03-07T11:00"],
        env={"COLUMNS": "200"},
    ).output
    assert "张网格员" in out and "周网格员" in out and "王网格员" not in out
    assert "已确认 confirmed: 1 (逾期确认 late: 0); 逾期未确认 overdue: 2 (2 人 people)" in out
    relays = runner.invoke(
        cli,
        [*base, "log", "--late-relays", "--db", log_url, "--now", "2026-03-07T11:00"],
        env={"COLUMNS": "200"},
    ).output
    assert "逾期 late: 0 / 0 次转发 hops" in relays  # direct hand-offs are not relay hops


def test_a_notification_whose_link_cannot_be_made_fails_visibly(
    tmp_path: Path, webhook_server: object
) -> None:
    from broadcaster.engine.clock import ManualClock
    from broadcaster.log import default_url
    from broadcaster.model.plan import Planner

    path = write_campaign(tmp_path, relay_yaml("https://fz.example.gov.cn", "http://127.0.0.1:9"))
    environ = {**ENV, "BROADCASTER_WEB_SECRET": "short"}  # refused: too short to sign with
    app = App.load(path, now=AT, environ=environ, state_dir=tmp_path / "var", registry=Registry())
    store, key = app.open_log(default_url(tmp_path / "state"))
    clock = ManualClock(AT)
    dispatcher = app.dispatcher(store, key, clock=clock, heartbeat=False)
    try:
        spec = app.campaign.rule("case-push")
        occurrence = next(iter(Planner(app.campaign).rule_occurrences(spec, AT, AT + H)))
        handle = dispatcher.fire(occurrence)
        handle.wait()
        states = store.latest(handle.keys)
        by_channel: dict[str, set[Status]] = {}
        for s in states.values():
            by_channel.setdefault(s.channel_id, set()).add(s.status)
        assert by_channel == {
            "town-bot": {Status.ACCEPTED},
            "wx": {Status.ACCEPTED},  # the hand-offs themselves are ready
            "sms": {Status.FAILED},  # each notification failed, with the reason
        }
        reasons = {s.reason for s in states.values() if s.channel_id == "sms"}
        assert len(reasons) == 1
        assert "无法生成通知 the notification could not be made" in reasons.pop()
    finally:
        dispatcher.close()
        store.close()
