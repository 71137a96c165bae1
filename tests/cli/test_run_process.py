"""`broadcaster run` as a real process: start, signals, an invalid config, edits while it runs.

The process runs the installed command (or `main()` through the interpreter when the
script is missing) on a copy of a campaign, without the live view (`--no-live`), with
stdin closed. Its output is read line by line in a thread; a test waits for a line
with a deadline, never with a fixed sleep.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from broadcaster.cli.run import STOP_SECONDS
from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import MINI, REPO, write_campaign
from tests.engine.helpers import numbers, write_engine_campaign
from tests.engine.test_processes import KEY, TICK, env, fired_at, once_now
from tests.fakes.webhook_server import Mode, WebhookFake
from tests.processes import STARTED, STOPPED, Running, command, environment

TZ = ZoneInfo("Asia/Shanghai")
MASKED = re.compile(r"1\d{2}\*{4}\d{4}")
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
    upcoming = re.findall(
        r"^下次 next: (\d{4}-\d\d-\d\d) 星期. [A-Z][a-z]{2} (\d\d:\d\d) (\S+)$", out, re.M
    )
    assert len(upcoming) == 5, out
    times = [dt.datetime.fromisoformat(f"{d} {t}").replace(tzinfo=TZ) for d, t, _ in upcoming]
    assert times == sorted(times) and times[0] >= started_at
    assert {rule for _, _, rule in upcoming} <= SAMPLE_RULES

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
        "expected one of campaign, calendar, log, templates, phases, occasions, themes, "
        "default_theme, targets, channels, rules, duties, approval"
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
    assert re.search(r"^下次 next: \d{4}-\d\d-\d\d 星期. \w{3} \d\d:\d\d daily-handoff$", out, re.M)

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


# -- stopping: whatever stdout is, within a bounded time, quietly ---------------------------------


def outbox_campaign(folder: Path, contacts: int, rule: dict[str, object]) -> Path:
    """One outbox SMS channel and `rule` (made by `once_now`) to a list of `contacts`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text(
        "name,phone\n" + "".join(f"P{i},{n}\n" for i, n in enumerate(numbers(contacts))),
        encoding="utf-8",
    )
    config = {
        "campaign": {"id": "engine", "name": "扇出测试", "office": "测试派出所"},
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": ["order_brushing", "loan"]}},
        "targets": [
            {
                "id": "people",
                "name": "短信名单",
                "audience": "villagers",
                "tags": ["sms_list"],
                "contacts_file": "people.csv",
            }
        ],
        "channels": {"texts": {"type": "outbox", "kind": "sms", "max_length": 200}},
        "rules": [{**rule, "channels": ["texts"]}],
    }
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return path


def log_of(url: str) -> DeliveryLog:
    return DeliveryLog.open(url, hash_key=KEY.encode())


@pytest.mark.parametrize("who", ["group", "reader first"])
def test_run_into_tee_stops_cleanly_on_ctrl_c(tmp_path: Path, who: str) -> None:
    """`broadcaster run | tee run.log`, then Ctrl-C: the terminal sends SIGINT to the whole
    process group, tee dies and stdout becomes a broken pipe. The shutdown still runs (the
    scheduler lease is released, every delivery is logged) and the exit code is 0."""
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    rule = once_now(url, TICK)
    config = outbox_campaign(tmp_path / "campaign", 20, rule)
    now = fired_at(rule)
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:
        run = subprocess.Popen(
            command(config, "run", "--no-live"),
            cwd=config.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=environment(env(url, tmp_path / "state")),
            process_group=0,  # a process group of its own, as a shell pipeline has
        )
    assert run.stdout is not None
    try:
        tee = subprocess.Popen(
            ["tee", str(tmp_path / "run.log")],
            stdin=run.stdout,
            stdout=subprocess.PIPE,
            process_group=run.pid,
        )
    except BaseException:
        run.kill()
        run.wait()
        raise
    finally:
        run.stdout.close()  # tee is the only reader
    try:
        assert tee.stdout is not None
        seen = ""
        while "完成 done tick@" not in seen or STARTED not in seen:
            line = tee.stdout.readline().decode("utf-8")
            assert line, f"the run ended early:\n{seen}\n{errors.read_text('utf-8')}"
            seen += line
        if who == "reader first":  # the reader is surely gone before anything more is written
            tee.kill()
            tee.wait(timeout=10)
        os.killpg(run.pid, signal.SIGINT)
        code = run.wait(timeout=60)
        tee.wait(timeout=10)
    finally:
        for proc in (run, tee):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if tee.stdout is not None:
            tee.stdout.close()
    assert tee.returncode != 0  # tee was interrupted (or killed) too
    assert code == 0, errors.read_text("utf-8")
    assert errors.read_text("utf-8").count("Traceback") == 0
    with log_of(url) as log:
        rows = log.deliveries(campaign="engine")
        assert len(rows) == 20 and {r.status for r in rows} == {Status.ACCEPTED}
        lease = log.lease("scheduler:engine")
        assert lease is not None and lease.until < dt.datetime.now(dt.UTC)  # released
        states = log.occurrence_states("engine", now, now + dt.timedelta(minutes=1))
        assert {s.status for s in states.values()} == {"done"}


def test_sigterm_with_a_provider_that_never_answers_stops_within_seconds(
    tmp_path: Path, webhook_server: WebhookFake, running: list[Running]
) -> None:
    """Four requests hang (the provider never answers, the read timeout is a minute): the
    stop waits STOP_SECONDS for them, logs exactly those four interrupted, leaves the other
    deliveries planned for the next start, and the process ends at once after that."""
    webhook_server.mode = Mode.HANG
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    config = write_engine_campaign(
        tmp_path / "campaign",
        webhook_server.url,
        contacts=200,
        channel={"concurrency": 4},
        settings={"timeout": [2, 60]},
        rules=[once_now(url, TICK)],
        phases=False,
    )
    process = Running(config, env=env(url, tmp_path / "state"))
    running.append(process)
    process.wait_for(STARTED, timeout=60)
    webhook_server.wait_for(4, timeout=60)
    started = time.monotonic()
    code = process.stop(signal.SIGTERM, timeout=60)
    took = time.monotonic() - started
    assert code == 0, process.output
    assert took < STOP_SECONDS + 15, f"stopping took {took:.1f}s"  # it took a minute before
    out = process.output
    assert "停止 stop 4 条请求等待应答时停止，记为中断 in flight at stop, logged interrupted" in out
    assert out.rstrip().endswith(STOPPED), out
    assert "Traceback" not in out and "Exception" not in out
    hung = {r.headers["Idempotency-Key"] for r in webhook_server.sends}
    assert len(hung) == 4
    with log_of(url) as log:
        rows = log.deliveries(campaign="engine")
        interrupted = {r.key for r in rows if r.status is Status.INTERRUPTED}
        assert interrupted == hung  # only what was really in flight
        assert Counter(r.status for r in rows) == {Status.INTERRUPTED: 4, Status.PLANNED: 196}


def test_run_summarises_a_fan_out_of_6000_in_two_lines(
    tmp_path: Path, running: list[Running]
) -> None:
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    rule = once_now(url, TICK)
    config = outbox_campaign(tmp_path / "campaign", 6_000, rule)
    now = fired_at(rule)
    process = Running(config, env=env(url, tmp_path / "state"))
    running.append(process)
    occurrence = f"tick@{now:%Y-%m-%dT%H:%M}"
    process.wait_for(f"完成 done {occurrence}: ", timeout=180)
    assert process.stop(signal.SIGTERM) == 0, process.output
    lines = process.output.splitlines()
    assert len(lines) < 40, process.output
    fired = [line for line in lines if f"触发 fired {occurrence}" in line]
    done = [line for line in lines if f"完成 done {occurrence}" in line]
    [line] = (
        fired  # caught up a minute or two late: "… deliveries · 补发 caught up 2 分 2 min late"
    )
    assert line.split(" ", 2)[2].startswith(f"触发 fired {occurrence}: 6000 次投递 deliveries")
    assert [line.split(" ", 2)[2] for line in done] == [
        f"完成 done {occurrence}: 已受理 accepted×6000"
    ]
    assert not MASKED.search(process.output)  # no line per delivery
