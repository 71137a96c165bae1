"""The live view of `run`: next occurrences, recent activity, channel readiness."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console

from broadcaster.cli.run import live_view
from broadcaster.engine.clock import VirtualClock
from broadcaster.log import DeliveryLog
from tests.conftest import REPO
from tests.engine.helpers import at, load, write_engine_campaign


def test_live_view_shows_next_occurrences_activity_and_channels(tmp_path: Path) -> None:
    app = load(
        write_engine_campaign(tmp_path, "http://127.0.0.1:9", channel={"enabled": "auto"}),
        environ={},
    )
    campaign = app.campaign
    with DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=b"k") as store:
        clock = VirtualClock(at(2026, 3, 3, 9, 30))
        runner = app.runner(store, b"k", clock=clock)
        assert runner.claim_leadership()
        runner.activity.add(clock.now(), "fired", "groups@2026-03-03T10:00: handoff accepted×2")
        runner.activity.add(
            clock.now() + dt.timedelta(seconds=1), "error", "调度出错 tick failed: boom"
        )
        console = Console(record=True, width=160, force_terminal=False, soft_wrap=True)
        console.print(live_view(runner, campaign, store.url_display))
        runner.close()
    text = console.export_text()
    assert "broadcaster run · 引擎测试 · 2026-03-03 09:30:00" in text
    assert "下次推送 next occurrences" in text
    assert "03-03 10:00" in text and "星期二 Tue" in text and "blast" in text and "groups" in text
    assert "触发 fired groups@2026-03-03T10:00: handoff 已受理 accepted×2" in text
    assert "错误 error 调度出错 tick failed: boom" in text
    assert "就绪 ready: handoff" in text
    assert (
        "停用 disabled: sms (缺少环境变量 environment variable TEST_SECRET_TOKEN not set)" in text
    )
    assert "调度中 active scheduler" in text


def test_live_view_at_80_columns_crops_nothing(tmp_path: Path) -> None:
    """The sample's long rule and channel ids and the variable names a clerk must set."""
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    app = load(tmp_path / "schedules.yaml", environ={}, now=at(2026, 11, 24, 7, 0))
    with DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=b"k") as store:
        clock = VirtualClock(at(2026, 11, 24, 7, 0))
        runner = app.runner(store, b"k", clock=clock)
        assert runner.claim_leadership()
        runner.activity.add(
            clock.now(),
            "error",
            "配置修改无效 edit refused: channels.sms_gateway.settings.secrets.token:"
            " SMS_GATEWAY_TOKEN_BACKUP_ROTATED not set",
        )
        console = Console(record=True, width=80, force_terminal=False, soft_wrap=True)
        console.print(live_view(runner, app.campaign, store.url_display, 80))
        runner.close()
    text = console.export_text()
    lines = text.splitlines()
    assert "…" not in text
    assert max(cell_len(line) for line in lines) <= 80
    whole = [
        "SMS_GATEWAY_TOKEN",
        "WECOM_CADRES_KEY",
        "VOICE_GATEWAY_TOKEN",
        "SMS_GATEWAY_TOKEN_BACKUP_ROTATED",
        "loudspeaker-daily",
        "loudspeaker_scripts",
        "groups-twice-weekly",
        "group_handoff",
    ]
    for word in whole:
        assert any(word in line for line in lines), (word, text)
    upcoming = re.findall(r"│ (\d\d-\d\d \d\d:\d\d) +│", text)
    assert len(upcoming) == 8, text  # every next occurrence's time, uncut
    assert text.count("星期二 Tue") >= 1
