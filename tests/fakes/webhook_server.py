"""A fake in-house webhook gateway: the receiver the `webhook` channel is tested against.

Imitates a typical gateway (channels.md §0, §11): `POST <any path>` with a JSON body,
`Authorization: Bearer <token>` (401 on mismatch), a JSON `Content-Type` (415
otherwise), answer `{"code": "OK", "biz_id": "biz-000001"}`. It remembers the
`Idempotency-Key` of every send it acted on: a repeat is answered with the first
`biz_id` and not acted on again, and `GET /status/<key>` answers 200
`{"code": "OK", "biz_id": ...}` for a key it acted on, 404 `{"code": "NOT_FOUND"}`
otherwise. Every key is counted, so a test can assert that none was sent twice.

Switch the behaviour per test (`server.mode = Mode.HTTP_503`), for the n-th send
(`server.on_request(2, Mode.HANG)`, 1-based over every POST received) or for the next
sends in order (`server.queue(Mode.HTTP_502, Mode.OK)`). Precedence: `on_request`,
then `queue`, then `mode`. Knobs: `token`, `error_code`, `retry_after` (header value,
a string), `delay` (seconds, `SLOW`), `latency` (seconds before every answer, for
benchmarks), `status_requires_auth`, `dedupe`.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from enum import StrEnum

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["ACTING_MODES", "Mode", "WebhookFake"]


class Mode(StrEnum):
    """How the gateway answers a send that passed authentication."""

    OK = "ok"  # 200 {"code": "OK", "biz_id": ...}
    ERROR_CODE = "error_code"  # 200 {"code": <error_code>}: a business failure
    THROTTLED = "throttled"  # 429, Retry-After: <retry_after>
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    HTML = "html"  # 200 text/html: a proxy's or login page
    TRUNCATED = "truncated"  # 200, a whole HTTP answer whose JSON body is cut off
    CUT_OFF = "cut_off"  # 200, Content-Length promises more; the connection drops mid-body
    GARBAGE = "garbage"  # 200, bytes that are neither JSON nor text
    SLOW = "slow"  # the normal answer after `delay` seconds
    HANG = "hang"  # accept the send, never answer (until the server stops)
    CLOSE = "close"  # accept the send, close the connection without answering


# Modes in which the gateway acted on the send (its answer was slow, lost or damaged):
# the key is remembered and GET /status/<key> finds it.
ACTING_MODES = frozenset({Mode.OK, Mode.SLOW, Mode.HANG, Mode.CLOSE, Mode.TRUNCATED, Mode.CUT_OFF})

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>网关错误</h1><p>nginx</p></body></html>"
)
GARBAGE = b"\x00\xff\xfe garbage \x8f\x9c\x01 not json"


class WebhookFake(FakeHTTPServer):
    """The fake gateway; see the module docstring for modes and knobs."""

    def __init__(self, token: str = "secret") -> None:
        super().__init__()
        self.token = token
        self.mode = Mode.OK
        self.error_code = "MOBILE_NUMBER_ILLEGAL"
        self.retry_after = "3"
        self.delay = 0.5
        self.latency = 0.0
        self.status_requires_auth = False
        self.dedupe = True
        self.accepted: dict[str, str] = {}  # idempotency key -> biz_id, for sends acted on
        self.key_counts: Counter[str] = Counter()  # every POST carrying the key, any outcome
        self.acted_counts: Counter[str] = Counter()  # well-formed, authorised sends acted on
        self._by_index: dict[int, Mode] = {}
        self._modes: deque[Mode] = deque()
        self._posts = 0
        self._state = threading.Lock()

    # -- switching

    def on_request(self, n: int, mode: Mode) -> None:
        """Answer the n-th POST (1-based, counting every POST received) with `mode`."""
        with self._state:
            self._by_index[n] = mode

    def queue(self, *modes: Mode) -> None:
        """Answer the next POSTs with these modes, in order, then with `mode`."""
        with self._state:
            self._modes.extend(modes)

    # -- what tests read

    @property
    def sends(self) -> list[RecordedRequest]:
        """Every POST received, in arrival order."""
        return [r for r in self.requests if r.method == "POST"]

    def repeated_keys(self) -> dict[str, int]:
        """Keys received more than once, with their counts: {} when nothing was sent twice."""
        with self._state:
            return {k: n for k, n in self.key_counts.items() if n > 1}

    def duplicate_sends(self) -> dict[str, int]:
        """Keys the gateway acted on more than once: a message the recipient would get twice.
        (A POST cut off mid-body by a crash is refused as malformed and is not counted.)"""
        with self._state:
            return {k: n for k, n in self.acted_counts.items() if n > 1}

    # -- answering

    def handle(self, request: RecordedRequest) -> Reply:
        reply = self._answer(request)
        if self.latency and reply.action == "answer":
            reply = Reply(
                reply.status,
                reply.body,
                reply.headers,
                delay=reply.delay + self.latency,
                short_by=reply.short_by,
            )
        return reply

    def _authorised(self, request: RecordedRequest) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _answer(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path.startswith("/status/"):
            return self._status(request)
        if request.method != "POST":
            return Reply.json({"code": "METHOD_NOT_ALLOWED"}, 405)
        with self._state:
            self._posts += 1
            mode = self._by_index.pop(self._posts, None)
            if mode is None:
                mode = self._modes.popleft() if self._modes else self.mode
            key = request.headers.get("Idempotency-Key")
            if key:
                self.key_counts[key] += 1
        if not self._authorised(request):
            return Reply.json({"code": "UNAUTHORIZED", "message": "invalid token"}, 401)
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return Reply.json({"code": "UNSUPPORTED_MEDIA_TYPE"}, 415)
        try:
            json.loads(request.body)
        except ValueError:
            return Reply.json({"code": "BAD_REQUEST", "message": "body is not JSON"}, 400)
        return self._reply(mode, request.seq, key)

    def _reply(self, mode: Mode, seq: int, key: str | None) -> Reply:
        if mode in ACTING_MODES:
            with self._state:
                if key:
                    self.acted_counts[key] += 1
                biz_id = self.accepted.get(key) if key and self.dedupe else None
                if biz_id is None:
                    biz_id = f"biz-{seq:06d}"
                    if key:
                        self.accepted[key] = biz_id
            ok = json.dumps({"code": "OK", "biz_id": biz_id, "message": "成功"}, ensure_ascii=False)
            if mode is Mode.OK:
                return Reply.json({"code": "OK", "biz_id": biz_id, "message": "成功"})
            if mode is Mode.SLOW:
                return Reply.json({"code": "OK", "biz_id": biz_id}, delay=self.delay)
            if mode is Mode.HANG:
                return Reply.hang()
            if mode is Mode.CLOSE:
                return Reply.close()
            if mode is Mode.TRUNCATED:
                return Reply(200, ok[: len(ok) // 2], {"Content-Type": "application/json"})
            return Reply(200, ok[: len(ok) // 2], {"Content-Type": "application/json"}, short_by=20)
        if mode is Mode.ERROR_CODE:
            return Reply.json({"code": self.error_code, "message": "手机号码格式错误"})
        if mode is Mode.THROTTLED:
            return Reply.json(
                {"code": "THROTTLED", "message": "触发流控"},
                429,
                {"Retry-After": self.retry_after},
            )
        if mode in (Mode.HTTP_500, Mode.HTTP_502, Mode.HTTP_503):
            return Reply.json({"code": "SERVER_ERROR"}, int(mode.value.removeprefix("http_")))
        if mode is Mode.HTML:
            return Reply(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        return Reply(200, GARBAGE, {"Content-Type": "application/octet-stream"})

    def _status(self, request: RecordedRequest) -> Reply:
        if self.status_requires_auth and not self._authorised(request):
            return Reply.json({"code": "UNAUTHORIZED", "message": "invalid token"}, 401)
        key = request.path.removeprefix("/status/")
        with self._state:
            biz_id = self.accepted.get(key)
        if biz_id is None:
            return Reply.json({"code": "NOT_FOUND"}, 404)
        return Reply.json({"code": "OK", "biz_id": biz_id})
