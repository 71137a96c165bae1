"""一案三查 Lookup (auditors): was this number, person, group or area reached, when, on
which channel, with what text (the query module is shared with `broadcaster lookup`). A
number is hashed with the log's key before the search and shown masked; every lookup is
recorded with who asked; the answer prints as a one-page record with the chain head."""

from __future__ import annotations

from starlette.responses import HTMLResponse, Response

from broadcaster.reports import lookup as lk
from broadcaster.reports.chain import seal
from broadcaster.reports.pages import lookup_record
from broadcaster.web.accounts import Permission
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError

KINDS = {
    "number": "号码 number",
    "person": "姓名 person",
    "group": "群/对象 group",
    "area": "区域 area",
}


@page(
    "/lookup", "一案三查", "Lookup", permission=Permission.LOOKUP, methods=("GET", "POST"), order=70
)
def lookup_page(req: ConsoleRequest) -> Response:
    service = req.service
    campaign = service.app.campaign
    if req.request.method == "GET":
        return req.render("lookup.html", title="一案三查 Lookup", kinds=KINDS, kind="number")
    kind = req.arg("kind", "number")
    value = req.arg("q")[:100]
    village = req.arg("village", "")[:100] or None
    if kind not in KINDS or not value:
        raise WebError("请选择查询方式并填写内容 choose what to look up and fill it in")
    hash_of = service.log.recipient_hash
    try:
        if kind == "number":
            subject = lk.by_phone(campaign, value, hash_of)
        elif kind == "person":
            subject = lk.by_name(campaign, value, village, hash_of)
        elif kind == "group":
            subject = lk.by_target(campaign, value)
        else:
            subject = lk.by_area(campaign, value)
    except lk.LookupError_ as exc:
        if kind != "number":  # an unknown name is an empty answer on the page
            subject = lk.Subject(value, [], [str(exc)])
        else:
            raise WebError(str(exc)) from None
    shown = subject.shown if kind == "number" else value
    names = lk.names_of(campaign)
    service.log.read(
        lambda conn: lk.read_sections(conn, subject, campaign=campaign.id, names=names)
    )
    req.record("lookup", f"{kind} {shown}", {"matches": len(subject.sections)})
    if req.arg("print", ""):
        html = lookup_record(
            subject,
            seal(service.log),
            campaign=campaign.id,
            office=campaign.config.campaign.office,
            tz=campaign.tz,
            printed=service.clock.now(),
        )
        return HTMLResponse(html)
    return req.render(
        "lookup.html",
        title="一案三查 Lookup",
        kinds=KINDS,
        kind=kind,
        shown=shown,
        subject=subject,
        searched=True,
        value="" if kind == "number" else value,
        village=village or "",
    )
