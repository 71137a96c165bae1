"""A channel with routes in every scope, for the mounting tests: a screen's playlist on
/led, a confirmation page on /confirm (HTML for people), a JSON hook on /hooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    Delivery,
    InboundReply,
    InboundRequest,
    InboundRoute,
    MessageKind,
    Result,
)


class ScopedChannel(BaseChannel):
    name: ClassVar[str] = "scoped"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(kinds=frozenset({MessageKind.LED}))

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        return [Result.ok(d) for d in batch]

    def routes(self) -> Sequence[InboundRoute]:
        return (
            InboundRoute("/{screen}/playlist", self._playlist, ("GET",), "led", "屏幕播放列表"),
            InboundRoute("/{token}", self._confirm, ("GET", "POST"), "confirm", "确认页"),
            InboundRoute("/ping", self._ping, ("POST",), "hooks", "ping"),
        )

    def _playlist(self, request: InboundRequest) -> InboundReply:
        screen = request.path.split("/")[1]
        if screen != "screen-1":
            return InboundReply.json({"error": "unknown screen", "错误": "没有此屏幕"}, status=404)
        return InboundReply.json({"screen": screen, "items": ["凡是刷单都是诈骗"]})

    def _confirm(self, request: InboundRequest) -> InboundReply:
        if request.path != "/good":
            return InboundReply.json({"error": "bad link", "错误": "链接无效"}, status=403)
        return InboundReply(200, "<p>已确认 confirmed</p>", "text/html; charset=utf-8")

    def _ping(self, request: InboundRequest) -> InboundReply:
        raise RuntimeError("a plugin bug")  # answered 500 as JSON, never a traceback
