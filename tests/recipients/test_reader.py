"""Reading recipient list files: encodings, XLSX, bad rows, duplicates, 100,000 rows."""

from __future__ import annotations

import io
import sys

import openpyxl
import pytest

from broadcaster.recipients.reader import contacts_of, read_list, write_rejects

LIST = (
    "姓名,手机,座机,地区,标签\n"
    "张三,13800000001,,东村/一组,老年人\n"
    "李四,139 0000 0002,0571-8888 6666,东村/二组,学生家长;外来务工\n"
    "王五,,010-6666 8888,西村,老年人\n"
)


def test_utf8_with_and_without_bom_and_gbk_read_the_same() -> None:
    plain = read_list(LIST.encode("utf-8"))
    bom = read_list(b"\xef\xbb\xbf" + LIST.encode("utf-8"))
    gbk = read_list(LIST.encode("gbk"))
    gb18030 = read_list(LIST.encode("gb18030"))
    assert (plain.encoding, bom.encoding, gbk.encoding, gb18030.encoding) == (
        "utf-8",
        "utf-8-sig",
        "gb18030",
        "gb18030",
    )
    assert plain.rows == bom.rows == gbk.rows == gb18030.rows
    assert plain.problems == []
    first, second, third = plain.rows
    assert (first.name, first.mobile, first.landline, first.area, first.tags) == (
        "张三",
        "+8613800000001",
        None,
        "东村/一组",
        ("老年人",),
    )
    assert (second.mobile, second.landline, second.tags) == (
        "+8613900000002",
        "+8657188886666",
        ("学生家长", "外来务工"),
    )
    assert (third.mobile, third.landline) == (None, "+861066668888")


def test_english_headers_and_a_phone_column_of_either_kind() -> None:
    read = read_list(b"name,phone,tags\nA,13800000001,x\nB,0571-88886666,y\n")
    assert [(r.mobile, r.landline) for r in read.rows] == [
        ("+8613800000001", None),
        (None, "+8657188886666"),
    ]


def xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture(params=["calamine", "openpyxl"])
def xlsx_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both XLSX readers: python-calamine, and openpyxl where calamine is not installed."""
    if request.param == "openpyxl":
        monkeypatch.setitem(sys.modules, "python_calamine", None)
    return str(request.param)


def test_a_damaged_xlsx_is_one_problem(xlsx_reader: str) -> None:
    read = read_list(b"PK\x03\x04" + b"\x00" * 64)
    assert read.rows == [] and len(read.problems) == 1
    assert read.problems[0].reason.startswith("无法读取 Excel 文件 cannot read the XLSX file")


def test_xlsx_numbers_typed_as_numbers_or_text(xlsx_reader: str) -> None:
    raw = xlsx(
        [
            ["姓名", "手机", "地区", "标签"],
            ["张三", 13800000001, "东村", "老年人"],
            ["李四", "'13900000002", "西村", None],
            [None, None, None, None],  # a blank row is skipped
            ["王五", 13700000003.0, "", "学生家长、外来务工"],
        ]
    )
    read = read_list(raw)
    assert read.encoding == "xlsx" and read.problems == []
    assert [r.mobile for r in read.rows] == ["+8613800000001", "+8613900000002", "+8613700000003"]
    assert read.rows[2].tags == ("学生家长", "外来务工")
    assert [r.line for r in read.rows] == [2, 3, 5]


def test_every_bad_row_is_listed_with_its_row_and_reason_masked() -> None:
    raw = (
        "姓名,手机,座机\n"
        "A,13800000001,\n"
        "B,12345678901,\n"  # 12x is no mobile prefix
        "C,0571-88886666,\n"  # a landline in the mobile column
        "D,,88886666\n"  # a landline without its area code
        "E,,\n"  # no number at all
        "F,13800000009,13900000009\n"  # a mobile in the landline column
    ).encode()
    read = read_list(raw)
    assert [r.name for r in read.rows] == ["A"]
    assert [(p.line, p.reason) for p in read.problems] == [
        (3, "手机: 号码无效 not a mainland number: 123****8901"),
        (4, "手机: 不是手机号 not a mobile number (1[3-9] and 11 digits): 0571****6666"),
        (5, "座机: 号码无效 not a mainland number: **** (8 digits)"),
        (6, "缺少号码 no mobile or landline number on this row"),
        (7, "座机: 不是座机号 a mobile number in the landline column: 139****0009"),
    ]
    assert all("12345678901" not in p.reason for p in read.problems)


def test_no_number_column_is_one_problem_on_the_header() -> None:
    read = read_list("姓名,住址\n张三,东村\n".encode("gbk"))
    assert read.rows == []
    [problem] = read.problems
    assert problem.line == 1
    assert "缺少号码列 expected a header row with a number column" in problem.reason
    assert "got 姓名, 住址 (read as gb18030)" in problem.reason


def test_duplicates_are_merged_tags_joined() -> None:
    raw = (
        "姓名,手机,座机,标签\n"
        "张三,13800000001,,老年人\n"
        "张三,+86 138 0000 0001,0571-88886666,学生家长\n"
        ",13800000001,,老年人\n"
    ).encode()
    read = read_list(raw)
    assert read.merged == 2 and read.data_rows == 3
    [person] = read.rows
    assert (person.line, person.name, person.landline, person.tags) == (
        2,
        "张三",
        "+8657188886666",
        ("老年人", "学生家长"),
    )
    assert [c.display for c in contacts_of(read.rows)] == ["138****0001", "0571****6666"]


def test_the_rejects_file_opens_in_excel_and_neutralises_formulas() -> None:
    read = read_list("姓名,手机\n=cmd|' /C calc'!A0,123\n".encode())
    out = write_rejects(read.problems, read.header)
    assert out.startswith(b"\xef\xbb\xbf")
    text = out.decode("utf-8-sig")
    assert text.splitlines()[0] == "行号 row,原因 reason,姓名,手机"
    assert text.splitlines()[1].startswith("2,手机: 号码无效")
    assert "'=cmd" in text


PREFIXES = ("138", "139", "137", "150", "186", "158", "133")


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_100000_rows_are_all_read(encoding: str) -> None:
    """(Their speed is measured by `python -m bench recipients`, not here.)"""
    lines = ["姓名,手机,地区,标签"] + [
        f"居民{i},{PREFIXES[i % 7]}{i:08d},东村/{i % 12}组,{'老年人' if i % 3 else '学生家长'}"
        for i in range(100_000)
    ]
    raw = "\n".join(lines).encode(encoding)
    read = read_list(raw)
    contacts = contacts_of(read.rows)
    assert len(read.rows) == 100_000 and read.problems == [] and len(contacts) == 100_000
    assert read.encoding == ("utf-8" if encoding == "utf-8" else "gb18030")
    assert contacts[99_999].area == "东村/3组" and contacts[99_999].tags == {"学生家长"}
