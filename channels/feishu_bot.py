"""feishu-bot: the Feishu / Lark (飞书) custom bot, one bot per group.

Plugin alias: feishu-bot. Docs: https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
`POST {base_url}/open-apis/bot/v2/hook/<TOKEN>`; the token is the target's address. In
the signed mode the address also names the secret, `{key: {env: …}, secret: {env: …}}`,
and the body carries `timestamp` (s) and `sign` = Base64(HMAC-SHA256(key = ts + "\\n"
+ secret, empty message)). Sends `text` or rich text (`post`: a title and one line per
paragraph line). `code` 0 is success; 11232 is throttled (the bot waits 5 seconds,
then the engine's jittered backoff), bad token, sign mismatch, IP and keyword
refusals are permanent. The provider allows 100 messages a minute and 5 a second
per bot: the channel keeps to 4 every 3 seconds (80 a minute).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Literal

from pydantic import Field

from broadcaster.channel import Delivery, ErrorClass, Message, RateLimit

from ._group_bot import BotSettings, Code, GroupBotChannel, first_line, keywords_field

__all__ = ["FeishuBotChannel", "FeishuBotSettings", "feishu_sign"]

BODY_BYTES = 20_000  # the provider refuses a longer body (9499)
PART_BYTES = 18_000  # text per part: room left for the JSON around it


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """The body's `sign` (channels.md §7): the key is ts + "\\n" + secret, the message empty."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


class FeishuBotSettings(BotSettings):
    base_url: str = "https://open.feishu.cn"
    msg_type: Literal["text", "post"] = "post"
    keywords: list[str] = keywords_field()  # keyword mode: every message must hold one
    max_bytes: int | None = Field(default=None, ge=64, le=PART_BYTES)  # text per part


class FeishuBotChannel(GroupBotChannel):
    """Posts each delivery (each part, in order) to the group's Feishu bot."""

    name = "feishu-bot"
    Settings = FeishuBotSettings
    rate_limit = RateLimit(4, 3.0)  # provider: 100 a minute and 5 a second per bot
    code_field = "code"
    legacy_code_field = "StatusCode"  # older answers: {"StatusCode": 0, "StatusMessage": …}
    settings: FeishuBotSettings

    def max_bytes(self, message: Message) -> int | None:
        return self.settings.max_bytes or PART_BYTES

    def url(self, delivery: Delivery) -> str:
        return f"{self.settings.base_url}/open-apis/bot/v2/hook/{delivery.recipient.address}"

    def body(self, delivery: Delivery, part: int) -> dict[str, Any]:
        message = delivery.message
        text = message.pieces[part]
        body: dict[str, Any]
        if self.settings.msg_type == "post":
            lines = [[{"tag": "text", "text": line}] for line in text.split("\n")]
            title = message.title or first_line(message.text)
            body = {
                "msg_type": "post",
                "content": {"post": {"zh_cn": {"title": title, "content": lines}}},
            }
        else:
            body = {"msg_type": "text", "content": {"text": text}}
        secret = delivery.recipient.extra.get("secret")
        if secret:
            ts = int(self.context.clock().timestamp())
            body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
        return body

    def codes(self, code: int, message: str) -> Code:
        if code == 11232:
            return Code(ErrorClass.THROTTLED, "限流 throttled", 5.0)
        if code == 19001:
            return Code(ErrorClass.CONFIG, "机器人令牌无效 invalid webhook token or bot removed")
        if code == 19021:
            return Code(
                ErrorClass.CONFIG, "签名不匹配或时间戳偏差超过1小时 sign mismatch or clock off"
            )
        if code == 19022:
            return Code(ErrorClass.CONFIG, "IP 不在白名单 IP not allowed")
        if code == 19024:
            return Code(ErrorClass.CONTENT, "缺少关键词 keywords not found")
        if code == 9499:
            return Code(ErrorClass.CONTENT, "请求格式错误或超过20KB bad request or body over 20 KB")
        return Code(ErrorClass.CONTENT, "未识别的错误码 unrecognised code")
