"""The offline-activity form (入户宣传登记表) from XLSX and from CSV in GBK: rows read,
title rows skipped, every bad cell reported with file and line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from openpyxl import Workbook

from broadcaster.reports.offline import read_activities


def test_xlsx_form_with_title_rows(tmp_path: Path) -> None:
    book = Workbook()
    ws = book.active
    ws.append(["东风镇反电诈入户宣传登记表"])
    ws.append(["填表单位：东风镇平安办"])
    ws.append(["日期", "乡镇(街道)", "村(社区)", "活动类型", "入户户数", "受众人数"])
    ws.append([dt.datetime(2026, 11, 3), "东风镇", "河西村", "入户走访", 35, 80])
    ws.append(["2026-11-04", "东风镇", "上塘村", "坝坝会", None, 45.0])
    ws.append([None, None, None, None, None, None])
    ws.append(["2026-11-05", "东风镇", "上塘村", "", -3, 1.5])
    path = tmp_path / "form.xlsx"
    book.save(path)
    result = read_activities([path])
    assert [(a.date, a.village, a.kind, a.households, a.people) for a in result.activities] == [
        (dt.date(2026, 11, 3), "河西村", "入户走访", 35, 80),
        (dt.date(2026, 11, 4), "上塘村", "坝坝会", 0, 45),
    ]
    assert [str(p) for p in result.problems] == [
        f"{path}:7: 活动类型 kind: 不能为空 must not be empty",
        f"{path}:7: 入户户数 households: 应为非负整数 expected a whole number ≥ 0; got -3",
        f"{path}:7: 受众人数 people: 应为非负整数 expected a whole number ≥ 0; got 1.5",
    ]


def test_gbk_csv_and_missing_header(tmp_path: Path) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("日期,乡镇,活动类型\n2026年11月3日,青山镇,讲座\n".encode("gb18030"))
    result = read_activities([gbk])
    assert result.encoding == "GB18030" and not result.problems
    assert result.activities[0].township == "青山镇"
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    result = read_activities([nohead])
    assert [str(p) for p in result.problems] == [
        f"{nohead}:1: 缺少表头 no header row with the columns 日期、乡镇(街道)、活动类型 (入户宣传登记表)"
    ]
