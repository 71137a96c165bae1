"""`broadcaster recipients import/show`, and targets that send to an imported list."""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.recipients.store import RecipientStore
from tests.conftest import write_campaign

CAMPAIGN = """
campaign: {id: lists, name: 名单测试, office: 测试派出所}
phases:
  - {id: main, name: 集中宣传, start: 2026-01-01, end: 2026-12-31}
default_theme: routine
themes:
  routine: {name: 日常, topics: [alpha, beta]}
templates: [tpl]
targets:
  - id: town
    name: 青山镇
    children:
      - id: dongcun
        name: 东村
        tags: [village]
        recipients: {list: dongcun}
channels:
  texts: {type: outbox, kind: sms}
rules:
  - id: elderly
    channels: [texts]
    targets: {tags: [village]}
    recipients: {tags: [老年人]}
    when: {monthdays: [5], at: "10:00"}
  - id: everyone
    channels: [texts]
    targets: {tags: [village]}
    when: {monthdays: [6], at: "10:00"}
"""

GOOD = (
    "姓名,手机,座机,地区,标签\n"
    "张三,13800000001,,一组,老年人\n"
    "李四,13900000002,0571-88886666,二组,学生家长\n"
    "王五,,0571-88887777,二组,老年人\n"  # a landline only: SMS cannot reach it
    "赵六,13700000003,,一组,老年人;外来务工\n"
    "张三,13800000001,,一组,老年人\n"  # a duplicate: merged
)
BAD = GOOD + "钱七,12345678901,,三组,\n孙八,,,三组,\n"


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), *args])
    return result.exit_code, result.output


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    return write_campaign(tmp_path / "c", CAMPAIGN)


def test_a_gbk_file_with_bad_rows_is_refused_whole(campaign: Path) -> None:
    source = campaign.parent / "东村.csv"
    source.write_bytes(BAD.encode("gbk"))
    code, out = invoke(campaign, "recipients", "import", str(source), "--list", "dongcun")
    assert code == 1
    assert f"{source}:7: 手机: 号码无效 not a mainland number: 123****8901" in out
    assert f"{source}:8: 缺少号码 no mobile or landline number on this row" in out
    assert "✘ 名单未导入 not imported: 2 bad row(s)" in out
    assert "(gb18030)" in out
    assert RecipientStore.in_folder(campaign.parent / "var").lists() == []


def test_accept_good_needs_a_rejects_file(campaign: Path) -> None:
    source = campaign.parent / "东村.csv"
    source.write_text(BAD, encoding="utf-8")
    code, out = invoke(campaign, "recipients", "import", str(source), "--accept-good")
    assert code == 2 and "--rejects" in out


def test_accept_good_imports_the_good_rows_and_writes_the_rejects(campaign: Path) -> None:
    source = campaign.parent / "东村.csv"
    source.write_text(BAD, encoding="utf-8-sig")
    rejects = campaign.parent / "rejects.csv"
    code, out = invoke(
        campaign,
        "recipients",
        "import",
        str(source),
        "--list",
        "dongcun",
        "--accept-good",
        "--rejects",
        str(rejects),
    )
    assert code == 0, out
    assert "(utf-8-sig): 7 行 rows, 4 人 people (1 重复已合并 duplicates merged)" in out
    assert "✔ 名单已导入 list 'dongcun' imported: 4 people, 2 bad rows left out" in out
    rows = list(csv.reader(io.StringIO(rejects.read_text(encoding="utf-8-sig"))))
    assert [r[:2] for r in rows[1:]] == [
        ["7", "手机: 号码无效 not a mainland number: 123****8901"],
        ["8", "缺少号码 no mobile or landline number on this row"],
    ]
    store = campaign.parent / "var" / "recipients.sqlite3"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    code, out = invoke(campaign, "recipients", "show", "--list", "dongcun")
    assert code == 0, out
    assert "138****0001" in out and "0571****6666" in out and "张三" in out
    assert "13800000001" not in out and "88886666" not in out


def imported(campaign: Path) -> None:
    source = campaign.parent / "dongcun.xlsx"
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for line in GOOD.splitlines():
        sheet.append(line.split(","))
    book.save(source)
    code, out = invoke(campaign, "recipients", "import", str(source))
    assert code == 0, out
    assert "(xlsx)" in out


def plan_counts(campaign: Path) -> dict[str, int]:
    code, out = invoke(
        campaign, "plan", "--from", "2026-03-05", "--to", "2026-03-06", "--format", "json"
    )
    assert code == 0, out
    return {r["rule"]: r["recipients"] for r in json.loads(out)}


def test_rules_reach_a_lists_mobiles_filtered_by_tag(campaign: Path) -> None:
    code, out = invoke(campaign, "validate", "--now", "2026-03-01")
    assert code == 1
    assert (
        "schedules.yaml:15: targets[0].children[0].recipients.list: 名单未导入 no recipient" in out
    )
    imported(campaign)
    code, out = invoke(campaign, "validate", "--now", "2026-03-01")
    assert code == 0, out
    # SMS reaches mobiles only: 张三, 李四, 赵六; 老年人 among them: 张三, 赵六
    assert plan_counts(campaign) == {"elderly": 2, "everyone": 3}


def test_opt_outs_stay_in_the_count_and_show_as_opted_out(campaign: Path) -> None:
    imported(campaign)
    optout = campaign.parent / "退订.csv"
    optout.write_text("手机\n13800000001\n", encoding="utf-8")
    code, out = invoke(campaign, "recipients", "import", str(optout), "--optout")
    assert code == 0, out
    assert "opt-outs imported: 1 new, 0 already there; 1 in all" in out
    code, out = invoke(campaign, "recipients", "show", "--list", "dongcun")
    assert "已退订 opted out" in out
    code, out = invoke(campaign, "recipients", "show")
    assert "dongcun" in out and "退订 opt-outs: 1" in out


def test_a_filter_that_matches_no_one_fails_validate(campaign: Path) -> None:
    imported(campaign)
    text = (campaign.read_text(encoding="utf-8")).replace("tags: [老年人]", "tags: [学生]")
    campaign.write_text(text, encoding="utf-8")
    code, out = invoke(campaign, "validate", "--now", "2026-03-01")
    assert code == 1
    assert (
        "rules[0].recipients: 名单中没有符合条件的人 channel 'texts': no one on the lists of"
        " dongcun matches this filter (SMS reaches mobiles only)" in out
    )


def test_a_list_file_with_bad_rows_fails_validate_naming_file_and_row(campaign: Path) -> None:
    text = campaign.read_text(encoding="utf-8").replace(
        "recipients: {list: dongcun}", "recipients: {file: lists/东村.csv}"
    )
    campaign.write_text(text, encoding="utf-8")
    (campaign.parent / "lists").mkdir()
    (campaign.parent / "lists" / "东村.csv").write_bytes(BAD.encode("gb18030"))
    code, out = invoke(campaign, "validate", "--now", "2026-03-01")
    assert code == 1
    assert "lists/东村.csv:7: 手机: 号码无效 not a mainland number: 123****8901" in out
    assert "lists/东村.csv:8: 缺少号码 no mobile or landline number on this row" in out
    (campaign.parent / "lists" / "东村.csv").write_bytes(GOOD.encode("gb18030"))
    code, out = invoke(campaign, "validate", "--now", "2026-03-01")
    assert code == 0, out
    assert plan_counts(campaign) == {"elderly": 2, "everyone": 3}
