"""What every request passes before any route: a size limit, path checks, safe headers.

Pure ASGI (no per-request task or thread): the receipt routes stay fast. Machine routes
(`/hooks`, `/led`, `/healthz`, `/metrics`) are answered in JSON, everything else as a
readable page.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Guard", "error_json", "is_machine_path"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MACHINE_PREFIXES = ("/hooks/", "/led/", "/healthz", "/metrics", "/openapi.json")
PAGE_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # links carry tokens: never leak them onward
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        b" frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"cache-control", b"no-store"),
]
MACHINE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
BAD_PATH = (
    "请求路径无效 the request path is not valid",
    "bad path: dot segments, backslashes, control characters or empty segments",
)
TOO_LARGE = ("请求内容过大 the request is too large", "request body too large")


def is_machine_path(path: str) -> bool:
    return path.startswith(MACHINE_PREFIXES)


def error_json(status: int, chinese: str, english: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": english, "错误": chinese}, ensure_ascii=False).encode()


def _bad_path(path: str) -> bool:
    if any(c in path for c in ("\\", "\x00")) or any(ord(c) < 32 for c in path):
        return True
    segments = path.split("/")[1:]
    return any(s in (".", "..") for s in segments) or "" in segments[:-1]


class Guard:
    """Size limits, path checks and security headers around the whole app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_form: int,
        page: Callable[[int, str, str], bytes],
    ):
        self.app = app
        self.max_body = max_body
        self.max_form = max_form
        self.page = page  # (status, chinese, english) -> a readable HTML page

    async def _refuse(self, send: Send, machine: bool, status: int, text: tuple[str, str]) -> None:
        if machine:
            body = error_json(status, *text)[1]
            media = b"application/json"
        else:
            body = self.page(status, *text)
            media = b"text/html; charset=utf-8"
        headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
        headers += MACHINE_HEADERS if machine else PAGE_HEADERS
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        machine = is_machine_path(path)
        if _bad_path(path) or _bad_path(scope.get("raw_path", b"").decode("latin-1").split("?")[0]):
            await self._refuse(send, machine, 400, BAD_PATH)
            return
        limit = self.max_body if machine or path.startswith("/confirm/") else self.max_form
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._drain_refuse(receive, send, machine)
            return
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await self._refuse(send, machine, 413, TOO_LARGE)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            receive = replay
        extra = MACHINE_HEADERS if machine else PAGE_HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in extra if k not in names
                ]
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _drain_refuse(self, receive: Receive, send: Send, machine: bool) -> None:
        await self._refuse(send, machine, 413, TOO_LARGE)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
