"""A report written as XLSX, CSV (one file per table), an HTML page with charts, or PNG charts."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from broadcaster.reports.charts import coverage_svg, grouped_bars_svg, png_charts
from broadcaster.reports.figures import NONE, Report, Table
from broadcaster.reports.pages import environment

__all__ = ["FORMATS", "write_report"]

FORMATS = ("xlsx", "csv", "html", "png")
CSV_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _stem(report: Report) -> str:
    return f"report-{report.campaign_id}-{report.period.label}"


def shown(value: Any, percent: bool = False) -> str:
    """A cell as text (CSV, HTML)."""
    if value is None:
        return "—"
    if percent and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    return str(value)


def csv_safe(text: str) -> str:
    """Neutralise a cell Excel would run as a formula (CSV injection)."""
    return "'" + text if text.startswith(CSV_RISKY) else text


def write_csv(report: Report, folder: Path) -> list[Path]:
    """One CSV per table, UTF-8 with BOM so Excel opens it as Chinese."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for table in report.tables:
        path = folder / f"{_stem(report)}-{table.key}.csv"
        with path.open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(table.headers)
            for row in table.rows:
                writer.writerow([csv_safe(shown(v, i in table.percent)) for i, v in enumerate(row)])
            if not table.rows:
                writer.writerow([table.note or NONE])
        out.append(path)
    return out


def _width(value: Any) -> int:
    text = shown(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)  # CJK characters are double width


def write_xlsx(report: Report, path: Path) -> Path:
    """One sheet per table: Chinese headers, fitted column widths, the header row frozen.
    Written in openpyxl's write-only mode (rows stream to the file)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE7F3")
    for table in report.tables:
        sheet = book.create_sheet(table.name[:31])
        widths = [_width(h) for h in table.headers]
        for row in table.rows:
            for i, v in enumerate(row[: len(widths)]):
                widths[i] = max(widths[i], _width(v))
        for i, w in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = min(60, max(8, w + 2))
        sheet.freeze_panes = "A2"
        header = []
        for h in table.headers:
            cell = WriteOnlyCell(sheet, value=h)
            cell.font, cell.fill = bold, fill
            cell.alignment = Alignment(vertical="center")
            header.append(cell)
        sheet.append(header)
        for row in table.rows:
            cells = []
            for i, v in enumerate(row):
                cell = WriteOnlyCell(sheet, value=v)
                if i in table.percent and isinstance(v, float):
                    cell.number_format = "0.0%"
                elif isinstance(v, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                cells.append(cell)
            sheet.append(cells)
        if not table.rows:
            sheet.append([table.note or NONE])
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def charts_svg(report: Report) -> tuple[str, str]:
    unit = "周" if report.period.kind == "monthly" else "日"
    per = grouped_bars_svg(
        f"各渠道每{unit}触达 Deliveries reached per {'week' if unit == '周' else 'day'} and channel",
        report.buckets,
        report.per_bucket,
        chart_id="chart-per-period",
    )
    cov = coverage_svg(
        "各乡镇触达率 Coverage by township (reached / deliveries)",
        report.townships,
        chart_id="chart-coverage",
    )
    return per, cov


def write_html(report: Report, path: Path) -> Path:
    per, cov = charts_svg(report)
    html = (
        environment()
        .get_template("report.html")
        .render(report=report, chart_per=per, chart_cov=cov, shown=shown, none=NONE)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def write_png(report: Report, folder: Path) -> list[Path]:
    unit, en = ("周", "week") if report.period.kind == "monthly" else ("日", "day")
    paths = png_charts(
        folder,
        weekly_title=f"{report.period.label} 各渠道每{unit}触达 reached per {en} and channel",
        columns=report.buckets,
        series=report.per_bucket,
        coverage_title=f"{report.period.label} 各乡镇触达率 coverage by township",
        coverage=report.townships,
    )
    stem = _stem(report)
    renamed = []
    for p in paths:
        target = p.with_name(f"{stem}-{p.name}")
        p.replace(target)
        renamed.append(target)
    return renamed


def write_report(report: Report, fmt: str, folder: Path) -> list[Path]:
    """Write the report in one format into `folder`; the files written."""
    if fmt == "xlsx":
        return [write_xlsx(report, folder / f"{_stem(report)}.xlsx")]
    if fmt == "csv":
        return write_csv(report, folder)
    if fmt == "html":
        return [write_html(report, folder / f"{_stem(report)}.html")]
    if fmt == "png":
        return write_png(report, folder)
    raise ValueError(fmt)


def table_html_rows(table: Table) -> list[list[str]]:
    return [[shown(v, i in table.percent) for i, v in enumerate(row)] for row in table.rows]
