"""The live view of `run`: next occurrences, recent activity, channel readiness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console

from broadcaster.cli.run import live_view
from broadcaster.engine.clock import VirtualClock
from broadcaster.log import DeliveryLog
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
        console = Console(record=True, width=160, force_terminal=False)
        console.print(live_view(runner, campaign, store.url_display))
        runner.close()
    text = console.export_text()
    assert "broadcaster run · 引擎测试 · 2026-03-03 09:30:00" in text
    assert "下次推送 next occurrences" in text
    assert "03-03 Tue 10:00" in text and "blast" in text and "groups" in text
    assert "fired groups@2026-03-03T10:00: handoff accepted×2" in text
    assert "error 调度出错 tick failed: boom" in text
    assert "就绪 ready: handoff" in text
    assert (
        "停用 disabled: sms (缺少环境变量 environment variable TEST_SECRET_TOKEN not set)" in text
    )
    assert "调度中 active scheduler" in text
