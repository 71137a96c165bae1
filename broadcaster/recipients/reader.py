"""Read a recipient list file: CSV (UTF-8, BOM or not, or GBK/GB18030) or XLSX.

Columns are found by their header, in Chinese or English (`HEADERS`): name, mobile,
landline, phone (either kind, told apart by the number), area (the place in the
hierarchy, e.g. 东村/三组) and tags (老年人;学生家长, separated by ; , 、 | or spaces).
Numbers are validated and normalised with phonenumbers (mainland mobiles
`^1[3-9]\\d{9}$`, landlines with their area code) and kept in E.164. Rows naming the same
number are merged (tags joined, the first name and area kept). Every bad row is listed
with its row number and the reason; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from broadcaster.model.targets import Contact, mask_phone, parse_phone

__all__ = [
    "HEADERS",
    "ListRead",
    "RecipientRow",
    "RowProblem",
    "contacts_of",
    "read_list",
    "write_rejects",
]

HEADERS: dict[str, str] = {
    **dict.fromkeys(("name", "姓名", "名字", "联系人"), "name"),
    **dict.fromkeys(("mobile", "手机", "手机号", "手机号码", "移动电话"), "mobile"),
    **dict.fromkeys(("landline", "座机", "固话", "固定电话", "座机号码"), "landline"),
    **dict.fromkeys(("phone", "电话", "号码", "联系电话", "电话号码"), "phone"),
    **dict.fromkeys(("area", "地区", "区域", "所属", "所在地", "村组", "网格"), "area"),
    **dict.fromkeys(("tags", "tag", "标签", "人群", "类别"), "tags"),
}
NUMBER_COLUMNS = ("mobile", "landline", "phone")
_TAG_SPLIT = re.compile(r"[;,，；、|｜\s]+")
_MOBILE = re.compile(r"\+861[3-9][0-9]{9}")
_SEPARATORS = re.compile(r"[\s()-]")


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """One person: numbers in E.164 (never shown), where they live, their tags."""

    line: int  # the row in the file (1 = the header), the first one when rows were merged
    name: str
    mobile: str | None = field(repr=False)
    landline: str | None = field(repr=False)
    area: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A bad row: where, why (numbers masked), and its cells as written (for the rejects file)."""

    line: int | None
    reason: str
    cells: tuple[str, ...] = field(default=(), repr=False)


@dataclass
class ListRead:
    """What a file held: good rows (merged), bad rows, how it was decoded."""

    rows: list[RecipientRow]
    problems: list[RowProblem]
    encoding: str  # utf-8, utf-8-sig (BOM), gb18030, xlsx
    header: tuple[str, ...] = ()
    data_rows: int = 0  # rows read, blank ones not counted
    merged: int = 0  # rows folded into an earlier row naming the same number

    @property
    def mobiles(self) -> int:
        return sum(1 for r in self.rows if r.mobile)

    @property
    def landlines(self) -> int:
        return sum(1 for r in self.rows if r.landline)


def _cell(value: Any) -> str:
    """A cell as text: Excel's 13800000001.0 and '13800000001 as typed, full-width folded."""
    if value is None:
        return ""
    if type(value) is float and value.is_integer():
        value = int(value)
    text = (value if type(value) is str else str(value)).strip()
    if text.startswith("'"):
        text = text[1:]
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).strip()
    return text


def _decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding): a BOM wins, then UTF-8, then GB18030 (what Excel on a Chinese
    Windows writes); GB18030 decodes any byte string, so a file that is neither shows up
    as garbled headers, which are reported."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace"), "gb18030"


def _csv_rows(raw: bytes) -> tuple[Iterator[tuple[int, list[str]]], str]:
    text, encoding = _decode(raw)
    reader = csv.reader(io.StringIO(text, newline=""))

    def rows() -> Iterator[tuple[int, list[str]]]:
        for row in reader:
            yield reader.line_num, row

    return rows(), encoding


def _xlsx_rows(raw: bytes) -> Iterator[tuple[int, list[str]]]:
    """The first sheet's rows: python-calamine (a Rust reader, ~12x faster on 100,000 rows)
    when installed, else openpyxl in read-only mode (rows streamed)."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:
        yield from _openpyxl_rows(raw)
        return
    book = CalamineWorkbook.from_filelike(io.BytesIO(raw))
    sheet = book.get_sheet_by_index(0)
    for i, values in enumerate(sheet.to_python(skip_empty_area=False), 1):
        yield i, [_cell(v) for v in values]


def _openpyxl_rows(raw: bytes) -> Iterator[tuple[int, list[str]]]:
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]
        for i, values in enumerate(sheet.iter_rows(values_only=True), 1):
            yield i, [_cell(v) for v in values]
    finally:
        book.close()


def is_xlsx(raw: bytes) -> bool:
    return raw.startswith(b"PK\x03\x04")


def read_list(raw: bytes) -> ListRead:
    """The rows of a list file's bytes (XLSX told by its zip signature, else CSV)."""
    if is_xlsx(raw):
        try:
            rows: Iterable[tuple[int, list[str]]] = _xlsx_rows(raw)
            encoding = "xlsx"
            return _read_rows(iter(rows), encoding)
        except Exception as exc:  # a damaged or password-protected workbook
            return ListRead(
                [],
                [RowProblem(None, f"无法读取 Excel 文件 cannot read the XLSX file: {exc}")],
                "xlsx",
            )
    csv_rows, encoding = _csv_rows(raw)
    return _read_rows(csv_rows, encoding)


def _columns(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, title in enumerate(header):
        key = HEADERS.get(_cell(title).lower())
        if key is not None and key not in found:
            found[key] = i
    return found


def _number(text: str, want: str) -> tuple[str | None, str | None]:
    """(E.164, None) or (None, reason) for a cell of a number column of kind `want`."""
    number = parse_phone(text)
    if number is None:
        return None, f"号码无效 not a mainland number: {mask_phone(_SEPARATORS.sub('', text))}"
    mobile = _MOBILE.fullmatch(number) is not None
    if want == "mobile" and not mobile:
        return None, f"不是手机号 not a mobile number (1[3-9] and 11 digits): {mask_phone(number)}"
    if want == "landline":
        if mobile:
            return None, f"不是座机号 a mobile number in the landline column: {mask_phone(number)}"
        if not _SEPARATORS.sub("", text).startswith(("0", "+86", "86")):
            return None, (
                "座机缺少区号 landline without its area code (e.g. 0571-8888 6666):"
                f" {mask_phone(number)}"
            )
    return number, None


def _read_rows(rows: Iterator[tuple[int, list[str]]], encoding: str) -> ListRead:
    header: list[str] | None = None
    header_line = 1
    for line, row in rows:
        if any(_cell(c) for c in row):
            header, header_line = row, line
            break
    if header is None:
        return ListRead([], [RowProblem(None, "文件为空 the file has no rows")], encoding)
    columns = _columns(header)
    shown_header = tuple(_cell(c) for c in header)
    if not any(k in columns for k in NUMBER_COLUMNS):
        return ListRead(
            [],
            [
                RowProblem(
                    header_line,
                    "缺少号码列 expected a header row with a number column: 手机/mobile,"
                    f" 座机/landline or 电话/phone; got {', '.join(shown_header) or '(empty)'}"
                    f" (read as {encoding})",
                )
            ],
            encoding,
            shown_header,
        )
    name_at = columns.get("name", -1)
    area_at = columns.get("area", -1)
    tags_at = columns.get("tags", -1)
    number_at = [(k, columns[k]) for k in NUMBER_COLUMNS if k in columns]

    out: list[RecipientRow] = []
    problems: list[RowProblem] = []
    by_number: dict[str, int] = {}  # number -> index in out
    tag_tuples: dict[str, tuple[str, ...]] = {}
    data_rows = merged = 0
    cell = _cell

    for line, row in rows:
        width = len(row)
        if not any(row):
            continue
        mobile = landline = None
        reasons: list[str] = []
        for kind, at in number_at:
            text = cell(row[at]) if at < width else ""
            if not text:
                continue
            number, reason = _number(text, kind)
            if number is None:
                reasons.append(f"{shown_header[at] or kind}: {reason}")
            elif number.startswith("+861") and _MOBILE.fullmatch(number):
                mobile = mobile or number
            else:
                landline = landline or number
        if mobile is None and landline is None and not reasons:
            if not any(cell(c) for c in row):
                continue  # a row of blanks
            reasons.append("缺少号码 no mobile or landline number on this row")
        data_rows += 1
        if reasons:
            problems.append(RowProblem(line, "; ".join(reasons), tuple(cell(c) for c in row)))
            continue
        raw_tags = cell(row[tags_at]) if 0 <= tags_at < width else ""
        tags = tag_tuples.get(raw_tags)
        if tags is None:
            tags = tag_tuples[raw_tags] = tuple(
                dict.fromkeys(t for t in _TAG_SPLIT.split(raw_tags) if t)
            )
        person = RecipientRow(
            line,
            cell(row[name_at]) if 0 <= name_at < width else "",
            mobile,
            landline,
            cell(row[area_at]) if 0 <= area_at < width else "",
            tags,
        )
        earlier = by_number.get(mobile) if mobile is not None else None
        if earlier is None and landline is not None:
            earlier = by_number.get(landline)
        if earlier is None:
            if mobile is not None:
                by_number[mobile] = len(out)
            if landline is not None:
                by_number[landline] = len(out)
            out.append(person)
            continue
        merged += 1
        first = out[earlier]
        out[earlier] = RecipientRow(
            first.line,
            first.name or person.name,
            first.mobile or person.mobile,
            first.landline or person.landline,
            first.area or person.area,
            tuple(dict.fromkeys((*first.tags, *person.tags))),
        )
        for n in (person.mobile, person.landline):
            if n is not None and n not in by_number:
                by_number[n] = earlier
    return ListRead(out, problems, encoding, shown_header, data_rows, merged)


def _neutral(cell: str) -> str:
    """A cell made safe for Excel: formulas (= + - @) written as text (CSV injection)."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@") else cell


def write_rejects(problems: Iterable[RowProblem], header: tuple[str, ...]) -> bytes:
    """The bad rows as a CSV for Excel (UTF-8 with a BOM): row number, reason, then the cells."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["行号 row", "原因 reason", *header])
    for p in problems:
        writer.writerow(
            ["" if p.line is None else p.line, p.reason, *(_neutral(c) for c in p.cells)]
        )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


_contacts_memo: dict[int, tuple[list[RecipientRow], tuple[Contact, ...]]] = {}


def contacts_of(rows: list[RecipientRow]) -> tuple[Contact, ...]:
    """Each person's numbers as contacts (mobile first, then landline), in list order; made
    once per rows object (a store snapshot or a cached file is reused while unchanged)."""
    found = _contacts_memo.get(id(rows))
    if found is not None and found[0] is rows:
        return found[1]
    out: list[Contact] = []
    append = out.append
    tag_sets: dict[tuple[str, ...], frozenset[str]] = {}
    for r in rows:
        tags = tag_sets.get(r.tags)
        if tags is None:
            tags = tag_sets[r.tags] = frozenset(r.tags)
        mobile = r.mobile
        if mobile is not None:  # +86 and 11 digits: shown as 138****5678
            append(Contact(mobile, f"{mobile[3:6]}****{mobile[-4:]}", r.name, r.area, tags))
        if r.landline is not None:
            append(Contact(r.landline, mask_phone(r.landline), r.name, r.area, tags))
    made = tuple(out)
    if len(_contacts_memo) >= 8:
        _contacts_memo.clear()
    _contacts_memo[id(rows)] = (rows, made)
    return made
