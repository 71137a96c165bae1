"""A fake Feishu custom bot (channels.md §7): `POST /open-apis/bot/v2/hook/<TOKEN>`.

A bot with a secret needs `timestamp` (s, within an hour of the fake's clock) and
`sign` = Base64(HMAC-SHA256(key = ts + "\\n" + secret, empty message)) in the body,
else 19021. A bot with keywords refuses a message holding none (19024). Bodies over
20 KB and bad shapes get 9499; an unknown token 19001. 5 messages a second and 100 a
minute per bot, then 11232 (both `scale`d). Answers
`{"code": 0, "msg": "success", "data": {}}`; 500, hang and HTML through `Mode`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from .group_bot import Bot, BotFake, Refusal, json_body
from .http import RecordedRequest, Reply

__all__ = ["FeishuFake", "expected_sign"]

BODY_BYTES = 20 * 1024
BAD_REQUEST = (9499, "Bad Request")
PREFIX = "/open-apis/bot/v2/hook/"


def expected_sign(secret: str, timestamp: str) -> str:
    """The sign Feishu computes."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def post_text(content: Any) -> str | None:
    """The text of a `post` body (title and every text element), None if malformed."""
    post = content.get("post") if isinstance(content, dict) else None
    if not isinstance(post, dict) or not post:
        return None
    texts = []
    for lang in post.values():
        lines = lang.get("content") if isinstance(lang, dict) else None
        if not isinstance(lines, list) or not all(isinstance(line, list) for line in lines):
            return None
        texts.append(str(lang.get("title", "")))
        for line in lines:
            for element in line:
                if not isinstance(element, dict) or "tag" not in element:
                    return None
                texts.append(str(element.get("text", "")))
    return "\n".join(texts)


class FeishuFake(BotFake):
    code_field = "code"
    message_field = "msg"
    limits = ((5, 1.0), (100, 60.0))
    throttle = (11232, "frequency limited")
    removed_code = (19001, "param invalid: incoming webhook access token invalid")
    unknown_code = (19001, "param invalid: incoming webhook access token invalid")
    server_error_status = 500

    def success(self) -> dict[str, Any]:
        return {"code": 0, "msg": "success", "data": {}}

    def answer(self, code: int, message: str) -> Reply:
        return Reply.json({"code": code, "msg": message, "data": {}})

    def parse(self, request: RecordedRequest) -> tuple[str, dict[str, Any]]:
        if request.method != "POST" or not request.path.startswith(PREFIX):
            raise Refusal(404, "not found")
        if len(request.body) > BODY_BYTES:
            raise Refusal(*BAD_REQUEST)
        return request.path.removeprefix(PREFIX), json_body(request, BAD_REQUEST)

    def check(self, request: RecordedRequest, bot: Bot, body: dict[str, Any], now: float) -> Any:
        if bot.secret is not None:
            ts, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
            if not ts.isdigit() or abs(int(ts) - now) > 3600:
                raise Refusal(19021, "sign match fail or timestamp is not within one hour")
            if not hmac.compare_digest(sign, expected_sign(bot.secret, ts)):
                raise Refusal(19021, "sign match fail or timestamp is not within one hour")
        kind, content = body.get("msg_type"), body.get("content")
        if kind == "text" and isinstance(content, dict) and isinstance(content.get("text"), str):
            seen: str | None = content["text"]
        elif kind == "post":
            seen = post_text(content)
        else:
            seen = None
        if seen is None:
            raise Refusal(*BAD_REQUEST)
        if bot.keywords and not any(k in seen for k in bot.keywords):
            raise Refusal(19024, "Key Words Not Found")
        return content
