"""Offline activities (入户走访, 讲座, 集市摆摊 …) entered on a form like 《入户宣传登记表》
and imported from CSV (UTF-8 with or without BOM, or GBK/GB18030 as Excel saves it) or XLSX.

Every bad row is reported with its file, line and column; none is dropped silently.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "Activity", "ImportResult", "OfflineProblem", "read_activities"]

# column key -> (Chinese header as on the form, accepted spellings, required)
COLUMNS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "date": ("日期", ("日期", "时间", "活动日期", "date"), True),
    "township": ("乡镇(街道)", ("乡镇(街道)", "乡镇（街道）", "乡镇", "街道", "township"), True),
    "village": ("村(社区)", ("村(社区)", "村（社区）", "村", "社区", "village"), False),
    "kind": ("活动类型", ("活动类型", "类型", "形式", "kind", "type"), True),
    "households": ("入户户数", ("入户户数", "户数", "households"), False),
    "people": ("受众人数", ("受众人数", "人数", "people"), False),
    "staff": ("宣传人员", ("宣传人员", "负责人", "staff"), False),
    "note": ("备注", ("备注", "note"), False),
}


@dataclass(frozen=True)
class Activity:
    """One row of the form."""

    date: dt.date
    township: str
    village: str
    kind: str
    households: int
    people: int
    staff: str
    note: str
    source: str  # file:line


@dataclass(frozen=True)
class OfflineProblem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ImportResult:
    activities: list[Activity]
    problems: list[OfflineProblem]
    encoding: str = ""


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value or "").strip()
    m = re.fullmatch(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?", text)
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _count(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    text = str(value).strip()
    return int(text) if text.isdigit() else None


def _rows_csv(raw: bytes) -> tuple[Iterator[tuple[int, list[Any]]], str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        text, encoding = raw[3:].decode("utf-8"), "UTF-8 (BOM)"
    else:
        try:
            text, encoding = raw.decode("utf-8"), "UTF-8"
        except UnicodeDecodeError:
            text, encoding = raw.decode("gb18030", errors="replace"), "GB18030"
    reader = csv.reader(io.StringIO(text, newline=""))

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for row in reader:
            yield reader.line_num, list(row)

    return rows(), encoding


def _rows_xlsx(path: Path) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = book.worksheets[0]
        for n, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield n, list(row)
    finally:
        book.close()


def read_activities(paths: Iterable[Path], shown: dict[Path, str] | None = None) -> ImportResult:
    """Every activity of the given forms, and every bad row."""
    result = ImportResult([], [])
    for path in paths:
        name = (shown or {}).get(path, str(path))
        try:
            if path.suffix.lower() in (".xlsx", ".xlsm"):
                rows: Iterator[tuple[int, list[Any]]] = _rows_xlsx(path)
                result.encoding = "XLSX"
            else:
                rows, result.encoding = _rows_csv(path.read_bytes())
        except OSError as exc:
            result.problems.append(OfflineProblem(name, 0, f"无法读取 cannot read: {exc.strerror}"))
            continue
        except Exception as exc:  # a broken XLSX (zip) file
            result.problems.append(
                OfflineProblem(name, 0, f"无法读取 cannot read the workbook: {type(exc).__name__}")
            )
            continue
        _read_one(name, rows, result)
    return result


def _header(row: list[Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    cells = [str(c or "").strip() for c in row]
    for key, (_, spellings, _) in COLUMNS.items():
        for i, cell in enumerate(cells):
            if cell in spellings or cell.lower() in spellings:
                found.setdefault(key, i)
                break
    return found


def _read_one(name: str, rows: Iterator[tuple[int, list[Any]]], result: ImportResult) -> None:
    columns: dict[str, int] | None = None
    for line, row in rows:
        if not any(str(c or "").strip() for c in row):
            continue
        if columns is None:  # the form's title rows come before the header
            found = _header(row)
            if all(k in found for k, (_, _, required) in COLUMNS.items() if required):
                columns = found
            continue
        _read_row(name, line, row, columns, result)
    if columns is None:
        wanted = "、".join(h for h, _, required in COLUMNS.values() if required)
        result.problems.append(
            OfflineProblem(
                name, 1, f"缺少表头 no header row with the columns {wanted} (入户宣传登记表)"
            )
        )


def _read_row(
    name: str, line: int, row: list[Any], columns: dict[str, int], result: ImportResult
) -> None:
    def cell(key: str) -> Any:
        i = columns.get(key)
        return row[i] if i is not None and i < len(row) else None

    errors: list[str] = []
    date = _date(cell("date"))
    if date is None:
        errors.append(
            f"日期 date: 应为日期 expected a date such as 2026-11-03; got {cell('date')!r}"
        )
    township = str(cell("township") or "").strip()
    if not township:
        errors.append("乡镇(街道) township: 不能为空 must not be empty")
    kind = str(cell("kind") or "").strip()
    if not kind:
        errors.append("活动类型 kind: 不能为空 must not be empty")
    counts: dict[str, int] = {}
    for key in ("households", "people"):
        value = _count(cell(key))
        if value is None:
            errors.append(
                f"{COLUMNS[key][0]} {key}: 应为非负整数 expected a whole number ≥ 0; got {cell(key)!r}"
            )
        counts[key] = value or 0
    if errors:
        result.problems += [OfflineProblem(name, line, e) for e in errors]
        return
    assert date is not None
    result.activities.append(
        Activity(
            date,
            township,
            str(cell("village") or "").strip(),
            kind,
            counts["households"],
            counts["people"],
            str(cell("staff") or "").strip(),
            str(cell("note") or "").strip(),
            f"{name}:{line}",
        )
    )
