"""统计报表 Reports: the weekly or monthly statistics of `broadcaster report`, with the
charts drawn inline (SVG) and the XLSX or the printable HTML page to download."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from starlette.responses import Response

from broadcaster.reports.chain import seal
from broadcaster.reports.figures import Report, build_report
from broadcaster.reports.periods import PeriodError, deadlines, parse_period
from broadcaster.reports.writers import charts_svg, shown, write_report
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError

MEDIA = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html; charset=utf-8",
}


def _default(kind: str, today: dt.date) -> str:
    if kind == "weekly":
        iso = (today - dt.timedelta(days=7)).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    last = today.replace(day=1) - dt.timedelta(days=1)
    return f"{last.year}-{last.month:02d}"


def _report(req: ConsoleRequest) -> Report:
    service = req.service
    campaign = service.source.current()[0].campaign
    now = service.clock.now().astimezone(campaign.tz)
    kind = req.arg("kind", "monthly")
    if kind not in ("weekly", "monthly"):
        raise WebError("报表类型 choose weekly or monthly")
    try:
        period = parse_period(kind, req.arg("period") or _default(kind, now.date()))
    except PeriodError as exc:
        raise WebError(str(exc)) from None
    return build_report(
        service.log,
        campaign,
        period,
        seal=seal(service.log),
        deadlines=deadlines(period, campaign.calendar),
        generated_at=now,
    )


@page("/reports", "统计报表", "Reports", order=65)
def reports_page(req: ConsoleRequest) -> Response:
    report = _report(req)
    per, cov = charts_svg(report)
    return req.render(
        "reports.html",
        title="统计报表 Reports",
        report=report,
        chart_per=per,
        chart_cov=cov,
        shown=shown,
        kind=report.period.kind,
        period=report.period.label,
    )


@page("/reports/download", "下载报表", "Download", nav=False)
def reports_download(req: ConsoleRequest) -> Response:
    fmt = req.arg("format", "xlsx")
    if fmt not in MEDIA:
        raise WebError("格式 choose xlsx or html")
    report = _report(req)
    with tempfile.TemporaryDirectory() as folder:
        [path] = write_report(report, fmt, Path(folder))
        body = path.read_bytes()
        name = path.name
    req.record("report", f"{report.period.kind} {report.period.label}", {"format": fmt})
    return Response(
        body,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
