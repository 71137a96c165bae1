"""显示屏 Screens: each LED screen's place, charset and geometry, its last fetch and
version, stale screens first; the rotation bound of its current playlist."""

from __future__ import annotations

from starlette.responses import Response

from broadcaster.engine.led import screen_statuses
from broadcaster.web.console.base import ConsoleRequest, page


@page("/screens", "显示屏", "Screens", order=45)
def screens_page(req: ConsoleRequest) -> Response:
    service = req.service
    app = service.app
    now = service.clock.now()
    rows = screen_statuses(service.log, app.campaign, now)
    rows.sort(key=lambda r: (not r.stale, r.screen.path))
    gaps: dict[str, float | None] = {}
    feed = service.led.feed if service.led is not None else None
    for r in rows:
        served = feed.served(app, r.screen.id, now) if feed is not None else None
        gaps[r.screen.id] = served.playlist.longest_gap_seconds() if served else None
    return req.render(
        "screens.html",
        title="显示屏 Screens",
        rows=rows,
        gaps=gaps,
        stale=sum(1 for r in rows if r.stale),
    )
