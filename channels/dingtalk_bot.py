"""dingtalk-bot: the DingTalk (钉钉) custom robot, one robot per group.

Plugin alias: dingtalk-bot. Docs: https://open.dingtalk.com/document/robots/custom-robot-access
`POST {base_url}/robot/send?access_token=<T>`; the token is the target's address. In
the signed mode (加签) the address also names the secret,
`{key: {env: …}, secret: {env: …}}`, and each request carries `timestamp` (ms) and
`sign` = Base64(HMAC-SHA256(secret, ts + "\\n" + secret)), URL-encoded once. In the
keyword mode `keywords:` lists the robot's keywords: `validate` fails a rendered
message (or any part of it) without one. Sends `text` (@ by mobile, @all),
`markdown` (title + text) or `link` (title, text, messageUrl, picUrl). `errcode` 0 is
success; 130101/410100 mean the robot is throttled and then blocked for 10 minutes
(every sender of that robot waits); bad token, robot removed, sign mismatch and
keyword missing are permanent. The robot allows 20 messages a minute: the channel
keeps to 18.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, Literal
from urllib.parse import quote_plus

from pydantic import Field, model_validator

from broadcaster.channel import Delivery, ErrorClass, Message, RateLimit

from ._group_bot import BotSettings, Code, GroupBotChannel, first_line, keywords_field

__all__ = ["DingTalkBotChannel", "DingTalkBotSettings", "dingtalk_sign"]

BODY_BYTES = 20_000  # the provider refuses a longer serialised body
PART_BYTES = 18_000  # text per part: room left for the JSON around it
BLOCK_SECONDS = 600.0  # over the limit the robot is blocked for 10 minutes
MOBILE = re.compile(r"^1[3-9]\d{9}$")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query value, URL-encoded once (channels.md §6)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkBotSettings(BotSettings):
    base_url: str = "https://oapi.dingtalk.com"
    msgtype: Literal["text", "markdown", "link"] = "markdown"
    keywords: list[str] = keywords_field()  # keyword mode: every message must hold one
    at_mobiles: list[str] = Field(default_factory=list)  # @ these members (text, markdown)
    at_all: bool = False
    link_url: str | None = None  # link: where the card leads (required for link)
    link_picurl: str | None = None  # link: the picture's URL
    max_bytes: int | None = Field(default=None, ge=64, le=PART_BYTES)  # text per part

    @model_validator(mode="after")
    def _consistent(self) -> DingTalkBotSettings:
        if any(not MOBILE.match(m) for m in self.at_mobiles):
            raise ValueError("at_mobiles: 手机号无效 expected 11-digit mainland mobiles")
        if self.msgtype == "link" and not self.link_url:
            raise ValueError("link_url: 链接消息需要链接 a link message needs link_url")
        if any(not k.strip() for k in self.keywords):
            raise ValueError("keywords: 关键词不能为空 a keyword cannot be empty")
        return self


class DingTalkBotChannel(GroupBotChannel):
    """Posts each delivery (each part, in order) to the group's DingTalk robot."""

    name = "dingtalk-bot"
    Settings = DingTalkBotSettings
    rate_limit = RateLimit(18, 60.0)  # provider: 20 a minute, then 10 minutes blocked
    code_field = "errcode"
    settings: DingTalkBotSettings

    def max_bytes(self, message: Message) -> int | None:
        return self.settings.max_bytes or PART_BYTES

    def url(self, delivery: Delivery) -> str:
        recipient = delivery.recipient
        url = f"{self.settings.base_url}/robot/send?access_token={recipient.address}"
        secret = recipient.extra.get("secret")
        if secret:
            ts = int(self.context.clock().timestamp() * 1000)
            url += f"&timestamp={ts}&sign={dingtalk_sign(secret, ts)}"
        return url

    def body(self, delivery: Delivery, part: int) -> dict[str, Any]:
        s = self.settings
        message = delivery.message
        text = message.pieces[part]
        at = {"atMobiles": list(s.at_mobiles), "isAtAll": s.at_all} if part == 0 else {}
        if s.msgtype == "link":
            link = {
                "title": message.title or first_line(message.text),
                "text": text,
                "messageUrl": s.link_url,
            }
            if s.link_picurl:
                link["picUrl"] = s.link_picurl
            return {"msgtype": "link", "link": link}
        if s.msgtype == "markdown":
            title = message.title or first_line(message.text)
            return {"msgtype": "markdown", "markdown": {"title": title, "text": text}, "at": at}
        return {"msgtype": "text", "text": {"content": text}, "at": at}

    def codes(self, code: int, message: str) -> Code:
        if code in (130101, 410100):
            return Code(
                ErrorClass.THROTTLED,
                "发送过快，机器人被限流10分钟 too fast: the robot is blocked for 10 minutes",
                BLOCK_SECONDS,
                block=True,
            )
        if code == 310000:
            lowered = message.lower()
            if "keyword" in lowered:
                return Code(ErrorClass.CONTENT, "缺少关键词 keywords not in content")
            if "timestamp" in lowered:
                return Code(
                    ErrorClass.CONFIG, "时间戳无效，检查时钟 invalid timestamp: check the clock"
                )
            if "whitelist" in lowered or "ip" in lowered.split():
                return Code(ErrorClass.CONFIG, "IP 不在白名单 IP not in the robot's allowlist")
            return Code(ErrorClass.CONFIG, "签名不匹配 sign not match: check the secret")
        if code in (300005, 400101, 400102, 400106, 400013):
            return Code(
                ErrorClass.CONFIG,
                "机器人不存在、已停用或群已解散 no such robot, robot disabled or group dissolved",
            )
        if code == 400105 or 430101 <= code <= 430104:
            return Code(ErrorClass.CONTENT, "内容被拒 content refused")
        if code == -1:
            return Code(ErrorClass.TRANSIENT, "系统繁忙 busy")
        return Code(ErrorClass.CONTENT, "未识别的错误码 unrecognised code")
