"""一案三查 Lookup (auditors): was this number, person or group reached, when, on which
channel, with what text. A number is hashed with the log's key before the search and
shown masked; every lookup is recorded with who asked."""

from __future__ import annotations

from functools import partial

from starlette.responses import Response

from broadcaster.model.targets import mask_phone, parse_phone
from broadcaster.web import queries
from broadcaster.web.accounts import Permission
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError

KINDS = {"number": "号码 number", "person": "姓名 person", "group": "群/对象 group"}


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
    if kind not in KINDS or not value:
        raise WebError("请选择查询方式并填写内容 choose what to look up and fill it in")
    searched: list[tuple[str, str]] = []  # (what, hash or target id)
    shown = value
    if kind == "number":
        number = parse_phone(value)
        if number is None:
            raise WebError("号码无效 not a mainland mobile or landline number")
        shown = mask_phone(number)
        searched.append((shown, service.log.recipient_hash(number)))
    elif kind == "person":
        for node in campaign.targets:
            for contact in node.contacts:
                if contact.name and contact.name == value:
                    searched.append(
                        (
                            f"{contact.display} · {node.name}",
                            service.log.recipient_hash(contact.number),
                        )
                    )
    else:
        ids = [n.id for n in campaign.targets if value in (n.id, n.name)]
        searched += [(campaign.targets[i].name, i) for i in ids]
    req.record("lookup", f"{kind} {shown}", {"matches": len(searched)})
    results = []
    for label, ref in searched:
        f = (
            queries.LogFilter(campaign=campaign.id, target=ref)
            if kind == "group"
            else queries.LogFilter(campaign=campaign.id, recipient_hash=ref)
        )
        page_ = service.log.read(partial(queries.deliveries_page, f=f, size=200))
        results.append((label, page_.rows, page_.next_cursor is not None))
    return req.render(
        "lookup.html",
        title="一案三查 Lookup",
        kinds=KINDS,
        kind=kind,
        shown=shown,
        results=results,
        searched=True,
        value="" if kind == "number" else value,
    )
