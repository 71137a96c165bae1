"""`GET /led/{screen}/playlist`: a screen fetches its playlist.

JSON by default; `?format=text` (or `Accept: text/plain`) gives the text form in the
screen's charset. The ETag is the playlist's version (its content); `If-None-Match`
answers 304. A screen with a `token` must send it (`Authorization: Bearer …` or
`?token=`): none is 401, a wrong one 403. An unknown screen is 404. Errors are JSON.

A dedicated route, not a plugin route: it needs the campaign's screens and calendar and
records fetches in the log, and a cache hit is answered without leaving the event loop
(the benchmark's ETag path). Requests for `/led/{channel}/…` that name no screen go on
to the plugin routes.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from broadcaster.engine.led import LedFeed, Served
from broadcaster.errors import LogStoreError
from broadcaster.web.guard import error_json

if TYPE_CHECKING:
    from broadcaster.web.service import WebService

__all__ = ["LedRoute", "openapi_path"]


def _error(status: int, chinese: str, english: str, **headers: str) -> Response:
    code, body = error_json(status, chinese, english)
    return Response(body, status_code=code, media_type="application/json", headers=headers)


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags or "*" in tags


class LedRoute:
    def __init__(self, service: WebService):
        self.service = service
        self.feed = LedFeed(service.log)

    async def handle(self, request: Request) -> Response:
        service = self.service
        screen_id = request.path_params["screen"]
        app = service.app
        screen = app.campaign.screens.get(screen_id)
        if screen is None:
            if screen_id in app.channels:  # a plugin's own /led/{channel}/playlist route
                request.scope["path_params"] = {"channel": screen_id, "rest": "playlist"}
                return await service.hooks.handle(request)
            return _error(404, "没有此显示屏 no such screen", f"unknown screen {screen_id!r}")
        query = parse_qs(request.url.query)
        if screen.token_env is not None:
            expected = app.environ.get(screen.token_env)
            given = request.headers.get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else None
            token = token or next(iter(query.get("token", [])), None)
            if expected is None:
                return _error(
                    503,
                    "显示屏令牌未配置 the screen's token is not set on the server",
                    f"environment variable {screen.token_env} is not set",
                )
            if token is None:
                return _error(
                    401,
                    "缺少令牌 token required",
                    "token required",
                    **{"www-authenticate": "Bearer"},
                )
            if not hmac.compare_digest(token.encode(), expected.encode()):
                return _error(403, "令牌无效 token refused", "token refused")
        fmt = next(iter(query.get("format", [])), None)
        if fmt is None:
            fmt = "text" if "text/plain" in request.headers.get("accept", "") else "json"
        if fmt not in ("json", "text"):
            return _error(400, "格式无效 format must be json or text", f"unknown format {fmt!r}")
        now = service.clock.now()
        feed = self.feed
        try:
            served = feed.cached(app, screen_id, now) or await run_in_threadpool(
                feed.served, app, screen_id, now
            )
            assert served is not None
            etag = served.etag if fmt == "json" else served.etag[:-1] + '-t"'
            remote = request.client.host if request.client else ""
            if not feed.seen_lately(app, served, now, remote):
                await run_in_threadpool(feed.fetched, app, served, now, remote=remote)
        except LogStoreError:
            response = _error(
                503, "暂时无法读取日志，请稍后重试 log unavailable, retry later", "log unavailable"
            )
            response.headers["retry-after"] = "5"
            return response
        headers = {"etag": etag, "x-playlist-version": served.playlist.version}
        inm = request.headers.get("if-none-match")
        if inm is not None and _matches(inm, etag):
            service.metrics.hook(screen.channel, "led", 304)
            return Response(status_code=304, headers=headers)
        service.metrics.hook(screen.channel, "led", 200)
        return _body(served, fmt, headers)


def _body(served: Served, fmt: str, headers: dict[str, str]) -> Response:
    if fmt == "text":
        charset = served.playlist.screen.charset
        return Response(served.text, media_type=f"text/plain; charset={charset}", headers=headers)
    return Response(served.json, media_type="application/json", headers=headers)


def openapi_path() -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {
        "/led/{screen}/playlist": {
            "get": {
                "summary": "显示屏播放列表 a screen's playlist (JSON, or text in its charset)",
                "operationId": "led_playlist",
                "tags": ["led"],
                "parameters": [
                    {
                        "name": "screen",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["json", "text"]},
                    },
                    {
                        "name": "token",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "播放列表 the playlist",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    "304": {"description": "未变化 unchanged (ETag)"},
                    "400": {"description": "格式无效 bad format", "content": error},
                    "401": {"description": "缺少令牌 token required", "content": error},
                    "403": {"description": "令牌无效 token refused", "content": error},
                    "404": {"description": "没有此显示屏 unknown screen", "content": error},
                    "503": {"description": "日志不可用 log unavailable", "content": error},
                },
            }
        }
    }
