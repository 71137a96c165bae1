"""`plan` shows how long each bot channel's fan-out takes under the bots' limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.fanout import duration_label, limit_seconds
from broadcaster.vocab import RateLimit
from tests.channels.group_bot_campaign import write_bot_campaign


@pytest.mark.parametrize(
    ("posts", "seconds"), [(0, 0.0), (1, 0.0), (18, 0.0), (19, 60.0), (36, 60.0), (37, 120.0)]
)
def test_the_last_post_under_a_sliding_window(posts: int, seconds: float) -> None:
    assert limit_seconds(posts, RateLimit(18, 60)) == seconds


def test_duration_labels() -> None:
    assert [duration_label(s) for s in (0.2, 59, 60, 61, 3600, 3900)] == [
        "1 秒 1 s",
        "59 秒 59 s",
        "1 分 1 min",
        "2 分 2 min",
        "1 小时 0 分 1 h 0 min",
        "1 小时 5 分 1 h 5 min",
    ]


def plan(path: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli,
        [
            *("-c", str(path), "plan", "--from", "2026-03-03", "--to", "2026-03-03"),
            *("--now", "2026-03-02T09:00", *args),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_sums_every_channel_posting_to_one_bot_with_its_parts(tmp_path: Path) -> None:
    """4 rules at 10:00 onto 2 groups; each message is 3 WeCom parts, 6 DingTalk parts
    (2,048 bytes each), 1 Feishu part. Each WeCom bot takes 4 × 3 from `wecom` and as many
    from `wecom_urgent`: 24 posts at 18 a minute, the last a minute after the first."""
    local = "http://127.0.0.1:9"
    path = write_bot_campaign(tmp_path, wecom=local, dingtalk=local, feishu=local, groups=2)
    out = plan(path)  # no bot key or secret is set: plan needs none
    lines = out[out.index("群发耗时") :].splitlines()
    assert lines == [
        "群发耗时 fan-out time under each bot's limit (假设每次应答 0.2 秒 assuming 0.2 s an answer):",
        "  03-03 星期二 Tue 10:00  ding: 2 群 groups, 48 条 posts (最忙的机器人 busiest bot 24,"
        " 限速 limit 18/60s): 约 about 1 分 1 min",
        "  03-03 星期二 Tue 10:00  feishu: 2 群 groups, 8 条 posts (最忙的机器人 busiest bot 4,"
        " 限速 limit 4/3s): 约 about 1 秒 1 s",
        "  03-03 星期二 Tue 10:00  wecom: 2 群 groups, 24 条 posts (最忙的机器人 busiest bot 24,"
        " 限速 limit 18/60s): 约 about 1 分 1 min",
        "  03-03 星期二 Tue 10:00  wecom_urgent: 2 群 groups, 24 条 posts (最忙的机器人 busiest"
        " bot 24, 限速 limit 18/60s): 约 about 1 分 1 min",
    ]


def test_a_filtered_plan_still_counts_every_channel_posting_to_the_bots(
    tmp_path: Path,
) -> None:
    local = "http://127.0.0.1:9"
    path = write_bot_campaign(tmp_path, wecom=local, dingtalk=local, feishu=local, groups=1)
    lines = plan(path, "--channel", "wecom", "--rule", "burst1").splitlines()
    assert lines[-1] == (
        "  03-03 星期二 Tue 10:00  wecom: 1 群 groups, 12 条 posts (最忙的机器人 busiest bot 24,"
        " 限速 limit 18/60s): 约 about 1 分 1 min"
    )
    assert not any("wecom_urgent:" in line for line in lines)


def test_a_slower_configured_limit_lengthens_the_fan_out(tmp_path: Path) -> None:
    local = "http://127.0.0.1:9"
    path = write_bot_campaign(
        tmp_path,
        wecom=local,
        dingtalk=local,
        feishu=local,
        groups=1,
        channels={"feishu": {"rate_limit": "1/60s"}},
    )
    assert plan(path, "--channel", "feishu").splitlines()[-1] == (
        "  03-03 星期二 Tue 10:00  feishu: 1 群 groups, 4 条 posts (最忙的机器人 busiest bot 4,"
        " 限速 limit 1/60s): 约 about 3 分 3 min"
    )


def test_without_bot_channels_plan_shows_no_fan_out(tmp_path: Path, mini: Path) -> None:
    assert "群发耗时" not in plan(mini)


def test_plan_loads_only_the_bot_plugins_and_opens_no_connection(tmp_path: Path) -> None:
    from tests.model.test_purity import NETWORK_AND_SQL, heavy, modules_after

    local = "http://127.0.0.1:9"
    path = write_bot_campaign(tmp_path, wecom=local, dingtalk=local, feishu=local, groups=1)
    code, out, modules = modules_after(
        path.parent,
        "plan",
        "--now",
        "2026-03-02T09:00",
        "--from",
        "2026-03-03",
        "--to",
        "2026-03-03",
    )
    assert code == 0, out
    assert "群发耗时" in out
    assert heavy(modules, NETWORK_AND_SQL) == []
    assert "broadcaster.log" not in modules and "broadcaster.engine.dispatch" not in modules
