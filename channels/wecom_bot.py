"""wecom-bot: the WeCom (企业微信) group robot webhook, one bot per group.

Plugin alias: wecom-bot. Docs: https://developer.work.weixin.qq.com/document/path/91770
`POST {base_url}/cgi-bin/webhook/send?key=<KEY>`, the key being the target's address
(`{env: NAME}`). Sends `text` (≤ 2,048 UTF-8 bytes, @-mentions by mobile or @all),
`markdown` (≤ 4,096 bytes) or `news` (one article: title, description, link, picture).
Longer texts go as numbered parts split at paragraphs. `errcode` 0 is success; 45009
is throttled until the next minute, 93000 (bad key, bot removed) is permanent for
the group, 40058 (too long) for the message, -1 (busy) retried. The provider allows
20 messages a minute per bot: the channel keeps to 18.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from broadcaster.channel import Delivery, ErrorClass, Message, RateLimit
from broadcaster.kit import utf8_len

from ._group_bot import BotSettings, Code, GroupBotChannel, first_line

__all__ = ["WeComBotChannel", "WeComBotSettings"]

TEXT_BYTES = 2048
MARKDOWN_BYTES = 4096
NEWS_TITLE_BYTES = 128  # WeCom cuts longer titles
NEWS_DESCRIPTION_BYTES = 512  # and longer descriptions
MOBILE = re.compile(r"^1[3-9]\d{9}$")


class WeComBotSettings(BotSettings):
    base_url: str = "https://qyapi.weixin.qq.com"
    msgtype: Literal["text", "markdown", "news"] = "markdown"
    mention_mobiles: list[str] = Field(default_factory=list)  # text only: @ these members
    mention_all: bool = False  # text only: @all
    news_url: str | None = None  # news: where the article links to (required for news)
    news_picurl: str | None = None  # news: the picture's URL
    max_bytes: int | None = Field(default=None, ge=64)  # a smaller part size than the provider's

    @model_validator(mode="after")
    def _consistent(self) -> WeComBotSettings:
        bad = [m for m in self.mention_mobiles if not MOBILE.match(m)]
        if bad:
            raise ValueError(
                f"mention_mobiles: 手机号无效 expected 11-digit mainland mobiles; got {len(bad)}"
                " invalid"
            )
        if (self.mention_mobiles or self.mention_all) and self.msgtype != "text":
            raise ValueError(
                "mention_mobiles/mention_all: 只有 text 消息可按手机号@人 only text messages"
                " mention by mobile; write msgtype: text"
            )
        if self.msgtype == "news" and not self.news_url:
            raise ValueError("news_url: 图文消息需要链接 a news message needs news_url")
        limit = TEXT_BYTES if self.msgtype == "text" else MARKDOWN_BYTES
        if self.max_bytes is not None and self.max_bytes > limit:
            raise ValueError(f"max_bytes: 超过企业微信上限 over WeCom's {limit} bytes")
        return self


class WeComBotChannel(GroupBotChannel):
    """Posts each delivery (each part, in order) to the group's WeCom robot."""

    name = "wecom-bot"
    Settings = WeComBotSettings
    rate_limit = RateLimit(18, 60.0)  # provider: 20 a minute per bot
    code_field = "errcode"
    settings: WeComBotSettings

    def max_bytes(self, message: Message) -> int | None:
        s = self.settings
        if s.msgtype == "news":
            return None
        return s.max_bytes or (TEXT_BYTES if s.msgtype == "text" else MARKDOWN_BYTES)

    def check_message(self, message: Message) -> list[str]:
        problems = super().check_message(message)
        if self.settings.msgtype == "news":
            title = message.title or first_line(message.text, 40)
            if utf8_len(title) > NEWS_TITLE_BYTES:
                problems.append(
                    f"图文标题超过 {NEWS_TITLE_BYTES} 字节会被截断 news title over"
                    f" {NEWS_TITLE_BYTES} bytes is cut by WeCom"
                )
            if utf8_len(message.text) > NEWS_DESCRIPTION_BYTES:
                problems.append(
                    f"图文摘要超过 {NEWS_DESCRIPTION_BYTES} 字节会被截断 news description over"
                    f" {NEWS_DESCRIPTION_BYTES} bytes ({utf8_len(message.text)}) is cut by WeCom"
                )
        return problems

    def url(self, delivery: Delivery) -> str:
        return f"{self.settings.base_url}/cgi-bin/webhook/send?key={delivery.recipient.address}"

    def body(self, delivery: Delivery, part: int) -> dict[str, Any]:
        s = self.settings
        message = delivery.message
        text = message.pieces[part]
        if s.msgtype == "news":
            article = {
                "title": message.title or first_line(message.text, 40),
                "description": message.text,
                "url": s.news_url,
            }
            if s.news_picurl:
                article["picurl"] = s.news_picurl
            return {"msgtype": "news", "news": {"articles": [article]}}
        if s.msgtype == "markdown":
            return {"msgtype": "markdown", "markdown": {"content": text}}
        content: dict[str, Any] = {"content": text}
        if part == 0:  # the group is notified once, with the first part
            if s.mention_mobiles:
                content["mentioned_mobile_list"] = list(s.mention_mobiles)
            if s.mention_all:
                content["mentioned_list"] = ["@all"]
        return {"msgtype": "text", "text": content}

    def codes(self, code: int, message: str) -> Code:
        if code == 45009:
            now = self.context.clock()
            wait = 60.0 - (now.second + now.microsecond / 1e6) + 1.0  # after the minute turns
            return Code(ErrorClass.THROTTLED, "限流 throttled (20 a minute per bot)", wait)
        if code == 93000:
            return Code(ErrorClass.CONFIG, "机器人密钥无效或已移除 invalid key or bot removed")
        if code == 40058:
            return Code(ErrorClass.CONTENT, "内容超长 content too long")
        if code == -1:
            return Code(ErrorClass.TRANSIENT, "系统繁忙 busy")
        return Code(ErrorClass.CONTENT, "未识别的错误码 unrecognised code")
