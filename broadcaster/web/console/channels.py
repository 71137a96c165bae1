"""渠道 Channels: readiness and reason, rate-limit state, recent errors by class."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection
from starlette.responses import Response

from broadcaster.vocab import UNFINISHED, Status
from broadcaster.web import queries
from broadcaster.web.console.base import ConsoleRequest, page

ERROR_HOURS = 24


@dataclass
class ChannelRow:
    id: str
    name: str
    type: str
    kind: str
    ready: bool
    reason: str
    rate_limit: str
    concurrency: int
    quiet_hours: str
    deferred: int
    throttled: int
    unfinished: int
    errors: list[tuple[str, int]]
    routes: list[str]


@page("/channels", "渠道", "Channels", order=40)
def channels_page(req: ConsoleRequest) -> Response:
    service = req.service
    app = service.app
    campaign = app.campaign
    now = service.clock.now()
    since = now - dt.timedelta(hours=ERROR_HOURS)

    def read(conn: Connection) -> tuple[Any, Any, Any]:
        errors = queries.channel_errors(conn, since, campaign.id)
        depth = queries.queue_depth(conn, UNFINISHED, campaign.id)
        deferred = queries.queue_depth(conn, [Status.DEFERRED], campaign.id)
        return errors, depth, deferred

    errors, depth, deferred = service.log.read(read)
    by_channel: dict[str, list[tuple[str, int]]] = defaultdict(list)
    throttled: dict[str, int] = defaultdict(int)
    for cid, error_class, n in errors:
        by_channel[cid].append((error_class, n))
        if error_class == "throttled":
            throttled[cid] += n
    unfinished = dict(depth)
    waiting = dict(deferred)
    routes: dict[str, list[str]] = defaultdict(list)
    for r in service.hooks.all():
        routes[r.channel_id].append(f"{', '.join(r.route.methods)} {r.template}")
    rows = []
    for profile in app.channels.values():
        ready, reason = profile.enabled, profile.disabled_reason or ""
        if ready:
            try:
                problem = profile.open_offline(campaign.base_dir, app.state_dir, now).check()
            except Exception as exc:
                problem = f"检查失败 check failed: {type(exc).__name__}"
            ready, reason = problem is None, problem or ""
        caps = profile.capabilities
        rows.append(
            ChannelRow(
                profile.id,
                profile.name,
                profile.type,
                profile.kind.label,
                ready,
                reason,
                str(caps.rate_limit) if caps.rate_limit else "—",
                caps.concurrency,
                str(caps.quiet_hours) if caps.quiet_hours else "—",
                waiting.get(profile.id, 0),
                throttled.get(profile.id, 0),
                unfinished.get(profile.id, 0),
                sorted(by_channel.get(profile.id, []), key=lambda x: -x[1]),
                routes.get(profile.id, []),
            )
        )
    return req.render(
        "channels.html",
        title="渠道 Channels",
        rows=rows,
        hours=ERROR_HOURS,
        problems=service.hooks.problems,
        queue=worker_queue(service.log),
    )


def worker_queue(log: Any) -> Any:
    """The send queue of `broadcaster worker` processes (PostgreSQL logs), None otherwise."""
    if log.dialect != "postgresql":
        return None
    from broadcaster.engine.queue import queue_stats

    try:
        stats = queue_stats(log.connect_url())
    except Exception:  # the page shows the channels whatever the queue's state
        return None
    return stats if stats.workers or stats.todo or stats.doing or stats.failed else None
