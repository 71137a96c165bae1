"""`validate` (through the led plugin's check_schedule) and `plan` (pure) prove the gap
bound for every screen over the period, and name the screen, the moment and the setting
when it cannot be met."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from tests.led.conftest import SCREENS, write_screens
from tests.led.helpers import ENV

NO_FILLER = SCREENS.replace(
    "      hotline: 反诈专线96110 报警110\n", '      hotline: ""\n      warning_hours: 1\n'
).replace("      default_slogan: 全民反诈，共创平安\n", '      default_slogan: ""\n')


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_plan_proves_the_bound_for_every_screen(tmp_path: Path) -> None:
    path = write_screens(tmp_path)
    code, out = run(
        "-c", str(path), "plan", "--now", "2026-03-02", "--from", "2026-03-02", "--to", "2026-03-08"
    )
    assert code == 0, out
    assert "显示屏轮播 LED rotation: 2 块屏全部满足 every screen keeps the gap" in out
    assert "(45/60 s)" in out


def test_a_moment_without_any_anti_fraud_item_is_named(tmp_path: Path) -> None:
    """Warnings last 1 h, sends come every 2 h, no hotline, no slogan: before the first send
    (and from 09:00 to 10:00 …) only the screen's own content would play."""
    path = write_screens(tmp_path, NO_FILLER)
    code, out = run(
        "-c", str(path), "plan", "--now", "2026-03-02", "--from", "2026-03-02", "--to", "2026-03-02"
    )
    assert code == 0
    flat = " ".join(out.split())
    assert (
        "显示屏轮播 LED rotation 显示屏 screen 'door' (便民服务中心门口屏): 没有有效的反诈内容 no"
        " anti-fraud item is valid: only the screen's own content would play (from"
        " 2026-03-02T00:00+08:00)"
    ) in flat
    assert (
        "显示屏 screen 'gate' (中学校门屏): 没有有效的反诈内容 no anti-fraud item is valid (from"
        " 2026-03-02T00:00+08:00)"
    ) in flat
    code, out = run("-c", str(path), "validate", "--now", "2026-03-02")
    assert code == 1
    flat = " ".join(out.split())
    assert "channels.screens: 显示屏 screen 'door' (便民服务中心门口屏): 没有有效的反诈内容" in flat


def test_feed_texts_are_checked_against_each_screen_charset(tmp_path: Path) -> None:
    text = SCREENS.replace("hotline: 反诈专线96110 报警110", "hotline: ☎反诈专线96110 报警110")
    code, out = run("-c", str(write_screens(tmp_path, text)), "validate", "--now", "2026-03-02")
    assert code == 1
    flat = " ".join(out.split())
    assert (
        "显示屏 screen 'door' (便民服务中心门口屏): settings.hotline: '☎' (U+260E BLACK TELEPHONE)"
        " 不在 GB2312 字符集中 is not in GB2312; 改写为 write '电话' instead"
    ) in flat
    assert "screen 'gate' (中学校门屏): settings.hotline: '☎'" in flat
