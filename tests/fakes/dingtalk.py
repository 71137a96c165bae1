"""A fake DingTalk custom robot (channels.md §6): `POST /robot/send?access_token=T`.

A robot with a secret needs `timestamp` (ms, within an hour of the fake's clock) and
`sign` = Base64(HMAC-SHA256(secret, ts + "\\n" + secret)) in the query; the query is
decoded once, as the provider does, so a sign not URL-encoded (a `+` read as a
space) does not match. A robot with keywords refuses a message holding none
(310000 "keywords not in content"). The serialised body must be ≤ 20,000 bytes.
Unknown token → 300005, removed robot → 400106, unsupported type → 400105. 20
messages a minute per robot; the 21st is refused (130101, or 410100 when
`throttle_code` says so) and the robot is blocked for 10 minutes (both `scale`d).
Answers `{"errcode": 0, "errmsg": "ok"}`; 503, hang and cut-off JSON through `Mode`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from .group_bot import Bot, BotFake, Refusal, json_body
from .http import RecordedRequest

__all__ = ["DingTalkFake", "expected_sign"]

BODY_BYTES = 20_000
BAD_JSON = (400105, "不支持的消息类型 body is not JSON")


def expected_sign(secret: str, timestamp: str) -> str:
    """The sign DingTalk computes (before URL-encoding)."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


class DingTalkFake(BotFake):
    limits = ((20, 60.0),)
    block_seconds = 600.0
    throttle = (130101, "send too fast, exceed 20 times per minute")
    removed_code = (400106, "robot 不存在 robot not found")
    unknown_code = (300005, "token is not exist")
    server_error_status = 503

    def parse(self, request: RecordedRequest) -> tuple[str, dict[str, Any]]:
        if request.method != "POST" or request.path != "/robot/send":
            raise Refusal(404, "not found")
        if len(request.body) > BODY_BYTES:
            raise Refusal(460101, "body 大小不合法 message too long, exceed 20000 bytes")
        token = (request.query.get("access_token") or [""])[0]
        return token, json_body(request, BAD_JSON)

    def check(self, request: RecordedRequest, bot: Bot, body: dict[str, Any], now: float) -> Any:
        if bot.secret is not None:
            ts = (request.query.get("timestamp") or [""])[0]
            sign = (request.query.get("sign") or [""])[0]
            if not ts.isdigit() or abs(int(ts) - now * 1000) > 3_600_000:
                raise Refusal(310000, "invalid timestamp")
            if not hmac.compare_digest(sign, expected_sign(bot.secret, ts)):
                raise Refusal(310000, "sign not match")
        kind = body.get("msgtype")
        part = body.get(kind) if isinstance(kind, str) else None
        if kind == "text" and isinstance(part, dict) and isinstance(part.get("content"), str):
            seen = part["content"]
        elif kind in ("markdown", "link") and isinstance(part, dict) and part.get("title"):
            if kind == "link" and not part.get("messageUrl"):
                raise Refusal(400105, "link needs messageUrl")
            seen = f"{part.get('title', '')}\n{part.get('text', '')}"
        else:
            raise Refusal(400105, f"不支持的消息类型 unsupported message {kind!r}")
        if bot.keywords and not any(k in seen for k in bot.keywords):
            raise Refusal(310000, "keywords not in content")
        return part
