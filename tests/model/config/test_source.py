from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from broadcaster.errors import ConfigError
from broadcaster.model.config import load_campaign
from broadcaster.model.config.source import load_document
from tests.conftest import MINI, write_campaign


def doc_of(tmp_path: Path, text: str):
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    return load_document(path)


def test_scalars_follow_yaml_1_2_so_times_and_weekdays_stay_text(tmp_path: Path) -> None:
    doc, issues = doc_of(
        tmp_path,
        "a: 10:00\nb: on\nc: no\nd: 2026-03-05\ne: 010\nf: 0x1f\ng: true\nh: ~\ni: 1.5\nj: '7'\n",
    )
    assert not issues
    assert doc.data == {
        "a": "10:00",
        "b": "on",
        "c": "no",
        "d": dt.date(2026, 3, 5),
        "e": 10,
        "f": 31,
        "g": True,
        "h": None,
        "i": 1.5,
        "j": "7",
    }


def test_a_date_that_does_not_exist_reaches_validation_as_text(tmp_path: Path) -> None:
    doc, issues = doc_of(tmp_path, "d: 2026-02-30\n")
    assert not issues
    assert doc.data == {"d": "2026-02-30"}


def test_marks_point_at_the_key_line(tmp_path: Path) -> None:
    doc, _ = doc_of(tmp_path, "rules:\n  - id: a\n    when:\n      at: '10:00'\n")
    assert doc.mark(("rules", 0, "when", "at")).line == 4
    assert doc.mark(("rules", 0, "when", "missing")).line == 3  # nearest marked ancestor


def test_includes_merge_lists_and_maps_and_keep_their_own_marks(tmp_path: Path) -> None:
    text = MINI + "include: [towns/*.yaml]\n"
    extra = {
        "towns/east.yaml": """
            # 东镇 keeps its own targets
            targets:
              - id: east
                name: 东镇
                parent: town
                tags: [township]
                children:
                  - {id: east-1, name: 东镇一组群, tags: [group]}
            """,
    }
    campaign = load_campaign(write_campaign(tmp_path, text, extra=extra), today=dt.date(2026, 3, 2))
    assert campaign.targets["east"].parent == "town"
    assert campaign.targets["east-1"].audience == "villagers"  # inherited through the include
    assert campaign.targets["east-1"].path == ("测试镇", "东镇", "东镇一组群")
    assert "east-1" in campaign.rule("twice-weekly").targets
    mark = campaign.doc.mark(("targets", 1, "children", 0, "tags"))
    assert (Path(mark.file).name, mark.line) == ("east.yaml", 8)


def test_errors_in_an_include_name_that_file(tmp_path: Path) -> None:
    text = MINI + "include: [towns/east.yaml]\n"
    extra = {"towns/east.yaml": "targets:\n  - id: east\n    name: 东镇\n    parent: twon\n"}
    with pytest.raises(ConfigError) as info:
        load_campaign(write_campaign(tmp_path, text, extra=extra), today=dt.date(2026, 3, 2))
    assert [str(i) for i in info.value.issues] == [
        "towns/east.yaml:4: targets[0].parent: 未知的上级对象 unknown parent target 'twon' (did you mean 'town'?)"
    ]


def test_a_map_key_defined_in_two_files_is_an_error(tmp_path: Path) -> None:
    text = MINI + "include: [more.yaml]\n"
    extra = {"more.yaml": "channels:\n  handoff: {type: outbox, kind: bot}\n"}
    with pytest.raises(ConfigError) as info:
        load_campaign(write_campaign(tmp_path, text, extra=extra), today=dt.date(2026, 3, 2))
    assert [str(i) for i in info.value.issues] == [
        "more.yaml:2: channels.handoff: 重复定义 defined twice; first at schedules.yaml:24"
    ]


def test_root_only_sections_are_refused_in_an_include(tmp_path: Path) -> None:
    text = MINI + "include: [more.yaml]\n"
    extra = {"more.yaml": "campaign: {id: other, name: 别的}\n"}
    with pytest.raises(ConfigError) as info:
        load_campaign(write_campaign(tmp_path, text, extra=extra), today=dt.date(2026, 3, 2))
    assert [str(i) for i in info.value.issues] == [
        "more.yaml:1: campaign: 只能写在主配置文件中 'campaign' belongs in the main file only, not in an include"
    ]


def test_a_missing_include_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_campaign(
            write_campaign(tmp_path, MINI + "include: [nope.yaml]\n"), today=dt.date(2026, 3, 2)
        )
    assert [str(i) for i in info.value.issues] == ["nope.yaml: 文件不存在 file not found"]
