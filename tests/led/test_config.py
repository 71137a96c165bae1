"""Screens at the config's edge: every problem with file, line, key, the screen, the
template or item, the character, and a suggestion; nothing half-applied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from broadcaster.engine.app import App
from broadcaster.errors import ConfigError
from tests.conftest import TZ
from tests.led.conftest import SCREENS, write_screens

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
ENV = {"TEST_SECRET_DOOR": "tok-7f3a9c21e5"}


def load(path: Path, environ: dict[str, str] | None = None) -> App:
    return App.load(
        path, now=NOW, environ=ENV if environ is None else environ, state_dir=path.parent / "var"
    )


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return [str(i) for i in caught.value.issues if i.severity == "error"]


def test_screens_are_targets_with_their_place_in_the_tree(screens_campaign: Path) -> None:
    app = load(screens_campaign)
    screens = app.campaign.screens
    assert list(screens) == ["door", "gate"]
    door, gate = screens["door"], screens["gate"]
    assert door.path == ("测试镇", "便民服务中心门口屏")
    assert (door.charset, door.width, door.lines, door.max_gap) == ("gb2312", 12, 2, 60)
    assert door.channel == "screens" and door.token_env == "TEST_SECRET_DOOR"
    assert door.stale_after == 1800
    assert [o.id for o in door.own] == ["hours", "bank", "weather"]
    assert (gate.charset, gate.max_gap) == ("gbk", 45)


def test_an_emoji_in_a_template_names_screen_template_character_and_suggestion(
    tmp_path: Path,
) -> None:
    path = write_screens(tmp_path, **{"led/beta.j2": "{{ topic.slogan }}⚠可疑请拨96110😀"})
    found = [e for e in errors_of(path) if "led/beta" in e]
    assert found[0].startswith("tpl/led/beta.j2:1: 显示屏 screen 'door' (便民服务中心门口屏):")
    assert "'⚠' (U+26A0 WARNING SIGN) 不在 GB2312 字符集中 is not in GB2312" in found[0]
    assert "改写为 write '注意' instead" in found[0]
    assert "(rule 'led-rotation')" in found[0]
    assert any("'😀' (U+1F600" in e and "remove the emoji" in e for e in found)
    assert any("screen 'gate'" in e for e in found)  # GBK has neither


def test_a_rare_character_fails_gb2312_but_passes_gbk(tmp_path: Path) -> None:
    path = write_screens(tmp_path, **{"led/alpha.j2": "{{ topic.slogan }}，民警张喆提醒"})
    found = errors_of(path)
    assert len(found) == 1
    assert "screen 'door'" in found[0] and "'喆' (U+5586" in found[0]
    assert "charset: gbk" in found[0]


def test_own_content_errors_point_at_the_item(tmp_path: Path) -> None:
    text = SCREENS.replace(
        "{id: weather, text: 今日晴，最高气温十八度, seconds: 15}",
        "{id: weather, text: 今日晴☀最高气温十八度, seconds: 75}",
    )
    found = errors_of(write_screens(tmp_path, text))
    assert len(found) == 2
    assert found[0].startswith("schedules.yaml:30: targets[0].children[0].screen.own[2].text:")
    assert "own item 'weather'" in found[0] and "'☀' (U+2600" in found[0]
    assert found[1].startswith("schedules.yaml:30: targets[0].children[0].screen.own[2].seconds:")
    assert "plays 75 s, longer than max_gap 60 s" in found[1]
    assert "leaves no room" in found[1]


def test_reject_overflow_refuses_a_wide_line(tmp_path: Path) -> None:
    text = SCREENS.replace("width: 12\n", "width: 8\n          overflow: reject\n")
    found = errors_of(write_screens(tmp_path, text))
    assert any(
        "schedules.yaml:30: targets[0].children[0].screen.own[1].text:" in e
        and "a line of 14 characters is wider than the screen's 8" in e
        for e in found
    ), found
    gate = SCREENS.replace("max_gap: 45s}", "max_gap: 45s, overflow: reject}")
    found = errors_of(write_screens(tmp_path / "gate", gate))
    assert found[0].startswith("tpl/led/alpha.j2:1: 显示屏 screen 'gate' (中学校门屏): 模板")
    assert "a line of 15 characters is wider than the screen's 8" in found[0]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "charset: gbk",
            "charset: big5",
            "schedules.yaml:34: targets[0].children[1].screen.charset: 取值无效 expected one of"
            " 'gb2312', 'gbk' or 'utf-8'; got 'big5'",
        ),
        ("max_gap: 45s", "max_gap: soon", "时长格式错误 expected a duration"),
        ("width: 8", "width: 0", "targets[0].children[1].screen.width:"),
        ("lines: 1,", "lines: 1, colour: red,", "screen.colour:"),
    ],
)
def test_bad_screen_keys(tmp_path: Path, old: str, new: str, expected: str) -> None:
    found = errors_of(write_screens(tmp_path, SCREENS.replace(old, new)))
    assert any(expected in e for e in found), found


def test_a_screen_without_a_led_channel(tmp_path: Path) -> None:
    text = SCREENS.replace("    type: led\n", "    type: outbox\n")
    found = errors_of(write_screens(tmp_path, text))
    assert any("screen 'door'" in e and "no channel of type 'led' serves it" in e for e in found), (
        found
    )
