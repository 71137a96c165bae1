"""validate, plan, preview and calendar through the command line, on the shipped sample and on small configs."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from tests.conftest import MINI, REPO, write_campaign


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A copy of the shipped sample campaign."""
    shutil.copy(REPO / "schedules.yaml", tmp_path / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", tmp_path / "schedules.d")
    return tmp_path / "schedules.yaml"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_sample_validates_before_october(sample: Path) -> None:
    code, out = invoke("-c", str(sample), "validate", "--now", "2026-03-02")
    assert code == 0, out
    assert "配置有效 valid — 8 rules, 33 targets, 4/7 channels enabled" in out
    assert (
        "channel sms_gateway (webhook) disabled: 缺少环境变量 environment variable SMS_GATEWAY_TOKEN not set"
        in out
    )
    assert "是 yes" in out and "否 no" not in out  # every duty met


def test_a_missing_next_year_is_a_prominent_warning_not_a_failure(sample: Path) -> None:
    """validate passes (occurrences stay estimated); calendar check fails, for monitoring."""
    code, out = invoke("-c", str(sample), "validate", "--now", "2026-11-24")
    assert code == 0, out
    assert "缺少 2027 年节假日安排 no official holiday file for 2027" in out
    assert "add schedules.d/calendar/2027.yaml" in out
    assert "⚠ 明年节假日 next year's holidays" in out
    assert "✔" in out and "✘" not in out and "校验未通过" not in out  # never valid and failed
    code, out = invoke("-c", str(sample), "calendar", "check", "--now", "2026-11-24")
    assert code == 1
    assert "2026: 有 present" in out
    # once the office adds the file, both pass
    (sample.parent / "schedules.d/calendar/2027.yaml").write_text(
        "year: 2027\nsource: {title: 国务院办公厅关于2027年部分节假日安排的通知, url: https://www.gov.cn/}\n"
        "holidays:\n  - {name: 元旦, en: New Year's Day, start: 2027-01-01, end: 2027-01-01}\nworkdays: []\n",
        encoding="utf-8",
    )
    assert invoke("-c", str(sample), "calendar", "check", "--now", "2026-11-24")[0] == 0
    code, out = invoke("-c", str(sample), "validate", "--now", "2026-11-24")
    assert code == 0, out
    assert "明年节假日" not in out


def test_validate_fails_without_this_years_holidays(sample: Path) -> None:
    code, out = invoke("-c", str(sample), "validate", "--now", "2028-03-02")
    assert code == 1
    assert "✘ 校验未通过 validate fails: no official holiday file for 2028" in out
    assert "✔" not in out


def test_validate_warns_about_weeks_that_fall_short(tmp_path: Path) -> None:
    text = MINI.replace("on_holiday: next_working_day}", "on_holiday: next_working_day}").replace(
        'when: {weekdays: [tue, fri], at: "10:00"}',
        'when: {weekdays: [tue, fri], at: "10:00", on_holiday: skip}',
    ) + (
        "duties:\n  - {id: twice, name: 每周两次, targets: {tags: [group]}, per: week, at_least: 2}\n"
        "  - {id: sms, name: 短信每月两次, targets: {tags: [sms_list]}, per: month, at_least: 2}\n"
    )
    path = write_campaign(tmp_path, text)
    code, out = invoke("-c", str(path), "validate", "--now", "2026-03-02")
    assert code == 0  # a warning, not an error
    assert "否 no: 2" in out  # both groups fall short in some weeks
    assert "2026-W08 (02-16~02-22)=0" in out  # 春节 week: Tuesday and Friday are holidays
    assert "2026-W40 (09-28~10-04)=1" in out  # 国庆 week: Friday 2 October is a holiday
    assert "部分对象未达到工作要求 some targets fall short of a duty" in out
    assert invoke("-c", str(path), "validate", "--now", "2026-03-02", "--strict")[0] == 1


def test_plan_csv_lists_every_occurrence_and_is_deterministic(sample: Path) -> None:
    args = (
        "-c",
        str(sample),
        "plan",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-07",
        "--format",
        "csv",
        "--now",
        "2026-11-24T09:00",
    )
    code, out = invoke(*args)
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert invoke(*args)[1] == out
    rules = {r["rule"] for r in rows}
    assert rules == {
        "groups-twice-weekly",
        "cadres-bot-weekly",
        "loudspeaker-daily",
        "led-rotation",
        "report-weekly",
        "report-monthly",
    }
    groups = [r for r in rows if r["rule"] == "groups-twice-weekly"]
    assert {r["time"][:10] for r in groups} == {"2026-12-01", "2026-12-04"}
    assert all(int(r["length"]) > 0 and r["template"].startswith("bot/") for r in groups)
    assert {r["theme"] for r in rows if not r["rule"].startswith("report-")} == {"routine"}
    report = [r for r in rows if r["rule"] == "report-weekly"]
    assert [r["time"] for r in report] == ["2026-12-03T09:00+08:00", "2026-12-03T09:00+08:00"]
    assert [r["template"] for r in report] == ["bot/report_weekly.j2"] * 2
    times = [r["time"] for r in rows]
    assert times == sorted(times)


def test_plan_json_and_filters(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "plan",
        "--from",
        "2026-12-08",
        "--to",
        "2026-12-08",
        "--format",
        "json",
        "--rule",
        "sms-twice-monthly",
        "--now",
        "2026-11-24",
    )
    assert code == 0, out
    rows = json.loads(out)
    assert {r["target"] for r in rows} == {
        "county-cadres-sms",
        "dongfeng-farmers-sms",
        "qingshan-migrants-sms",
    }
    assert {r["recipients"] for r in rows} == {3, 5, 4}
    assert all(r["channel_enabled"] is False for r in rows)
    assert all(int(r["length"]) <= 60 for r in rows)


def test_plan_marks_estimated_dates_in_a_year_without_holiday_data(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "plan",
        "--from",
        "2027-02-01",
        "--to",
        "2027-02-28",
        "--format",
        "jsonl",
        "--rule",
        "report-monthly",
        "--now",
        "2026-11-24",
    )
    assert code == 0, out
    [row] = [json.loads(line) for line in out.splitlines()][:1]
    assert row["time"].startswith("2027-02-05") or row["time"].startswith("2027-02-09")
    assert row["estimated"] is True


def test_plan_table_shows_duties_and_totals(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "plan",
        "--from",
        "2027-01-04",
        "--to",
        "2027-01-31",
        "--now",
        "2026-11-24",
    )
    assert code == 0, out
    assert "推送计划 plan 2027-01-04 … 2027-01-31" in out
    assert "工作要求检查 duty check" in out
    assert "more not shown (use --format csv)" in out


def test_spring_festival_theme_reaches_the_plan(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "plan",
        "--from",
        "2027-02-02",
        "--to",
        "2027-02-02",
        "--format",
        "csv",
        "--rule",
        "groups-twice-weekly",
        "--now",
        "2026-11-24",
    )
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["occasion"] for r in rows} == {"spring_festival"}
    assert {r["theme"] for r in rows} == {"spring_festival"}


def test_school_season_only_reaches_school_audiences(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "plan",
        "--from",
        "2027-03-02",
        "--to",
        "2027-03-02",
        "--format",
        "csv",
        "--rule",
        "groups-twice-weekly",
        "--now",
        "2026-11-24",
    )
    assert code == 0, out
    rows = {r["target"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["g7-1-parents"]["theme"] == "school"
    assert rows["g7-1-class"]["theme"] == "school"
    assert rows["hexi-affairs"]["theme"] == "routine"


def test_preview_shows_exactly_what_each_channel_sends(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "preview",
        "sms-twice-monthly",
        "--date",
        "2026-12-08",
        "--now",
        "2026-11-24",
    )
    assert code == 0, out
    assert (
        "sms_gateway (短信 sms) → 东风镇农民信箱用户 [dongfeng-farmers-sms], 5 人/个 recipient(s)"
        in out
    )
    assert "─ 2026-12-08 星期二 Tue 10:00  sms-twice-monthly ─" in out
    assert "  主题 theme 常态化防骗提醒 (routine) · 类型 topic " in out
    assert "停用 disabled: 缺少环境变量 environment variable SMS_GATEWAY_TOKEN not set" in out
    assert "如有疑问请拨96110或110。" in out


def test_preview_on_a_day_without_the_rule_names_the_next_one(sample: Path) -> None:
    code, out = invoke(
        "-c",
        str(sample),
        "preview",
        "sms-twice-monthly",
        "--date",
        "2026-12-09",
        "--now",
        "2026-11-24",
    )
    assert code == 1
    assert "does not fire on 2026-12-09; next on 2026-12-22 10:00" in out


def test_preview_unknown_rule_suggests_the_right_one(sample: Path) -> None:
    code, out = invoke("-c", str(sample), "preview", "sms-twice-montly", "--now", "2026-11-24")
    assert code == 2
    assert "did you mean 'sms-twice-monthly'?" in out


def test_calendar_show_prints_the_year(sample: Path) -> None:
    code, out = invoke("-c", str(sample), "calendar", "show", "2026", "--now", "2026-11-24")
    assert code == 0, out
    for expected in (
        "2026-02-15 … 2026-02-23",
        "春节 Spring Festival",
        "调休上班 make-up working day",
        "2026-02-14",
        "清明",
        "除夕",
        "集中宣传",
        "国庆假期出行",
    ):
        assert expected in out
    assert "来源 source: 国务院办公厅关于2026年部分节假日安排的通知" in out
    code, out = invoke("-c", str(sample), "calendar", "show", "2027", "--now", "2026-11-24")
    assert "no official arrangement for 2027" in out
    assert "(估 estimated)" in out
