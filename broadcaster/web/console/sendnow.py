"""立即发送 Send now (operators): the same flow as `broadcaster send-now`.

Choose a rule or a template, channels and targets; the preview shows every distinct
text with its targets and how many deliveries it makes, and any problem that stops it;
confirming fires it through the engine exactly as the command does (same idempotency:
one send per minute and selection, an unfinished earlier one resumed unless a new one
is asked for). The confirmation carries a signed, single-use token for this operator
holding what was previewed; if the texts changed since, it asks to preview again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from broadcaster.engine.app import App
from broadcaster.engine.dispatch import Dispatcher
from broadcaster.engine.prepare import Prepared
from broadcaster.log import DeliveryLog
from broadcaster.model.adhoc import AdHoc
from broadcaster.model.config.explain import did_you_mean
from broadcaster.model.config.schema import Rule, Selector
from broadcaster.web.accounts import Permission
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.console.views import names_of
from broadcaster.web.errors import LinkError, WebError

log = logging.getLogger("broadcaster.web")
TOKEN_TTL = dt.timedelta(minutes=15)
PURPOSE = "send-now"
SPLIT = re.compile(r"[\s,，、]+")


@dataclass
class TextGroup:
    channel_id: str
    template: str
    text: str
    targets: str
    deliveries: int


@dataclass
class Preview:
    adhoc: AdHoc
    at: dt.datetime
    groups: list[TextGroup]
    notes: list[tuple[str, int, int, str]]  # channel, targets, deliveries, note
    problems: list[str]
    digest: str
    resumed: tuple[dt.datetime, int] | None = None
    total: int = 0
    prepared: list[Prepared] = field(default_factory=list, repr=False)


def _unknown(what: str, value: str, known: Any) -> WebError:
    hint = did_you_mean(value, known)
    return WebError(f"未知{what} unknown {value[:60]!r}" + (f" ({hint})" if hint else ""))


def parse_vars(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise WebError(
                f"变量格式错误 variables: expected NAME=VALUE per line; got {line[:60]!r}"
            )
        out[name.strip()] = value.strip()
    return out


def build_adhoc(app: App, req: ConsoleRequest) -> AdHoc:
    """The one-off send the form describes, every name checked against the config."""
    campaign = app.campaign
    rule_id = req.arg("rule") or None
    template = req.arg("template") or None
    if bool(rule_id) == bool(template):
        raise WebError("规则与模板只能选一个 choose exactly one of a rule or a template")
    base: Rule | None = None
    if rule_id:
        known = [r.id for r in campaign.rules]
        if rule_id not in known:
            raise _unknown("规则 rule", rule_id, known)
        base = campaign.rule(rule_id).rule
    if template and not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", template):
        raise WebError("模板名无效 template: letters, digits, '_' or '-' (e.g. alert)")
    channels = req.values("channels") or (list(base.channels) if base else [])
    if not channels:
        raise WebError("使用模板时须选择渠道 choose the channels to send a template through")
    for cid in channels:
        if cid not in campaign.channels:
            raise _unknown("渠道 channel", cid, campaign.channels)
    tags = req.values("tags")
    ids = [t for t in SPLIT.split(req.arg("targets")) if t]
    under = req.values("under")
    for values, known_names, what in (
        (tags, campaign.targets.tags, "标签 tag"),
        (ids, campaign.targets.nodes, "对象 target"),
        (under, campaign.targets.nodes, "对象 target"),
    ):
        for v in values:
            if v not in known_names:
                raise _unknown(what, v, known_names)
    if tags or ids or under:
        selector = Selector(tags=tags, ids=ids, under=under)
    elif base:
        selector = base.targets
    else:
        raise WebError("请选择对象 choose targets (tags, targets or a subtree)")
    targets = campaign.targets.select(**selector.model_dump())
    if not targets:
        raise WebError("选择不到任何对象 the selection matches no target")
    return AdHoc(
        rule_id or template or "",
        tuple(channels),
        targets,
        rule=rule_id,
        template=template,
        vars=parse_vars(req.form.get("vars", "")),
    )


def unfinished(
    log_store: DeliveryLog, campaign: str, rule_id: str, tz: dt.tzinfo
) -> tuple[AdHoc, dt.datetime, int] | None:
    """The newest unfinished one-off send of this rule or template (as `send-now` resumes)."""
    for occurrence_id, left in log_store.open_sends(campaign, rule_id):
        adhoc = AdHoc.from_note(log_store.fired_reason(campaign, occurrence_id))
        if adhoc is None:
            continue
        when = dt.datetime.fromisoformat(occurrence_id.partition("@")[2]).replace(tzinfo=tz)
        return adhoc, when, left
    return None


def preview(
    app: App, dispatcher: Dispatcher, adhoc: AdHoc, at: dt.datetime, now: dt.datetime
) -> Preview:
    campaign = app.campaign
    spec = adhoc.spec(campaign, at)
    occurrence = adhoc.occurrence(at)
    prepared = list(dispatcher.preparer.prepare(occurrence, spec, adhoc.vars))
    if not prepared:
        raise WebError(
            "没有可发送的内容 nothing to send: no template for these channels and targets"
        )
    grouped: dict[tuple[str, str], list[Prepared]] = defaultdict(list)
    for p in prepared:
        grouped[(p.delivery.channel_id, p.delivery.message.text)].append(p)
    groups: list[TextGroup] = []
    problems: list[str] = []
    for (cid, text), items in grouped.items():
        targets = list(dict.fromkeys(p.delivery.recipient.target_id for p in items))
        message = items[0].delivery.message
        groups.append(
            TextGroup(cid, message.template, text, names_of(campaign, targets, 8), len(items))
        )
        profile = app.channels[cid]
        if profile.enabled:
            checker = profile.open_offline(campaign.base_dir, app.state_dir, now)
            problems += profile.message_problems(checker, message)
        problems += [p.problem for p in items if p.problem]
        check = getattr(dispatcher.content_gate, "check", None)  # 审核把关
        held = check(message.template, message.template_sha) if check else None
        if held is not None:
            problems.append(held[1])
    local = now.astimezone(campaign.tz).time()
    notes = []
    for cid, n in Counter(p.delivery.channel_id for p in prepared).items():
        profile = app.channels[cid]
        quiet = profile.capabilities.quiet_hours
        note = ""
        if not profile.enabled:
            note = f"停用 disabled: {profile.disabled_reason}; 记为跳过 logged as skipped"
        elif quiet is not None and quiet.contains(local):
            note = f"免打扰时段 quiet hours {quiet}: 顺延至 held until {quiet.end:%H:%M}"
        count = len(
            {p.delivery.recipient.target_id for p in prepared if p.delivery.channel_id == cid}
        )
        notes.append((cid, count, n, note))
    blob = "\n".join(
        sorted(
            f"{g.channel_id}|{hashlib.sha256(g.text.encode()).hexdigest()}|{g.deliveries}"
            for g in groups
        )
    )
    return Preview(
        adhoc,
        at,
        groups,
        notes,
        list(dict.fromkeys(problems)),
        hashlib.sha256(blob.encode()).hexdigest(),
        total=len(prepared),
        prepared=prepared,
    )


def _form_context(app: App) -> dict[str, Any]:
    campaign = app.campaign
    return {
        "rules": [(r.id, r.rule.name or r.id) for r in campaign.rules],
        "channels": [(cid, p.name or cid, p.enabled) for cid, p in app.channels.items()],
        "tags": sorted(campaign.targets.tags),
        "nodes": [(n.id, n.name) for n in campaign.targets if n.children],
    }


@page("/send", "立即发送", "Send now", permission=Permission.SEND, order=80)
def send_form(req: ConsoleRequest) -> Response:
    return req.render("send.html", title="立即发送 Send now", **_form_context(req.service.app))


@page("/send/preview", "预览", "Preview", permission=Permission.SEND, methods=("POST",), nav=False)
def send_preview(req: ConsoleRequest) -> Response:
    app, dispatcher, _ = req.service.source.current()
    campaign = app.campaign
    now = req.service.clock.now().astimezone(campaign.tz)
    try:
        adhoc = build_adhoc(app, req)
    except WebError as exc:
        return req.render(
            "send.html", status=400, title="立即发送 Send now", error=str(exc), **_form_context(app)
        )
    at = now
    resumed = None
    if req.arg("new") != "1":
        found = unfinished(req.service.log, campaign.id, adhoc.rule_id, campaign.tz)
        if found is not None:
            adhoc, at, left = found
            resumed = (at, left)
    result = preview(app, dispatcher, adhoc, at, now)
    result.resumed = resumed
    token = ""
    if not result.problems:
        token = req.service.links.sign(
            PURPOSE,
            req.user.name if req.user else "",
            ttl=TOKEN_TTL,
            data={
                "note": adhoc.note(),
                "at": at.replace(second=0, microsecond=0).isoformat(),
                "digest": result.digest,
            },
        )
    return req.render("send_preview.html", title="预览 Preview", p=result, token=token)


@page(
    "/send/confirm", "确认发送", "Confirm", permission=Permission.SEND, methods=("POST",), nav=False
)
def send_confirm(req: ConsoleRequest) -> Response:
    service = req.service
    app, dispatcher, _ = service.source.current()
    campaign = app.campaign
    try:
        claims = service.links.verify(
            PURPOSE, req.arg("token"), subject=req.user.name if req.user else ""
        )
    except LinkError as exc:
        raise WebError(f"{exc} — 请重新预览 preview again") from None
    adhoc = AdHoc.from_note(str(claims.data.get("note", "")))
    if adhoc is None:
        raise WebError("确认令牌无效 the confirmation is not valid: preview again")
    at = dt.datetime.fromisoformat(str(claims.data["at"])).astimezone(campaign.tz)
    now = service.clock.now().astimezone(campaign.tz)
    again = preview(app, dispatcher, adhoc, at, now)
    if again.digest != claims.data.get("digest") or again.problems:
        raise WebError(
            "预览后内容或对象有变化 the texts or targets changed since the preview: preview again"
        )
    spec = adhoc.spec(campaign, at)
    occurrence = adhoc.occurrence(at)
    handle = dispatcher.fire(occurrence, rule=spec, extra_vars=adhoc.vars, fired_note=adhoc.note())
    req.record(
        "send_now",
        occurrence.id,
        {
            "channels": list(adhoc.channels),
            "targets": len(adhoc.targets),
            "deliveries": again.total,
            "first_time": handle.first_time,
        },
    )

    def finish() -> None:
        try:
            handle.wait()
            service.log.record_occurrence(
                campaign.id,
                occurrence.id,
                occurrence.rule_id,
                occurrence.at,
                "done",
                "",
                dispatcher.clock.now(),
            )
        except Exception:
            log.exception("send-now %s did not finish", occurrence.id)

    threading.Thread(target=finish, name=f"send-now {occurrence.id}", daemon=True).start()
    return req.render(
        "send_done.html",
        title="已发送 Sent",
        occurrence=occurrence,
        first_time=handle.first_time,
        total=again.total,
    )
