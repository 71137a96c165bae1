"""A fake LED vendor platform (VNNOX-like cloud or an office's controller server), the
receiver of the generic HTTP push bridge.

`PUT /screens/<id>/playlist` with `Authorization: Bearer <token>` (401 without, 403
wrong), the playlist as JSON (its `version` must equal the `X-Playlist-Version` header)
or as text that must decode in the charset its Content-Type names. Answers
`{"code": 0}`; per-request modes: 429, 500, an error code in a 200, a hang (the client
times out: retried later).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from enum import StrEnum

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["LedPlatformFake", "PlatformMode"]


class PlatformMode(StrEnum):
    OK = "ok"
    THROTTLED = "throttled"  # 429
    HTTP_500 = "http_500"
    ERROR_CODE = "error_code"  # 200 {"code": 40001, "msg": "screen offline"}
    HANG = "hang"


class LedPlatformFake(FakeHTTPServer):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.modes: deque[PlatformMode] = deque()
        self.accepted: dict[str, list[str]] = {}  # screen -> versions taken, in order
        self.bodies: dict[str, bytes] = {}
        self.problems: list[str] = []  # what the platform found wrong with a request
        self._taken = threading.Lock()

    def handle(self, request: RecordedRequest) -> Reply:
        auth = request.headers.get("Authorization", "")
        if not auth:
            return Reply.json({"code": 401, "msg": "no token"}, status=401)
        if auth != f"Bearer {self.token}":
            return Reply.json({"code": 403, "msg": "bad token"}, status=403)
        parts = request.path.strip("/").split("/")
        if request.method != "PUT" or len(parts) != 3 or parts[0] != "screens":
            return Reply.json({"code": 404}, status=404)
        with self._lock:
            mode = self.modes.popleft() if self.modes else PlatformMode.OK
        if mode is PlatformMode.HANG:
            return Reply.hang()
        if mode is PlatformMode.THROTTLED:
            return Reply.json({"code": 429}, status=429, headers={"Retry-After": "30"})
        if mode is PlatformMode.HTTP_500:
            return Reply(500, b"internal error")
        if mode is PlatformMode.ERROR_CODE:
            return Reply.json({"code": 40001, "msg": "screen offline"})
        screen, version = parts[1], request.headers.get("X-Playlist-Version", "")
        media = request.headers.get("Content-Type", "")
        if media.startswith("application/json"):
            if json.loads(request.body)["version"] != version:
                self.problems.append(f"{screen}: version header and body differ")
        else:
            charset = media.partition("charset=")[2] or "utf-8"
            try:
                request.body.decode("gbk" if charset == "gb2312" else charset)
            except UnicodeDecodeError:
                self.problems.append(f"{screen}: body is not {charset}")
        with self._taken:
            self.accepted.setdefault(screen, []).append(version)
            self.bodies[screen] = request.body
        return Reply.json({"code": 0, "msg": "ok"})
