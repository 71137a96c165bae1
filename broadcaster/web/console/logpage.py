"""投递记录 Log: filters, coverage per send, pages of deliveries, a delivery's history, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse

from broadcaster.log.chain import shown_display
from broadcaster.log.scrub import mask_number
from broadcaster.vocab import Status
from broadcaster.web import queries
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.console.views import day_arg, share
from broadcaster.web.errors import WebError

COVERAGE_SENDS = 12  # sends whose coverage the page shows (the newest in the range)
DEFAULT_DAYS = 7
CSV_FIELDS = (
    "scheduled_at",
    "occurrence_id",
    "rule_id",
    "channel_id",
    "target_id",
    "recipient_display",
    "status",
    "status_at",
    "error_class",
    "reason",
    "provider_id",
    "template",
    "template_sha",
    "text_sha256",
    "key",
)
REASON = CSV_FIELDS.index("reason")
DISPLAY = CSV_FIELDS.index("recipient_display")


def log_filter(req: ConsoleRequest) -> tuple[queries.LogFilter, dict[str, str]]:
    """The filter the query string asks for, and the values to show back in the form."""
    campaign = req.service.app.campaign
    tz = campaign.tz
    today = req.service.clock.now().astimezone(tz).date()
    occurrence = req.arg("occurrence")[:200] or None
    default_from = "" if occurrence else (today - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    first_text = req.arg("from", default_from)
    last_text = req.arg("to")
    first = day_arg(first_text, today, "from") if first_text else None
    last = day_arg(last_text, today, "to") if last_text else None
    status_text = req.arg("status")
    status = None
    if status_text:
        try:
            status = Status(status_text)
        except ValueError:
            raise WebError(f"未知状态 unknown status {status_text[:20]!r}") from None
    f = queries.LogFilter(
        campaign=campaign.id,
        since=dt.datetime.combine(first, dt.time(), tzinfo=tz) if first else None,
        until=dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        if last
        else None,
        rule=req.arg("rule")[:200] or None,
        channel=req.arg("channel")[:200] or None,
        target=req.arg("target")[:200] or None,
        status=status,
        occurrence=occurrence,
    )
    shown = {
        "from": first.isoformat() if first else "",
        "to": last.isoformat() if last else "",
        "rule": f.rule or "",
        "channel": f.channel or "",
        "target": f.target or "",
        "status": status.value if status else "",
        "occurrence": occurrence or "",
    }
    return f, shown


@page("/log", "投递记录", "Log", order=30)
def log_page(req: ConsoleRequest) -> Response:
    service = req.service
    campaign = service.app.campaign
    f, shown = log_filter(req)
    cursor = req.arg("after")[:80] or None

    def read(conn: Any) -> tuple[Any, Any, Any]:
        if f.occurrence:
            sends = [f.occurrence]
        else:
            sends = queries.occurrence_ids_in(
                conn, campaign.id, f.since, f.until, rule=f.rule, limit=COVERAGE_SENDS
            )
        coverage = service.coverage.coverage(
            conn, campaign.id, sends, channel=f.channel, target=f.target
        )
        areas = (
            queries.area_coverage(conn, campaign.id, f.occurrence, channel=f.channel)
            if f.occurrence
            else []
        )
        return coverage, areas, queries.deliveries_page(conn, f, cursor=cursor)

    coverage, areas, result = service.log.read(read)
    query = urlencode({k: v for k, v in shown.items() if v})
    return req.render(
        "log.html",
        title="投递记录 Log",
        f=shown,
        coverage=coverage,
        areas=areas,
        share=share,
        rows=result.rows,
        next_cursor=result.next_cursor,
        statuses=list(Status),
        rules=[r.id for r in campaign.rules],
        channels=list(service.app.channels),
        query=query,
        mask=mask_number,
        first_page=cursor is None,
    )


@page("/log/delivery", "投递详情", "Delivery", nav=False)
def delivery_page(req: ConsoleRequest) -> Response:
    service = req.service
    key = req.arg("key")[:128]
    states = service.log.latest([key]) if key else {}
    state = states.get(key)
    if state is None or state.campaign != service.app.campaign.id:
        return req.render(
            "error.html", status=404, chinese="没有此投递 no such delivery", english="not found"
        )
    events = service.log.events(key)
    text = service.log.text(state.text_sha256)
    payload = service.log.payload(state.payload_sha256) if state.payload_sha256 else None
    return req.render(
        "delivery.html",
        title="投递详情 Delivery",
        d=state,
        events=events,
        text=text,
        payload=payload,
        mask=mask_number,
    )


def csv_safe(value: Any) -> Any:
    """Neutralise what a spreadsheet would run as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return "" if value is None else value


@page("/log.csv", "导出", "Export", nav=False)
def log_csv(req: ConsoleRequest) -> Response:
    service = req.service
    f, shown = log_filter(req)
    req.record("export_csv", "log", {k: v for k, v in shown.items() if v})

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        buffer.write("\ufeff")  # Excel on Windows reads UTF-8 with a BOM
        writer.writerow(CSV_FIELDS)
        cursor: str | None = None
        while True:
            page_ = service.log.read(
                partial(queries.deliveries_page, f=f, cursor=cursor, size=5_000)
            )
            for r in page_.rows:
                record = [_plain(getattr(r, name)) for name in CSV_FIELDS]
                record[DISPLAY] = shown_display(record[DISPLAY])
                record[REASON] = mask_number(str(record[REASON]))
                writer.writerow([csv_safe(v) for v in record])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            cursor = page_.next_cursor
            if cursor is None:
                return

    name = f"deliveries-{service.clock.now():%Y%m%d-%H%M}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )
