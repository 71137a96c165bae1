"""待确认 Waiting: deliveries on channels with late outcomes (receipts, confirmations by a
person) still only accepted, by person, with how long they have waited.

The group hand-off channel fills this with forwarded messages not yet confirmed; any
channel that declares `outcome_window` appears here until its outcome arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response

from broadcaster.log.records import DeliveryState
from broadcaster.web import queries
from broadcaster.web.console.base import ConsoleRequest, page


@dataclass
class Waiting:
    delivery: DeliveryState
    target_name: str
    waited: str


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
    rows = [
        Waiting(
            s,
            campaign.targets[s.target_id].name if s.target_id in campaign.targets else s.target_id,
            waited((now - s.status_at).total_seconds()),
        )
        for s in states
    ]
    return req.render("waiting.html", title="待确认 Waiting", rows=rows, channels=channels)
