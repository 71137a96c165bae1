"""Plugin routes (inbound outcomes) mounted at /hooks/{channel}{path}, /led/{channel}{path}
and /confirm/{channel}{path}.

The table is built from the enabled channels of the current config and rebuilt when
the config changes; each request is matched against it, answered by the plugin's
handler (which authenticates the caller: a signature, a token, a signed link) and the
outcomes the reply carries are recorded (`Recovery.inbound`). The OpenAPI document
lists every route in the table.

Errors are JSON on /hooks and /led, readable pages on /confirm (people open those).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path

from broadcaster.channel import InboundReply, InboundRequest, InboundRoute
from broadcaster.errors import LogStoreError
from broadcaster.web.guard import error_json

if TYPE_CHECKING:
    from broadcaster.engine.app import App
    from broadcaster.web.service import WebService

__all__ = ["SCOPES", "HookRoute", "HookTable"]

log = logging.getLogger("broadcaster.web")
SCOPES = ("hooks", "led", "confirm")
CHANNEL_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True)
class HookRoute:
    """One plugin route of one channel, where it is mounted."""

    channel_id: str
    route: InboundRoute
    pattern: re.Pattern[str]
    template: str  # "/hooks/echo/receipts", "{name}" segments kept

    @property
    def scope(self) -> str:
        return self.route.scope


class HookTable:
    """The routes of the current config's channels, per (scope, channel)."""

    def __init__(self, service: WebService):
        self.service = service
        self._built_for: App | None = None
        self._routes: dict[tuple[str, str], list[HookRoute]] = {}
        self.problems: dict[str, str] = {}  # channel id -> why its routes are missing

    def routes(self) -> dict[tuple[str, str], list[HookRoute]]:
        app, dispatcher, _ = self.service.source.current()
        if app is not self._built_for:
            table: dict[tuple[str, str], list[HookRoute]] = {}
            problems: dict[str, str] = {}
            for cid, profile in app.channels.items():
                if not profile.enabled:
                    continue
                try:
                    declared = list(dispatcher.channel(cid).routes())
                except Exception as exc:  # a plugin bug disables its routes only
                    problems[cid] = f"routes() failed: {exc!r}"
                    continue
                for route in declared:
                    if route.scope not in SCOPES or not route.path.startswith("/"):
                        problems[cid] = f"bad route {route.scope}:{route.path}"
                        continue
                    pattern, _, _ = compile_path(route.path)
                    template = f"/{route.scope}/{cid}{route.path}"
                    table.setdefault((route.scope, cid), []).append(
                        HookRoute(cid, route, pattern, template)
                    )
            self._routes, self.problems, self._built_for = table, problems, app
        return self._routes

    def all(self) -> list[HookRoute]:
        return [r for routes in self.routes().values() for r in routes]

    async def handle(self, request: Request) -> Response:
        scope = request.url.path.split("/", 2)[1]
        channel_id = request.path_params["channel"]
        rest = "/" + request.path_params.get("rest", "")
        human = scope == "confirm"
        routes = (
            self.routes().get((scope, channel_id)) if CHANNEL_ID.fullmatch(channel_id) else None
        )
        if routes is None:
            return self._error(human, 404, "没有此渠道 no such channel", "unknown channel")
        matched = [r for r in routes if r.pattern.match(rest)]
        if not matched:
            return self._error(human, 404, "没有此地址 no such route", "unknown route")
        route = next((r for r in matched if request.method in r.route.methods), None)
        if route is None:
            allowed = ", ".join(sorted({m for r in matched for m in r.route.methods}))
            response = self._error(
                human, 405, "不允许此方法 method not allowed", "method not allowed"
            )
            response.headers["allow"] = allowed
            return response
        body = await request.body()
        inbound = InboundRequest(
            method=request.method,
            path=rest,
            query=parse_qs(request.url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            remote=request.client.host if request.client else "",
            links=self.service.links,
        )
        _, _, recovery = self.service.source.current()
        try:
            reply: InboundReply = await run_in_threadpool(
                recovery.inbound, channel_id, route.route, inbound
            )
        except (ValueError, TypeError, LookupError, AttributeError, UnicodeError):
            # a plugin that chokes on what it was sent (malformed JSON, a missing field)
            self.service.metrics.hook(channel_id, scope, 400)
            return self._error(
                human, 400, "请求内容无效 the request is not valid", "malformed request"
            )
        except LogStoreError:
            log.warning("inbound %s on %s: the log is unavailable", rest, channel_id)
            self.service.metrics.hook(channel_id, scope, 503)
            response = self._error(
                human,
                503,
                "暂时无法记录，请稍后重试 cannot record now, retry later",
                "log unavailable",
            )
            response.headers["retry-after"] = "5"
            return response
        except Exception:
            log.exception("plugin route %s of %s failed", rest, channel_id)
            self.service.metrics.hook(channel_id, scope, 500)
            return self._error(human, 500, "渠道插件出错 the channel plugin failed", "plugin error")
        self.service.metrics.hook(channel_id, scope, reply.status)
        if human and reply.status >= 400 and reply.media_type == "application/json":
            message = _message_of(reply.body)
            return self._error(True, reply.status, message, message)
        return Response(
            reply.body,
            status_code=reply.status,
            media_type=reply.media_type,
            headers=dict(reply.headers),
        )

    def _error(self, human: bool, status: int, chinese: str, english: str) -> Response:
        if human:
            page = self.service.error_page(status, chinese, english)
            return Response(page, status_code=status, media_type="text/html; charset=utf-8")
        code, body = error_json(status, chinese, english)
        return Response(body, status_code=code, media_type="application/json")

    # -- OpenAPI

    def openapi_paths(self) -> dict[str, Any]:
        paths: dict[str, Any] = {}
        for r in self.all():
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{(\w+)", r.route.path)
            ]
            for method in r.route.methods:
                op: dict[str, Any] = {
                    "summary": r.route.summary or f"{r.channel_id} {r.route.path}",
                    "operationId": f"{r.scope}_{r.channel_id}_{method.lower()}_{_slug(r.route.path)}",
                    "tags": [f"{r.scope}: {r.channel_id}"],
                    "parameters": params,
                    "responses": _responses(r.scope == "confirm"),
                }
                if method in ("POST", "PUT", "PATCH"):
                    op["requestBody"] = {
                        "required": False,
                        "content": {
                            "application/json": {"schema": {}},
                            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    }
                paths.setdefault(r.template, {})[method.lower()] = op
        return paths


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"


ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _responses(human: bool) -> dict[str, Any]:
    """What a plugin route may answer: the plugin's own reply, or one of our errors."""
    error: dict[str, Any] = (
        {"text/html": {"schema": {"type": "string"}}}
        if human
        else {"application/json": {"schema": ERROR_REF}}
    )
    reply = {"description": "插件的应答 the plugin's answer", "content": {"*/*": {"schema": {}}}}
    out: dict[str, Any] = {"default": reply}
    for code, text in (
        ("400", "请求无效 malformed request"),
        ("404", "没有此渠道或地址 unknown channel or route"),
        ("405", "不允许此方法 method not allowed"),
        ("413", "请求内容过大 body too large"),
        ("503", "日志暂不可用 the log is unavailable: retry"),
    ):
        out[code] = {"description": text, "content": error}
    return out


def _message_of(body: bytes | str) -> str:
    try:
        data: Mapping[str, Any] = json.loads(body)
        return str(data.get("错误") or data.get("error") or "请求被拒绝 refused")
    except (ValueError, TypeError, AttributeError):
        return "请求被拒绝 refused"
