"""Bot keys and secrets come only from the environment: every bad reference is a config
error naming file, line and key, and nothing is applied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from broadcaster.engine.app import App
from broadcaster.errors import ConfigError
from tests.conftest import MINI, TZ, write_campaign

GROUPS = """      - id: g1
        name: 一组群
        tags: [group]
        address:
          wecom: {env: WECOM_G1}
          ding: {key: {env: DING_G1}, secret: {env: DING_SECRET_G1}}
      - id: g2
        name: 二组群
        tags: [group]
        address:
          wecom: {env: WECOM_G2}
          ding: {key: {env: DING_G2}, secret: {env: DING_SECRET_G2}}"""
ENVIRON = {
    "WECOM_G1": "k1",
    "WECOM_G2": "k2",
    "DING_G1": "d1",
    "DING_G2": "d2",
    "DING_SECRET_G1": "s1",
    "DING_SECRET_G2": "s2",
}
G2_WECOM = "          wecom: {env: WECOM_G2}"  # line 30 of schedules.yaml
G2_DING = "          ding: {key: {env: DING_G2}, secret: {env: DING_SECRET_G2}}"  # line 31


def bots_yaml(groups: str = GROUPS, ding: str = "{keywords: [提醒]}") -> str:
    return (
        MINI.replace(
            "      - {id: g1, name: 一组群, tags: [group]}\n"
            "      - {id: g2, name: 二组群, tags: [group]}",
            groups,
        )
        .replace(
            "  handoff: {type: outbox, kind: bot}",
            "  handoff: {type: outbox, kind: bot}\n"
            "  wecom: {type: wecom-bot, kind: bot}\n"
            f"  ding: {{type: dingtalk-bot, kind: bot, settings: {ding}}}",
        )
        .replace("    channels: [handoff]", "    channels: [handoff, wecom, ding]")
    )


def load(tmp_path: Path, text: str, environ: dict[str, str] = ENVIRON) -> App:
    keyword = "{{ topic.name }}提醒：{{ topic.slogan }}"
    templates = {f"bot/{t}.j2": keyword for t in ("alpha", "beta", "gamma", "delta")}
    path = write_campaign(tmp_path / "c", text, templates=templates)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[29].startswith("          wecom:") and lines[30].startswith("          ding:")
    return App.load(
        path, now=dt.datetime(2026, 3, 2, 9, tzinfo=TZ), environ=environ, state_dir=tmp_path / "v"
    )


def errors(tmp_path: Path, text: str, environ: dict[str, str] = ENVIRON) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return [str(issue) for issue in caught.value.issues]


def test_the_valid_config_loads(tmp_path: Path) -> None:
    app = load(tmp_path, bots_yaml())
    assert {cid: p.enabled for cid, p in app.channels.items() if "bot" in p.type} == {
        "wecom": True,
        "ding": True,
    }


def test_a_key_written_into_the_yaml_is_refused_at_its_line(tmp_path: Path) -> None:
    text = bots_yaml(
        GROUPS.replace(G2_WECOM, "          wecom: 693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa")
    )
    assert errors(tmp_path, text) == [
        "schedules.yaml:30: targets[0].children[1].address.wecom: 地址须来自环境变量 the address of"
        " 'g2' on channel 'wecom' is a credential: write {env: NAME}, never the key itself"
    ]


def test_a_secret_written_into_the_yaml_is_refused_at_its_line(tmp_path: Path) -> None:
    text = bots_yaml(GROUPS.replace(G2_DING, "          ding: {key: SECinline, secret: SECinline}"))
    assert errors(tmp_path, text) == [
        "schedules.yaml:31: targets[0].children[1].address.ding: 地址须来自环境变量 the address of"
        " 'g2' on channel 'ding' is a credential: write {env: NAME}, never the key itself"
    ]


def test_an_unset_secret_variable_is_refused_at_its_line(tmp_path: Path) -> None:
    environ = {k: v for k, v in ENVIRON.items() if k != "DING_SECRET_G2"}
    assert errors(tmp_path, bots_yaml(), environ) == [
        "schedules.yaml:31: targets[0].children[1].address.ding: 缺少环境变量 environment"
        " variable DING_SECRET_G2 is not set (set it, or write enabled: auto to run without"
        " this channel)"
    ]


def test_a_malformed_variable_name_is_refused_at_its_line(tmp_path: Path) -> None:
    text = bots_yaml(GROUPS.replace("{env: DING_SECRET_G2}", '{env: "ding secret"}'))
    assert errors(tmp_path, text) == [
        "schedules.yaml:31: targets[0].children[1].address.ding: 环境变量名无效 expected a variable"
        " name (letters, digits, _; not starting with a digit), e.g. {env: BOT_KEY};"
        " got 'ding secret'"
    ]


def test_a_structured_address_without_key_is_refused_at_its_line(tmp_path: Path) -> None:
    text = bots_yaml(GROUPS.replace(G2_DING, "          ding: {token: {env: DING_G2}}"))
    [error] = errors(tmp_path, text)
    assert error.startswith("schedules.yaml:31: targets[0].children[1].address.ding: ")
    assert "a structured address needs 'key'" in error


def test_a_message_without_the_robots_keyword_fails_validate(tmp_path: Path) -> None:
    text = bots_yaml(ding="{keywords: [防骗]}")
    found = errors(tmp_path, text)
    assert found[0] == (
        "tpl/bot/alpha.j2:1: 缺少关键词 the message lacks every keyword of the bot: expected one"
        " of 防骗 (rule 'twice-weekly', target 'g1')"
    )
    assert len(found) == 4  # one per template the rule rotates through
