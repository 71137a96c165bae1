"""channels, simulate, send-now and log through the command line, on the shipped sample.

`simulate` runs in virtual time (`--now`, `--from`); `send-now` uses the real clock, so
its assertions never depend on the hour (the SMS copies drop their quiet hours). SMS
goes to the local `webhook_server` fake; every other channel writes to an outbox.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from broadcaster.cli import cli
from tests.conftest import MINI, REPO, write_campaign
from tests.fakes.http import FakeHTTPServer, Reply
from tests.fakes.webhook_server import Mode, WebhookFake

TZ = ZoneInfo("Asia/Shanghai")
SECRET = "S3cr3t-Token-XYZ"
SMS_MISSING = "缺少环境变量 environment variable SMS_GATEWAY_TOKEN not set"
WECOM_MISSING = "缺少环境变量 environment variable WECOM_CADRES_KEY not set"
ALERT = "近期有人冒充快递客服以理赔为由诈骗"
# the groups the sample's groups-twice-weekly rule reaches, and its village_group subset
VILLAGE_GROUPS = {"河西村阳光村务群", "上塘村阳光村务群", "上塘村老年协会群", "李家村阳光村务群"}
MASKED_MOBILE = re.compile(r"1\d{2}\*{4}\d{4}")


def sample_numbers() -> set[str]:
    """Every mobile number in the sample: the lists under schedules.d/lists and inline contacts."""
    text = "".join(
        p.read_text(encoding="utf-8") for p in (REPO / "schedules.d/lists").glob("*.csv")
    )
    text += (REPO / "schedules.yaml").read_text(encoding="utf-8")
    numbers = set(re.findall(r"(?<!\d)1[3-9]\d{9}(?!\d)", text))
    assert len(numbers) == 12, numbers  # 3 inline, 5 + 4 in the SMS lists, 13800000201 twice
    return numbers


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A copy of the shipped sample campaign."""
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    return tmp_path / "schedules.yaml"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def aim_sms_at(config: Path, server: WebhookFake) -> None:
    """Point the sample's sms_gateway at the fake; drop its quiet hours (send-now uses the real clock)."""
    text = config.read_text(encoding="utf-8")
    head, sep, rest = text.partition("  sms_gateway:\n")
    block, sep2, tail = rest.partition("  voice_gateway:\n")
    assert sep and sep2, "the sample's channels changed"
    new = block.replace("url: https://sms.example.gov.cn/api/v1/send", f"url: {server.url}/send")
    new = re.sub(r'\n    quiet_hours: "[^"]*"', "", new)
    assert new.count(server.url) == 1 and "quiet_hours" not in new, new
    config.write_text(head + sep + new + sep2 + tail, encoding="utf-8")


@pytest.fixture
def sms_sample(sample: Path, webhook_server: WebhookFake, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample with SMS_GATEWAY_TOKEN set to the fake's token and sms_gateway aimed at it."""
    aim_sms_at(sample, webhook_server)
    monkeypatch.setenv("SMS_GATEWAY_TOKEN", webhook_server.token)
    return sample


def invoke(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args], input=input)


def table(output: str, title: str) -> list[dict[str, str]]:
    """The rows of the rich table printed under `title`, cells joined across wrapped lines."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    header: list[str] = []
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line[:1] not in "┃│":
            continue
        cells = [c.strip() for c in line.strip()[1:-1].split(line[0])]
        if line[0] == "┃":
            header = (
                cells
                if not header
                else [f"{a} {b}".strip() for a, b in zip(header, cells, strict=True)]
            )
        elif cells[0] or not rows:
            rows.append(cells)
        else:  # a wrapped row
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return [dict(zip(header, row, strict=True)) for row in rows]


def outbox(folder: Path) -> list[dict[str, str]]:
    """Every line of every day file of one outbox folder."""
    lines = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            lines += [json.loads(line) for line in handle]
    return lines


def log_csv(config: Path, *args: str) -> list[dict[str, str]]:
    result = invoke(config, "log", "--format", "csv", *args)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def without_timing(output: str) -> str:
    """Simulate's output minus its last line (real time elapsed)."""
    return "\n".join(line for line in output.splitlines() if not line.startswith("虚拟时间用时"))


def all_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


SIMULATE_WEEK = ("simulate", "--now", "2026-11-24T08:00", "--days", "7")


# -- channels ---------------------------------------------------------------------------------------


def test_channels_lists_plugins_and_the_sample_channels(sample: Path, state: Path) -> None:
    result = invoke(sample, "channels", "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    plugins = {r["名称 name"]: r for r in table(result.output, "渠道插件 channel plugins")}
    assert {"outbox", "webhook"} <= set(plugins)
    for name in ("outbox", "webhook"):
        assert plugins[name]["来源 source"] == "built-in"
        assert plugins[name]["状态 status"] == "可用 available"
        assert plugins[name]["原因 reason"] == "—"
    rows = {r["渠道 channel"]: r for r in table(result.output, "渠道 channels")}
    assert list(rows) == [
        "group_handoff (微信群转发稿)",
        "reports (报表提醒)",
        "loudspeaker_scripts (大喇叭播音稿)",
        "led_items (显示屏轮播)",
        "cadres_bot (县直机关企业微信群机器人)",
        "sms_gateway (县短信平台)",
        "voice_gateway (语音提醒平台)",
    ]
    for name in list(rows)[:4]:
        expected = "led" if name.startswith("led_items") else "outbox"  # screens fetch the feed
        assert (rows[name]["类型 type"], rows[name]["状态 status"]) == (expected, "就绪 ready")
    sms = rows["sms_gateway (县短信平台)"]
    assert (sms["类型 type"], sms["消息 kind"], sms["状态 status"], sms["原因 reason"]) == (
        "webhook",
        "短信 sms",
        "停用 disabled",
        SMS_MISSING,
    )
    assert rows["cadres_bot (县直机关企业微信群机器人)"]["原因 reason"] == WECOM_MISSING
    assert rows["voice_gateway (语音提醒平台)"]["状态 status"] == "停用 disabled"


def test_channels_with_the_sms_token_set_shows_the_gateway_ready(
    sample: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_TOKEN", "any-token")
    result = invoke(sample, "channels", "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    rows = {r["渠道 channel"]: r for r in table(result.output, "渠道 channels")}
    assert rows["sms_gateway (县短信平台)"]["状态 status"] == "就绪 ready"
    assert rows["sms_gateway (县短信平台)"]["原因 reason"] == "—"
    assert "SMS_GATEWAY_TOKEN" not in result.output
    assert rows["cadres_bot (县直机关企业微信群机器人)"]["状态 status"] == "停用 disabled"


def test_channels_without_a_config_lists_only_the_plugins(tmp_path: Path) -> None:
    result = invoke(tmp_path / "missing.yaml", "channels")
    assert result.exit_code == 0, result.output
    assert "渠道插件 channel plugins" in result.output
    assert "渠道 channels" not in result.output


# -- simulate ---------------------------------------------------------------------------------------


def test_simulate_a_week_of_the_sample(sample: Path, state: Path) -> None:
    result = invoke(sample, *SIMULATE_WEEK, "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    assert (
        "模拟 simulated 2026-11-24 … 2026-11-30: 67 次触发 occurrences, 187 次投递 deliveries"
        in result.output
    )
    summary = {r["渠道 channel"]: r for r in table(result.output, "模拟 simulated")}
    assert {k: (v["已受理 accepted"], v["跳过 skipped"]) for k, v in summary.items()} == {
        f"cadres_bot (停用 disabled: {WECOM_MISSING})": ("0", "1"),  # Monday 30th
        "group_handoff": ("30", "0"),  # 15 groups, Tuesday and Friday
        "led_items": ("98", "0"),  # 2 screens, 08:00-20:00 every 2 hours, 7 days
        "loudspeaker_scripts": ("56", "0"),  # 4 speakers, twice a day, 7 days
        "reports": ("2", "0"),  # 2 offices, Thursday
    }
    themes = {
        r["主题 theme"]: r["投递 deliveries"] for r in table(result.output, "按主题 by theme")
    }
    assert themes == {"全民反诈动员 (mobilise)": "185", "固定模板 fixed template": "2"}
    by_target = {
        r["对象 target"]: r["已受理 accepted"] for r in table(result.output, "按对象 by target")
    }
    assert by_target["第一中学校门电子屏"] == by_target["东风镇便民服务中心门口显示屏"] == "49"

    # one outbox line per accepted delivery, each with the exact text the log hashed
    folder = state / "simulate"
    logged = {
        r["key"]: r
        for r in log_csv(
            sample, "--db", f"sqlite:///{folder / 'simulate.sqlite3'}", "--state-dir", str(folder)
        )
    }
    assert len(logged) == 187
    assert not (folder / "outbox" / "cadres_bot").exists()
    lines = []
    for channel in ("group_handoff", "led_items", "loudspeaker_scripts", "reports"):
        written = outbox(folder / "outbox" / channel)
        assert len(written) == int(summary[channel]["已受理 accepted"]), channel
        assert {line["channel"] for line in written} == {channel}
        lines += written
    assert len({line["key"] for line in lines}) == len(lines)  # nothing written twice
    for line in lines:
        row = logged[line["key"]]
        assert row["status"] == "accepted"
        assert hashlib.sha256(line["text"].encode()).hexdigest() == row["text_sha256"]
        assert line["text"].strip() and line["template"] == row["template"]
        assert line["recipient"] == row["recipient_display"]
        assert not re.search(r"\d{7}", line["recipient"])
    speakers = {
        line["target"]: line["text"]
        for line in lines
        if line["scheduled_at"] == "2026-11-24T07:30:00+08:00"
    }
    assert "东风派出所" in speakers["hexi-speaker"]  # the township's own police station
    assert "青山派出所" in speakers["lijia-speaker"]

    # deterministic: the same summaries and the same messages again
    output, texts = simulate_week(sample, state)
    assert without_target_table(output) == without_target_table(without_timing(result.output))
    assert texts == Counter((x["target"], x["scheduled_at"], x["text"]) for x in lines)
    again = {r["对象 target"]: r["已受理 accepted"] for r in table(output, "按对象 by target")}
    assert sorted(again.values()) == sorted(by_target.values())  # which ties show: see below


def simulate_week(sample: Path, state: Path) -> tuple[str, Counter[tuple[str, ...]]]:
    """Simulate the sample week: the output without timing, and what the outboxes hold."""
    result = invoke(sample, *SIMULATE_WEEK, "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    written: Counter[tuple[str, ...]] = Counter()
    for folder in (state / "simulate" / "outbox").iterdir():
        written.update((x["target"], x["scheduled_at"], x["text"]) for x in outbox(folder))
    return without_timing(result.output), written


def without_target_table(output: str) -> str:
    head, _, rest = output.partition("按对象 by target")
    return head + rest[rest.index("按主题 by theme") :]


def test_simulate_by_target_table_is_deterministic(sample: Path, state: Path) -> None:
    assert simulate_week(sample, state)[0] == simulate_week(sample, state)[0]


def test_simulate_across_spring_festival_uses_its_theme(sample: Path, state: Path) -> None:
    result = invoke(
        sample,
        "simulate",
        "--now",
        "2026-11-24T08:00",
        "--from",
        "2027-02-03",
        "--days",
        "7",
        "--state-dir",
        str(state),
    )
    assert result.exit_code == 0, result.output
    themes = {
        r["主题 theme"]: r["投递 deliveries"] for r in table(result.output, "按主题 by theme")
    }
    assert "春节返乡防骗 (spring_festival)" in themes, themes
    assert "常态化防骗提醒 (routine)" not in themes  # 21 days before 正月初一 (6 February)


def test_simulated_outbox_files_are_named_by_the_local_day(sample: Path, state: Path) -> None:
    result = invoke(sample, *SIMULATE_WEEK, "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    for path in (state / "simulate" / "outbox").rglob("*.jsonl"):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                scheduled = dt.datetime.fromisoformat(json.loads(line)["scheduled_at"])
                assert path.stem == f"{scheduled.astimezone(TZ):%Y-%m-%d}", path


def test_simulate_sms_writes_masked_numbers_only(
    sample: Path, state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_TOKEN", "any-token")
    result = invoke(
        sample,
        "simulate",
        "--now",
        "2026-11-24T08:00",
        "--from",
        "2026-12-08",  # sms-twice-monthly: the 8th, a Tuesday
        "--days",
        "1",
        "--state-dir",
        str(state),
    )
    assert result.exit_code == 0, result.output
    summary = {r["渠道 channel"]: r for r in table(result.output, "模拟 simulated")}
    assert summary["sms_gateway"]["已受理 accepted"] == "12"
    sms = outbox(state / "simulate" / "outbox" / "sms_gateway")
    assert len(sms) == 12
    assert all(MASKED_MOBILE.fullmatch(line["recipient"]) for line in sms)
    assert "138****0201" in {line["recipient"] for line in sms}
    assert all(line["kind"] == "sms" and line["text"] for line in sms)
    files = all_bytes(state)
    assert any(p.name == "simulate.sqlite3" for p, _ in files)
    for number in sample_numbers():
        assert number not in result.output
        for path, data in files:
            assert number.encode() not in data, (number, path)


# -- send-now ---------------------------------------------------------------------------------------


SEND_ALERT = (
    "send-now",
    "--template",
    "alert",
    "--channel",
    "group_handoff",
    "--tag",
    "village_group",
    "--var",
    f"alert_text={ALERT}",
    "--yes",
)


def sent_minute(output: str) -> str:
    m = re.search(r"立即发送 send-now · \S+ · (\d{4}-\d\d-\d\d \d\d:\d\d)", output)
    assert m, output
    return m.group(1)


def test_send_now_sends_once_per_minute(sample: Path, tmp_path: Path) -> None:
    for attempt in range(3):  # the two runs must fall in the same minute of the real clock
        state = tmp_path / f"state{attempt}"
        first = invoke(sample, *SEND_ALERT, "--state-dir", str(state))
        assert first.exit_code == 0, first.output
        written = outbox(state / "channels" / "group_handoff")
        second = invoke(sample, *SEND_ALERT, "--state-dir", str(state))
        assert second.exit_code == 0, second.output
        if sent_minute(first.output) == sent_minute(second.output):
            break
    else:
        pytest.fail("three pairs of runs each straddled a minute")
    assert "group_handoff · bot/alert.j2 ·" in first.output
    assert "  │ ### 反诈提醒｜紧急预警" in first.output
    assert "  │ 牢记“五不”：不回拨、不轻信、不点击、不透露、不转账。" in first.output
    assert "group_handoff: 4 个对象 targets, 4 次投递 deliveries" in first.output
    assert "完成 done: 4 次投递 deliveries — 已受理 accepted×4\n" in first.output
    assert {line["recipient"] for line in written} == VILLAGE_GROUPS
    assert len(written) == 4 and all("紧急预警" in line["text"] for line in written)
    assert (
        "完成 done: 4 次投递 deliveries — 已受理 accepted×4 (此分钟已发送过，未重复发送 already sent"
        " this minute: nothing sent twice)"
    ) in second.output
    assert outbox(state / "channels" / "group_handoff") == written


def test_send_now_var_reaches_the_message(mini: Path, state: Path) -> None:
    result = invoke(
        mini,
        *("send-now", "--template", "alert", "--channel", "handoff", "--tag", "group"),
        *("--var", f"alert_text={ALERT}", "--yes", "--state-dir", str(state)),
    )
    assert result.exit_code == 0, result.output
    assert "完成 done: 2 次投递 deliveries — 已受理 accepted×2" in result.output
    assert f"  │ {ALERT}。" in result.output
    written = outbox(state / "channels" / "handoff")
    assert len(written) == 2 and all(f"{ALERT}。" in line["text"] for line in written)


def test_send_now_declined_sends_nothing(sample: Path, state: Path) -> None:
    args = [a for a in SEND_ALERT if a != "--yes"]
    result = invoke(sample, *args, "--state-dir", str(state), input="n\n")
    assert result.exit_code == 0, result.output  # declining is not an error
    assert "group_handoff: 4 个对象 targets, 4 次投递 deliveries" in result.output
    assert "确认发送? send now? [y/N]: n\n" in result.output
    assert "已取消 cancelled; nothing was sent" in result.stdout
    assert not (state / "channels").exists()


def test_send_now_shows_each_distinct_text_with_its_targets(sample: Path, state: Path) -> None:
    """The alert names each township's own police station: two texts, each with the groups
    it goes to and how many deliveries, before anything is sent."""
    args = [a for a in SEND_ALERT if a != "--yes"]
    result = invoke(sample, *args, "--state-dir", str(state), input="n\n")
    assert result.exit_code == 0, result.output
    blocks: dict[str, list[str]] = {}
    header = ""
    for line in result.output.splitlines():
        if line.startswith("group_handoff · bot/alert.j2 · "):
            header = line
            blocks[header] = []
        elif header and line.startswith("  │ "):
            blocks[header].append(line[4:])
    heads = sorted(blocks, key=len)
    assert len(heads) == 2, result.output
    assert heads[0].endswith(" 字 chars · 1 次投递 deliveries → 李家村阳光村务群")
    assert heads[1].endswith(
        " 字 chars · 3 次投递 deliveries → 河西村阳光村务群、上塘村阳光村务群、上塘村老年协会群"
    )
    assert any("青山派出所" in line for line in blocks[heads[0]])
    assert not any("东风派出所" in line for line in blocks[heads[0]])
    assert any("东风派出所" in line for line in blocks[heads[1]])
    assert "group_handoff: 4 个对象 targets, 4 次投递 deliveries" in result.output
    assert not (state / "channels").exists()


def test_send_now_counts_deliveries_not_attempts(
    sms_sample: Path, state: Path, webhook_server: WebhookFake
) -> None:
    webhook_server.retry_after = "1"
    webhook_server.queue(Mode.THROTTLED, Mode.THROTTLED)  # two sends are tried again, once each
    sent = invoke(
        sms_sample, "send-now", "--rule", "sms-twice-monthly", "--yes", "--state-dir", str(state)
    )
    assert sent.exit_code == 0, sent.output
    assert len(webhook_server.sends) == 14  # 12 deliveries, 14 requests
    assert "完成 done: 12 次投递 deliveries — 已受理 accepted×12\n" in sent.output
    assert webhook_server.duplicate_sends() == {}


def test_send_now_in_quiet_hours_says_the_alert_is_held_back(tmp_path: Path, state: Path) -> None:
    now = dt.datetime.now(TZ)
    quiet = f"{now - dt.timedelta(hours=1):%H:%M}-{now + dt.timedelta(hours=3):%H:%M}"
    rule = MINI[MINI.index("  - id: sms-monthly") :]
    text = (
        MINI.replace(rule, "")
        .replace('quiet_hours: "21:00-08:00"', f'quiet_hours: "{quiet}"')
        .replace("max_length: 30", "max_length: 70")  # the alert is 40 characters
    )
    config = write_campaign(tmp_path / "mini", text)
    result = invoke(
        config,
        *("send-now", "--template", "alert", "--channel", "texts", "--tag", "sms_list"),
        *("--yes", "--state-dir", str(state)),
    )
    assert result.exit_code == 0, result.output
    assert not (state / "channels" / "texts").exists()  # held back: right
    assert f"quiet hours {quiet}" in result.output  # ... but the operator must be told


def test_send_now_refuses_a_message_over_the_channel_length(mini: Path, state: Path) -> None:
    result = invoke(
        mini,
        *("send-now", "--template", "alert", "--channel", "texts", "--tag", "sms_list"),
        *("--yes", "--state-dir", str(state)),
    )
    assert "texts · sms/alert.j2 · 40 字 chars" in result.output
    assert result.exit_code in (1, 2), result.output
    assert "40 characters, over channel 'texts' max_length 30" in result.output
    assert not (state / "channels" / "texts").exists()


def test_send_now_rule_on_a_disabled_channel_logs_skipped(sample: Path, state: Path) -> None:
    result = invoke(
        sample, "send-now", "--rule", "sms-twice-monthly", "--yes", "--state-dir", str(state)
    )
    assert result.exit_code == 0, result.output
    assert (
        f"sms_gateway: 3 个对象 targets, 12 次投递 deliveries (停用 disabled: {SMS_MISSING}; logged as skipped)"
        in result.output
    )
    assert "完成 done: 12 次投递 deliveries — 跳过 skipped×12" in result.output
    assert not (state / "channels" / "sms_gateway").exists()
    rows = log_csv(sample, "--state-dir", str(state))
    assert len(rows) == 12
    assert {(r["channel_id"], r["status"], r["error_class"], r["reason"]) for r in rows} == {
        ("sms_gateway", "skipped", "disabled", SMS_MISSING)
    }
    assert {r["rule_id"] for r in rows} == {"now-sms-twice-monthly"}
    assert all(MASKED_MOBILE.fullmatch(r["recipient_display"]) for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--rule", "sms-twice-monthly", "--template", "alert", "--yes"),
            "错误 Error: --rule 与 --template 只能给一个 give exactly one of --rule or --template",
        ),
        (
            ("--template", "alert", "--channel", "group_handof", "--tag", "village_group"),
            "错误 Error: 无效的值 Invalid value for --channel: 未知的渠道 unknown channel 'group_handof' (did you mean 'group_handoff'?)",
        ),
    ],
)
def test_send_now_bad_usage_on_the_sample(
    sample: Path, state: Path, args: tuple[str, ...], message: str
) -> None:
    result = invoke(sample, "send-now", *args, "--state-dir", str(state))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not state.exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--rule", "sms-monthy", "--yes"),
            "错误 Error: 无效的值 Invalid value for --rule: 未知的规则 unknown rule 'sms-monthy' (did you mean 'sms-monthly'?)",
        ),
        (
            ("--template", "alert", "--tag", "group"),
            "错误 Error: 使用 --template 时须指定渠道 --channel is required with --template",
        ),
        (
            ("--template", "alert", "--channel", "handoff", "--tag", "grup"),
            "错误 Error: 无效的值 Invalid value for --tag: 未知 unknown 'grup' (did you mean 'group'?)",
        ),
        (
            ("--template", "alert", "--channel", "handoff", "--tag", "group", "--var", "oops"),
            "错误 Error: 无效的值 Invalid value for --var: 变量格式错误 expected NAME=VALUE; got 'oops'",
        ),
        (
            ("--template", "alert", "--channel", "handoff"),
            "错误 Error: 请用 --tag、--target 或 --under 选择对象 choose targets with --tag, --target or --under",
        ),
    ],
)
def test_send_now_bad_usage(mini: Path, state: Path, args: tuple[str, ...], message: str) -> None:
    result = invoke(mini, "send-now", *args, "--state-dir", str(state))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not state.exists()


def test_send_now_puts_the_bot_key_in_the_webhook_url(
    sample: Path, state: Path, http_server: FakeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WECOM_CADRES_KEY", "bot-key-1")
    text = sample.read_text(encoding="utf-8")
    assert "url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={bot_key}" in text
    sample.write_text(text.replace("https://qyapi.weixin.qq.com", http_server.url), "utf-8")
    http_server.enqueue(Reply.json({"errcode": 0, "errmsg": "ok"}))
    result = invoke(
        sample, "send-now", "--rule", "cadres-bot-weekly", "--yes", "--state-dir", str(state)
    )
    assert result.exit_code == 0, result.output
    assert "完成 done: 1 次投递 deliveries — 已受理 accepted×1" in result.output
    (request,) = http_server.requests
    assert (request.path, request.query) == ("/cgi-bin/webhook/send", {"key": ["bot-key-1"]})


# -- log --------------------------------------------------------------------------------------------


def test_log_shows_coverage_and_deliveries_after_send_now(sample: Path, state: Path) -> None:
    sent = invoke(sample, *SEND_ALERT, "--state-dir", str(state))
    assert sent.exit_code == 0, sent.output
    result = invoke(sample, "log", "--state-dir", str(state))
    assert result.exit_code == 0, result.output
    (coverage,) = table(result.output, "每次推送覆盖情况 coverage per send")
    assert {k: coverage[k] for k in list(coverage)[1:]} == {
        "规则 rule": "now-alert",
        "渠道 channel": "group_handoff",
        "目标 targeted": "4",
        "已受理 accepted": "4",
        "已送达 delivered": "0",
        "失败 failed": "0",
        "未知 unknown": "0",
        "待人工 unresolved": "0",
        "跳过 skipped": "0",
        "受理率 rate": "100%",
    }
    rows = table(result.output, "投递记录 deliveries")
    assert {r["接收方 recipient"] for r in rows} == VILLAGE_GROUPS
    assert {(r["渠道 channel"], r["状态 status"], r["模板 template"]) for r in rows} == {
        ("group_handoff", "已受理 accepted", "bot/alert.j2")
    }
    assert "共 4 条 4 deliveries" in result.output
    assert "待人工 needs an operator: 0" in result.output

    records = log_csv(sample, "--state-dir", str(state))
    assert {r["recipient_display"] for r in records} == VILLAGE_GROUPS
    assert {r["status"] for r in records} == {"accepted"}
    keys = {line["key"] for line in outbox(state / "channels" / "group_handoff")}
    assert {r["key"] for r in records} == keys


def test_log_lookup_by_phone_and_status(
    sms_sample: Path, state: Path, webhook_server: WebhookFake
) -> None:
    webhook_server.on_request(1, Mode.ERROR_CODE)  # the provider refuses one number
    sent = invoke(
        sms_sample, "send-now", "--rule", "sms-twice-monthly", "--yes", "--state-dir", str(state)
    )
    assert sent.exit_code == 1, sent.output  # a delivery failed: non-zero
    assert "完成 done: 12 次投递 deliveries — 已受理 accepted×11, 失败 failed×1" in sent.output
    # the provider got the clear numbers, once each; the log keeps them masked and hashed
    received = [r.json()["mobile"] for r in webhook_server.sends]
    assert sorted(received) == sorted(f"+86{n}" for n in sample_numbers())
    assert webhook_server.repeated_keys() == {}

    found = invoke(sms_sample, "log", "--phone", "13800000201", "--state-dir", str(state))
    assert found.exit_code == 0, found.output
    (row,) = table(found.output, "号码查询 lookup by number: 138****0201")
    assert (row["渠道 channel"], row["对象 target"], row["接收方 recipient"]) == (
        "sms_gateway",
        "dongfeng-farmers-sms",
        "138****0201",
    )
    assert "共 1 条 1 deliveries" in found.output
    assert "13800000201" not in found.output
    assert "每次推送覆盖情况" not in found.output  # a lookup shows that person's deliveries only
    nobody = invoke(sms_sample, "log", "--phone", "13800009999", "--state-dir", str(state))
    assert nobody.exit_code == 0, nobody.output
    assert table(nobody.output, "号码查询 lookup by number: 138****9999") == []
    assert "共 0 条 0 deliveries" in nobody.output

    (failed,) = log_csv(sms_sample, "--status", "failed", "--state-dir", str(state))
    assert (failed["status"], failed["error_class"]) == ("failed", "content")
    assert failed["reason"].startswith("code='MOBILE_NUMBER_ILLEGAL'")
    assert MASKED_MOBILE.fullmatch(failed["recipient_display"])


def test_log_phone_refuses_what_is_not_a_number(mini: Path, state: Path) -> None:
    result = invoke(mini, "log", "--phone", "12345", "--state-dir", str(state))
    assert result.exit_code == 2
    assert (
        "错误 Error: 无效的值 Invalid value for --phone: 号码无效 not a mainland mobile or landline number"
        in result.output
    )


def test_log_csv_neutralises_formulas(tmp_path: Path, state: Path) -> None:
    names = {
        "g1": '=HYPERLINK("http://evil.example","点我")',
        "g2": "+1+cmd|' /C calc'!A0",
        "g3": "-2+3",
        "g4": "@SUM(1+1)",
    }
    text = MINI.replace(
        "      - {id: g1, name: 一组群, tags: [group]}\n      - {id: g2, name: 二组群, tags: [group]}\n",
        "".join(
            f"      - {{id: {i}, name: {json.dumps(n, ensure_ascii=False)}, tags: [group]}}\n"
            for i, n in names.items()
        ),
    )
    assert text != MINI
    config = write_campaign(tmp_path / "mini", text)
    sent = invoke(config, "send-now", "--rule", "twice-weekly", "--yes", "--state-dir", str(state))
    assert sent.exit_code == 0, sent.output
    assert "完成 done: 4 次投递 deliveries — 已受理 accepted×4" in sent.output
    rows = log_csv(config, "--state-dir", str(state))
    assert sorted(r["recipient_display"] for r in rows) == sorted("'" + n for n in names.values())
    # JSON is for programs, not spreadsheets: the names stay as they are
    result = invoke(config, "log", "--format", "json", "--state-dir", str(state))
    shown = {d["recipient_display"] for d in json.loads(result.stdout)["deliveries"]}
    assert shown == set(names.values())


def test_log_csv_into_a_closed_pipe_exits_quietly(mini: Path, state: Path) -> None:
    simulated = invoke(
        mini, "simulate", "--from", "2026-01-01", "--days", "730", "--state-dir", str(state)
    )
    assert simulated.exit_code == 0, simulated.output  # ~460 deliveries: more CSV than a pipe holds
    folder = state / "simulate"
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", "from broadcaster.cli import main; main()", "-c", str(mini)),
            *("log", "--format", "csv", "--db", f"sqlite:///{folder / 'simulate.sqlite3'}"),
            *("--state-dir", str(folder)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"scheduled_at,")
        proc.stdout.close()  # like `head -1`
        errors = proc.stderr.read().decode("utf-8", "replace")
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert (code, errors) == (0, "")


# -- secrets ----------------------------------------------------------------------------------------


def test_the_sms_token_appears_in_no_output_file_or_outbox_line(
    sample: Path, state: Path, webhook_server: WebhookFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    aim_sms_at(sample, webhook_server)
    webhook_server.token = SECRET
    monkeypatch.setenv("SMS_GATEWAY_TOKEN", SECRET)
    results = [
        invoke(sample, "channels", "--state-dir", str(state)),
        invoke(
            sample, *SIMULATE_WEEK[:3], "--from", "2026-12-08", "--days", "1"
        ),  # default state dir: var/ beside the config, grepped below
        invoke(
            sample, "send-now", "--rule", "sms-twice-monthly", "--yes", "--state-dir", str(state)
        ),
    ]
    # a refused send too: the gateway no longer takes our token (HTTP 401)
    webhook_server.token = "rotated"
    results.append(
        invoke(
            sample,
            *("send-now", "--template", "alert", "--channel", "sms_gateway", "--tag", "sms_list"),
            *("--yes", "--state-dir", str(state)),
        )
    )
    for fmt in ("table", "csv"):
        results.append(invoke(sample, "log", "--format", fmt, "--state-dir", str(state)))
    assert [r.exit_code for r in results] == [0, 0, 0, 1, 0, 0], [r.output for r in results]
    assert "完成 done: 12 次投递 deliveries — 已受理 accepted×12" in results[2].output
    assert "完成 done: 12 次投递 deliveries — 失败 failed×12" in results[3].output
    assert "HTTP 401 配置错误 check url and credentials" in results[5].output  # the CSV
    # the secret was really used: the gateway saw it on every send
    assert {r.headers["Authorization"] for r in webhook_server.sends} == {f"Bearer {SECRET}"}
    for result in results:
        assert SECRET not in result.output
    files = all_bytes(state) + all_bytes(sample.parent / "var")
    assert any(p.suffix == ".sqlite3" for p, _ in files)
    assert any(p.suffix == ".jsonl" for p, _ in files)
    for path, data in files:
        assert SECRET.encode() not in data, path
