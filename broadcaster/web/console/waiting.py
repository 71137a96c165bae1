"""待确认 Waiting: deliveries on channels with late outcomes (receipts, confirmations by a
person) still only accepted, by person, with how long they have waited.

The group hand-off channel fills this with forwarded messages not yet confirmed; any
channel that declares `outcome_window` appears here until its outcome arrives. Above
them: relay hops counted per level apart from direct deliveries, and the hops and
hand-offs past their deadline by person, each with a button an operator presses after
confirming the forward another way (a phone call): `/waiting/confirm`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from starlette.responses import Response

from broadcaster.log import Event
from broadcaster.log.records import DeliveryState
from broadcaster.log.relay import HopState, hop_states, relay_tally
from broadcaster.vocab import ErrorClass, Status
from broadcaster.web import queries
from broadcaster.web.accounts import Permission
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError

RELAY_DAYS = 31  # hops and hand-offs due within this many days are shown


@dataclass
class Waiting:
    delivery: DeliveryState
    target_name: str
    waited: str
    person: str = ""  # a hand-off's person; else the masked recipient


def waited(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} 分钟 min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} 小时 {minutes} 分 ({hours} h {minutes} min)"
    return f"{hours // 24} 天 {hours % 24} 小时 ({hours // 24} d {hours % 24} h)"


@page("/waiting", "待确认", "Waiting", order=60)
def waiting_page(req: ConsoleRequest) -> Response:
    service = req.service
    app = service.app
    campaign = app.campaign
    now = service.clock.now()
    channels = [cid for cid, p in app.channels.items() if p.capabilities.late_outcomes]
    states = service.log.read(lambda conn: queries.waiting(conn, campaign.id, channels))
    since = now - dt.timedelta(days=RELAY_DAYS)
    hops = service.log.read(lambda conn: hop_states(conn, campaign.id, now, since=since))
    relayed = [h for h in hops if h.hop.level > 0]
    tally = relay_tally(relayed)
    levels = sorted({(h.hop.level, h.hop.level_tag) for h in relayed})
    overdue = sorted(
        (h for h in hops if h.waiting and h.late),
        key=lambda h: (h.hop.person, h.hop.due_at),
    )
    handoffs = [h for h in hops if h.hop.confirm]
    confirmed = sum(1 for h in handoffs if h.done)
    people = {h.key: h.hop.person for h in hops if h.hop.person}
    rows = [
        Waiting(
            s,
            campaign.targets[s.target_id].name if s.target_id in campaign.targets else s.target_id,
            waited((now - s.status_at).total_seconds()),
            people.get(s.key, s.recipient_display),
        )
        for s in states
    ]
    return req.render(
        "waiting.html",
        title="待确认 Waiting",
        rows=rows,
        channels=channels,
        tally=tally,
        levels=levels,
        overdue=overdue,
        handoffs=len(handoffs),
        confirmed=confirmed,
        can_confirm=req.user is not None and req.user.can(Permission.SEND),
    )


@page(
    "/waiting/confirm",
    "确认已转发",
    "Confirm",
    permission=Permission.SEND,
    methods=("POST",),
    nav=False,
)
def confirm_forwarded(req: ConsoleRequest) -> Response:
    """An operator confirms a hop or hand-off forwarded (after a phone call, a photo)."""
    service = req.service
    campaign = service.app.campaign
    key, note = req.arg("key"), req.arg("note")
    if not note:
        raise WebError("请写明依据 write how it was confirmed (e.g. 电话确认已转发)")
    now = service.clock.now()
    found: list[HopState] = service.log.read(
        lambda conn: hop_states(conn, campaign.id, now, keys=[key])
    )
    if not found or not found[0].waiting or found[0].status is not Status.ACCEPTED:
        raise WebError("没有待确认的转发 no hop or hand-off waits for this key")
    assert req.user is not None
    actor = f"operator:{req.user.name}"
    refused = service.log.append(
        [
            Event(
                key,
                Status.DELIVERED,
                now,
                ErrorClass.OPERATOR,
                f"forwarded_confirmed 人工确认已转发 confirmed by {actor}: {note}",
                actor=actor,
            )
        ]
    )
    if refused[0] is not None:
        raise WebError(f"未记录 not recorded: {refused[0]}")
    req.record("confirm_forwarded", key, {"note": note, "person": found[0].hop.person})
    return req.redirect("/waiting")
