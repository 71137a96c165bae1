"""Output that nobody reads any more, and output on a narrow terminal.

A reader that closes the pipe early (`| head`, `| grep -q`) is no error: every command
exits 0 without a word on stderr, whether the pipe broke while rich printed a table,
while CSV was written, or when Python flushed stdout at exit. These run the real command
with real pipes. At 80 columns tables wrap and never crop what a clerk needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from broadcaster.cli import cli
from broadcaster.cli.output import fit_table
from tests.conftest import REPO, write_campaign
from tests.processes import command, environment

RACE_RUNS = 20


def closed_at_once(config: Path, *args: str, cwd: Path, unbuffered: bool = True) -> tuple[int, str]:
    """Run `broadcaster ARGS` with a stdout pipe whose reader is gone before anything is
    written: every write fails (EPIPE). Unbuffered or not: without PYTHONUNBUFFERED a
    small output stays in Python's buffer until the flush at exit."""
    env = environment()
    if not unbuffered:
        env.pop("PYTHONUNBUFFERED")
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            command(config, *args),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    return done.returncode, done.stderr.decode("utf-8", "replace")


def grep_q(config: Path, *args: str, cwd: Path, word: str) -> tuple[int, str]:
    """`broadcaster ARGS | grep -q WORD`: read until WORD shows, then close the pipe while
    the command may still be writing."""
    proc = subprocess.Popen(
        command(config, *args),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        seen = b""
        while word.encode() not in seen:
            chunk = proc.stdout.read1(256)
            assert chunk, f"{word!r} never printed"
            seen += chunk
        proc.stdout.close()
        errors = proc.stderr.read().decode("utf-8", "replace")
        return proc.wait(timeout=120), errors
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    return tmp_path / "schedules.yaml"


@pytest.mark.parametrize(
    ("args", "unbuffered"),
    [
        (("calendar", "show", "2026"), True),  # a rich table
        (("calendar", "show", "2026"), False),
        (("plan", "--from", "2026-03-02", "--to", "2026-03-03", "--format", "csv"), False),
        (("plan", "--from", "2026-03-02", "--to", "2026-03-03", "--format", "jsonl"), True),
        (("plan", "--from", "2026-03-02", "--to", "2026-03-08"), True),
        (("log", "--format", "csv"), False),  # a header only: written by the flush at exit
        (("--help",), False),
        (("--version",), True),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else f"unbuffered={value}",
)
def test_a_command_writing_into_a_closed_pipe_exits_0_quietly(
    tmp_path: Path, args: tuple[str, ...], unbuffered: bool
) -> None:
    config = write_campaign(tmp_path / "mini")
    args = (*args, "--state-dir", str(tmp_path / "state")) if args[0] == "log" else args
    code, errors = closed_at_once(config, *args, cwd=config.parent, unbuffered=unbuffered)
    assert code == 0, errors
    assert all(line.startswith("警告 warning ") for line in errors.splitlines()), errors


def test_calendar_into_grep_q_exits_0_every_time(tmp_path: Path) -> None:
    """`.ci/run`'s install check, `calendar show 2026 | grep -q 春节`, 20 times over."""
    missing = tmp_path / "no-config.yaml"  # the official calendar only: a quick start

    def once(_: int) -> tuple[int, str]:
        return grep_q(missing, "calendar", "show", "2026", cwd=tmp_path, word="春节")

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(once, range(RACE_RUNS)))
    assert results == [(0, "")] * RACE_RUNS


def test_the_sample_calendar_into_grep_q(sample: Path) -> None:
    """The same with the sample config loaded (the phases and occasions rows follow)."""
    for _ in range(3):
        assert grep_q(sample, "calendar", "show", "2026", cwd=sample.parent, word="春节") == (0, "")


# -- 80 columns -------------------------------------------------------------------------------------


def lines_of(output: str) -> list[str]:
    return output.splitlines()


def test_the_channel_table_at_80_columns_keeps_variable_names_whole(
    sample: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["-c", str(sample), "channels", "--state-dir", str(tmp_path / "state")],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert max(cell_len(line) for line in lines_of(result.output)) <= 80
    assert "…" not in result.output
    for name in ("SMS_GATEWAY_TOKEN", "WECOM_CADRES_KEY", "VOICE_GATEWAY_TOKEN"):
        assert any(name in line for line in lines_of(result.output)), name
    for channel in ("loudspeaker_scripts", "group_handoff", "voice_gateway", "sms_gateway"):
        assert any(channel in line for line in lines_of(result.output)), channel


def test_simulate_at_80_columns_says_how_many_targets_are_hidden(
    sample: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            *("-c", str(sample), "simulate", "--now", "2026-11-24T08:00", "--days", "7"),
            *("--state-dir", str(tmp_path / "state")),
        ],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert not re.search(r"\S…|…\S", result.output)  # only date ranges: 2026-11-24 … 11-30
    m = re.search(r"^按对象 by target \(15/(\d+)\)$", result.output, re.M)
    assert m, result.output
    hidden = int(m.group(1)) - 15
    assert hidden > 0
    assert (
        f"  另有 {hidden} 个对象未显示 {hidden} more targets not shown (broadcaster log --target ID)"
        in result.output
    )
    by_target = result.output[result.output.index("按对象 by target") :]
    table = by_target[: by_target.index("另有")]
    assert max(cell_len(line) for line in lines_of(table)) <= 80


def test_fit_table_folds_what_it_must_and_keeps_ascii_words_whole() -> None:
    def table() -> Table:
        made = Table()
        for column in ("渠道 channel", "类型 type", "状态 status", "原因 reason"):
            made.add_column(column)
        made.add_row(
            "loudspeaker_scripts (县直机关企业微信群机器人)",
            "webhook",
            "[yellow]停用 disabled[/yellow]",
            "缺少环境变量 environment variable VOICE_GATEWAY_TOKEN not set",
        )
        return made

    for width, whole in ((80, ()), (60, (3,)), (50, (3,))):
        console = Console(width=width, record=True, force_terminal=False)
        console.print(fit_table(table(), width, *whole))
        text = console.export_text()
        assert "…" not in text
        assert max(cell_len(line) for line in lines_of(text)) <= width
        assert any("VOICE_GATEWAY_TOKEN" in line for line in lines_of(text)), text
        if not whole:
            assert any("loudspeaker_scripts" in line for line in lines_of(text)), text
