"""A fake WeCom group robot (channels.md §5): `POST /cgi-bin/webhook/send?key=KEY`.

No signing: the key is the credential (unknown or removed → 93000). Checks the body
the way WeCom does: `text.content` ≤ 2,048 UTF-8 bytes and `markdown.content` ≤ 4,096
(else 40058), `news` with 1–8 articles each with a title and url, mentions as lists
of strings. 20 messages a minute per bot, then 45009 (`scale` shrinks the minute).
Answers `{"errcode": 0, "errmsg": "ok"}`; 502, hang and HTML through `Mode`.
"""

from __future__ import annotations

from typing import Any

from .group_bot import Bot, BotFake, Refusal, json_body
from .http import RecordedRequest

__all__ = ["WeComFake"]

LIMITS = {"text": 2048, "markdown": 4096}
BAD_JSON = (40035, "invalid parameter: body is not JSON")


class WeComFake(BotFake):
    limits = ((20, 60.0),)
    throttle = (45009, "api freq out of limit")
    removed_code = (93000, "invalid webhook url, hint: [bot removed]")
    unknown_code = (93000, "invalid webhook url")
    server_error_status = 502

    def parse(self, request: RecordedRequest) -> tuple[str, dict[str, Any]]:
        if request.method != "POST" or request.path != "/cgi-bin/webhook/send":
            raise Refusal(404, "not found")
        key = (request.query.get("key") or [""])[0]
        return key, json_body(request, BAD_JSON)

    def check(self, request: RecordedRequest, bot: Bot, body: dict[str, Any], now: float) -> Any:
        kind = body.get("msgtype")
        if kind in LIMITS:
            content = (body.get(kind) or {}).get("content")
            if not isinstance(content, str) or not content:
                raise Refusal(40008, f"invalid message: {kind}.content missing")
            if len(content.encode("utf-8")) > LIMITS[kind]:
                raise Refusal(40058, f"{kind}.content exceed max length {LIMITS[kind]}")
            for name in ("mentioned_list", "mentioned_mobile_list"):
                value = body[kind].get(name, [])
                if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise Refusal(40058, f"invalid {name}")
            return body[kind]
        if kind == "news":
            articles = (body.get("news") or {}).get("articles")
            if not isinstance(articles, list) or not 1 <= len(articles) <= 8:
                raise Refusal(40008, "invalid message: news needs 1-8 articles")
            for article in articles:
                if not (isinstance(article, dict) and article.get("title") and article.get("url")):
                    raise Refusal(40008, "invalid message: an article needs title and url")
            return {"articles": articles}
        raise Refusal(40008, f"invalid message type {kind!r}")
