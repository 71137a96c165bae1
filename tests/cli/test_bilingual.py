"""Chinese first, English beside, in everything the command line prints: click's own usage
lines, help headings and errors, and the statuses, error classes, themes, weekdays and
message kinds in the tables."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from broadcaster.cli import cli
from broadcaster.cli.labels import activity_text, weekday, when
from broadcaster.cli.run import live_view
from broadcaster.engine.clock import VirtualClock
from broadcaster.log import DeliveryLog
from tests.conftest import REPO
from tests.engine.helpers import at, load, write_engine_campaign


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    return tmp_path / "schedules.yaml"


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, prog_name="broadcaster")
    return result.exit_code, result.stdout, result.stderr


# -- click's own words ------------------------------------------------------------------------------


def test_an_unknown_command_is_a_bilingual_usage_error() -> None:
    code, out, err = run("simulat")
    assert (code, out) == (2, "")
    assert err == (
        "用法 Usage: broadcaster [OPTIONS] COMMAND [ARGS]...\n"
        "查看帮助 Try 'broadcaster --help' for help.\n"
        "\n"
        "错误 Error: 没有这个命令 No such command 'simulat'. Did you mean 'simulate'?\n"
    )


def test_a_missing_option_names_it_in_both_languages(tmp_path: Path) -> None:
    code, _, err = run("-c", str(tmp_path / "none.yaml"), "resolve", "0123abcd", "--by", "王")
    assert code == 2
    assert err.startswith(
        "用法 Usage: broadcaster resolve [OPTIONS] KEY...\n"
        "查看帮助 Try 'broadcaster resolve --help' for help.\n\n"
        "错误 Error: 缺少选项 Missing option '--as'."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("log", "--status", "nope"),
            "错误 Error: 无效的值 Invalid value for '--status': 'nope' is not one of",
        ),
        (
            ("calendar", "show", "1800"),
            "错误 Error: 无效的值 Invalid value for 'YEAR': 1800 is not in the range 1901<=x<=2100.",
        ),
        (("plan", "--frm", "x"), "错误 Error: 没有这个选项 No such option '--frm'."),
        (("plan", "extra"), "错误 Error: 多余的参数 Got unexpected extra argument (extra)"),
        (("calendar", "show"), "错误 Error: 缺少参数 Missing argument 'YEAR'."),
        (
            ("plan", "--now", "soon"),
            "错误 Error: 无效的值 Invalid value for --now: 时间格式错误 expected YYYY-MM-DD or"
            " YYYY-MM-DDTHH:MM; got 'soon'",
        ),
    ],
)
def test_usage_errors_are_bilingual(mini: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = run("-c", str(mini), *args)
    assert code == 2, err
    assert message in err
    assert "\nError:" not in err and not err.startswith("Error:")
    assert err.startswith("用法 Usage: broadcaster ")


def test_help_headings_and_notes_are_bilingual() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert out.startswith("用法 Usage: broadcaster [OPTIONS] COMMAND [ARGS]...\n")
    assert "\n选项 Options:\n" in out and "\n命令 Commands:\n" in out
    assert "显示帮助 show this message and exit." in out
    assert "显示版本 show the version and exit." in out
    assert "Options:" not in out.replace("选项 Options:", "")
    code, out, _ = run("log", "--help")
    assert code == 0
    assert out.startswith("用法 Usage: broadcaster log [OPTIONS] [COMMAND] [ARGS]...\n")
    assert "[默认 default: table]" in out and "[default:" not in out
    assert run("--version")[1].startswith("broadcaster 版本 version ")


def test_declining_and_an_empty_answer_are_bilingual(sample: Path, tmp_path: Path) -> None:
    args = (
        *("-c", str(sample), "send-now", "--template", "alert", "--channel", "group_handoff"),
        *("--tag", "village_group", "--var", "alert_text=测试", "--state-dir", str(tmp_path)),
    )
    code, out, err = run(*args, input="maybe\nn\n")
    assert code == 0, err
    assert "请回答 y 或 n please answer y or n" in err
    assert "已取消 cancelled; nothing was sent" in out
    code, _, err = run(*args, input="")  # stdin closed before an answer
    assert code == 1
    assert err.endswith("已中止 Aborted!\n")


# -- the tables -------------------------------------------------------------------------------------


def test_weekdays_and_times() -> None:
    assert weekday(dt.date(2026, 3, 3)) == "星期二 Tue"
    assert when(at(2026, 3, 8, 7, 30)) == "03-08 星期日 Sun 07:30"
    assert when(at(2026, 3, 8, 7, 30), "%Y-%m-%d") == "2026-03-08 星期日 Sun 07:30"


def test_activity_counts_are_labelled() -> None:
    assert activity_text("tick@2026-03-03T10:00: accepted×5998, failed×2") == (
        "tick@2026-03-03T10:00: 已受理 accepted×5998, 失败 failed×2"
    )
    assert activity_text("续发 0 resumed, x×3") == "续发 0 resumed, x×3"


def test_plan_table_shows_weekdays_and_theme_names(sample: Path) -> None:
    code, out, err = run(
        *("-c", str(sample), "plan", "--from", "2026-12-01", "--to", "2026-12-01"),
        *("--rule", "groups-twice-weekly", "--now", "2026-11-24"),
    )
    assert code == 0, err
    assert "12-01 星期二 Tue 10:00" in out
    assert "常态化防骗提醒" in out and "(routine)" in out  # the cell may wrap
    assert "│ routine" not in out
    assert " Tue 10:00 │" in out and "│ 12-01 Tue" not in out


def test_calendar_weekdays(sample: Path) -> None:
    code, out, err = run("-c", str(sample), "calendar", "show", "2026", "--now", "2026-11-24")
    assert code == 0, err
    assert re.search(r"│ 2026-02-14 +│ 星期六 Sat +│ 调休上班 make-up working day", out)
    assert re.search(r"→ 春节返乡防骗 \(spring_festival\)", out), out


def test_live_view_labels_activity_and_weekdays(tmp_path: Path) -> None:
    config = write_engine_campaign(tmp_path, "http://127.0.0.1:9", channel={"enabled": "auto"})
    app = load(config, environ={})
    with DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=b"k") as store:
        clock = VirtualClock(at(2026, 3, 3, 9, 30))
        runner = app.runner(store, b"k", clock=clock)
        assert runner.claim_leadership()
        runner.activity.add(clock.now(), "done", "groups@2026-03-03T10:00: accepted×2")
        runner.activity.add(clock.now(), "missed", "blast@2026-03-02T10:00 错过 …")
        console = Console(record=True, width=120, force_terminal=False, soft_wrap=True)
        console.print(live_view(runner, app.campaign, store.url_display, 120))
        runner.close()
    text = console.export_text()
    assert "03-03 10:00" in text and "星期二 Tue" in text
    assert "完成 done groups@2026-03-03T10:00: 已受理 accepted×2" in text
    assert "错过 missed blast@2026-03-02T10:00" in text
