"""审核把关 Approvals: the template versions the rules can send, approved (who, when, note)
or pending; an operator approves a pending version here (recorded in the log's append-only
table and on the ledger file, as `broadcaster approve` does)."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response

from broadcaster.reports.approvals import ApprovalStore, approve
from broadcaster.reports.ledger import Version, is_urgent, ledger_path, versions_of, when_text
from broadcaster.web.accounts import Permission
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError


def _versions(req: ConsoleRequest) -> tuple[ApprovalStore, list[Version]]:
    campaign = req.service.source.current()[0].campaign
    store = ApprovalStore(req.service.log)
    return store, store.attach(versions_of(campaign), ledger_path(campaign))


@page("/approvals", "内容审核", "Approvals", order=75)
def approvals_page(req: ConsoleRequest) -> Response:
    campaign = req.service.source.current()[0].campaign
    store, versions = _versions(req)
    store.close()
    rows = [
        {
            "v": v,
            "urgent": is_urgent(campaign, v.template),
            "at": when_text(v.approval.at, campaign.tz) if v.approval else "",
        }
        for v in versions
    ]
    can = req.user is not None and Permission.APPROVE in req.user.role.permissions
    return req.render(
        "approvals.html",
        title="内容审核 Approvals",
        rows=rows,
        pending=sum(1 for v in versions if not v.approved),
        required=campaign.config.approval.required,
        can_approve=can,
    )


@page(
    "/approvals/approve",
    "审核通过",
    "Approve",
    permission=Permission.APPROVE,
    methods=("POST",),
    nav=False,
)
def approve_action(req: ConsoleRequest) -> Response:
    campaign = req.service.source.current()[0].campaign
    template, sha = req.arg("template"), req.arg("version")
    note = req.arg("note")[:500]
    store, versions = _versions(req)
    try:
        found = [v for v in versions if (v.template, v.template_sha) == (template, sha)]
        if not found:
            raise WebError(
                "没有这个模板版本 no rule sends this template version (it may have changed)"
            )
        version = found[0]
        if not version.approved:
            who = req.user.name if req.user else "?"
            approve(store, campaign, version, by=who, note=note, at=req.service.clock.now())
            req.record("approve", f"{version.file} {version.short}", {"note": note})
    finally:
        store.close()
    return RedirectResponse("/approvals", status_code=303)
