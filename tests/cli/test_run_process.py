"""`broadcaster run` as a real process: start, signals, an invalid config, edits while it runs.

The process runs the installed command (or `main()` through the interpreter when the
script is missing) on a copy of a campaign, without the live view (`--no-live`), with
stdin closed. Its output is read line by line in a thread; a test waits for a line
with a deadline, never with a fixed sleep.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import MINI, REPO, write_campaign
from tests.processes import STARTED, STOPPED, Running, command, environment

TZ = ZoneInfo("Asia/Shanghai")
SAMPLE_RULES = {
    "groups-twice-weekly",
    "cadres-bot-weekly",
    "sms-twice-monthly",
    "voice-monthly",
    "loudspeaker-daily",
    "led-rotation",
    "report-weekly",
    "report-monthly",
}
# MINI plus a rule that fires every day
DAILY = MINI + (
    "  - id: daily-handoff\n"
    "    channels: [handoff]\n"
    "    targets: {tags: [group]}\n"
    '    when: {daily: true, at: "11:00"}\n'
)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Processes started by a test; killed (if still there) and their pipes closed afterwards."""
    started: list[Running] = []
    yield started
    for process in started:
        process.close()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    folder = tmp_path / "campaign"
    folder.mkdir()
    shutil.copy(REPO / "schedules.yaml", folder / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", folder / "schedules.d")
    return folder / "schedules.yaml"


def replace_config(path: Path, text: str) -> None:
    """Write a new version at once (no half-written file is ever seen) with a newer mtime."""
    before = path.stat().st_mtime
    new = path.with_name(path.name + ".new")
    new.write_text(text, encoding="utf-8")
    os.replace(new, path)
    later = max(before, path.stat().st_mtime) + 5
    os.utime(path, (later, later))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_starts_and_stops_cleanly_on_a_signal(
    sample: Path, tmp_path: Path, running: list[Running], signum: int
) -> None:
    state = tmp_path / "state"
    started_at = dt.datetime.now(TZ).replace(second=0, microsecond=0)
    process = Running(sample, "--state-dir", str(state))
    running.append(process)
    out = process.wait_for(STARTED)
    assert "启动 starting: 示范县反电诈宣传, 8 rules · 日志 log sqlite:///" in out
    rows = {
        line.split("│")[1].strip(): line
        for line in out.splitlines()
        if line.startswith("│") and "webhook" in line
    }
    assert set(rows) == {
        "cadres_bot (县直机关企业微信群机器人)",
        "sms_gateway (县短信平台)",
        "voice_gateway (语音提醒平台)",
    }
    for name, variable in (
        ("cadres_bot (县直机关企业微信群机器人)", "WECOM_CADRES_KEY"),
        ("sms_gateway (县短信平台)", "SMS_GATEWAY_TOKEN"),
        ("voice_gateway (语音提醒平台)", "VOICE_GATEWAY_TOKEN"),
    ):
        assert "停用 disabled" in rows[name]
        assert f"缺少环境变量 environment variable {variable} not set" in rows[name]
    assert re.search(
        r"│ group_handoff \(微信群转发稿\)\s+│ outbox\s+│ 群消息 bot\s+│ 就绪 ready", out
    )
    upcoming = re.findall(r"^下次 next: (\d{4}-\d\d-\d\d \d\d:\d\d) (\S+)$", out, re.M)
    assert len(upcoming) == 5, out
    times = [dt.datetime.fromisoformat(t).replace(tzinfo=TZ) for t, _ in upcoming]
    assert times == sorted(times) and times[0] >= started_at
    assert {rule for _, rule in upcoming} <= SAMPLE_RULES

    assert process.stop(signum) == 0, process.output
    assert process.output.rstrip().endswith(STOPPED), process.output
    assert "正在停止 stopping: queued deliveries stay planned" in process.output
    assert "Traceback" not in process.output
    assert (state / "delivery-log.sqlite3").exists()


def test_run_refuses_an_invalid_config_and_starts_nothing(sample: Path, tmp_path: Path) -> None:
    lines = sample.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("default_theme:"))
    lines.insert(at + 1, "defualt_colour: red\n")
    sample.write_text("".join(lines), encoding="utf-8")
    state = tmp_path / "state"
    done = subprocess.run(
        command(sample, "run", "--no-live", "--state-dir", str(state)),
        cwd=sample.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=environment(),
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("配置有 1 处错误 (1 error in configuration):\n")
    assert (
        f"  schedules.yaml:{at + 2}: defualt_colour: 未知字段 unknown key 'defualt_colour'; "
        "expected one of campaign, calendar, templates, phases, occasions, themes, "
        "default_theme, targets, channels, rules, duties"
    ) in done.stderr
    assert not state.exists()


def test_run_applies_a_valid_edit_and_refuses_an_invalid_one(
    tmp_path: Path, running: list[Running]
) -> None:
    config = write_campaign(tmp_path / "mini", DAILY)
    process = Running(config, "--state-dir", str(tmp_path / "state"))
    running.append(process)
    out = process.wait_for(STARTED)
    assert "启动 starting: 迷你测试活动, 3 rules" in out
    assert re.search(r"^下次 next: \d{4}-\d\d-\d\d \d\d:\d\d daily-handoff$", out, re.M), out

    broken = DAILY.replace(
        "    channels: [handoff]\n    targets: {tags: [group]}\n    when: {daily",
        "    channels: [handof]\n    targets: {tags: [group]}\n    when: {daily",
    )
    assert broken != DAILY
    line = broken.lstrip("\n").splitlines().index("    channels: [handof]") + 1
    replace_config(config, broken.lstrip("\n"))
    out = process.wait_for(
        "配置修改无效，继续使用原配置 edit refused, the previous config keeps running:"
    )
    out = process.wait_for(
        f"schedules.yaml:{line}: rules[2].channels[0]: 未知的渠道 unknown channel 'handof'; "
        "expected one of handoff, texts (did you mean 'handoff'?)"
    )
    assert "已应用新配置" not in out

    edited = DAILY + (
        "  - id: evening-handoff\n"
        "    channels: [handoff]\n"
        "    targets: {tags: [group]}\n"
        '    when: {daily: true, at: "19:00"}\n'
    )
    replace_config(config, edited.lstrip("\n"))
    process.wait_for("已应用新配置 config reloaded: 4 rules")

    assert process.stop(signal.SIGTERM) == 0, process.output
    assert process.output.rstrip().endswith(STOPPED)
    assert "Traceback" not in process.output
