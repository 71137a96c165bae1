"""Shared steps of the group-bot channels: `wecom-bot`, `dingtalk-bot`, `feishu-bot`.

Each group has its own bot; its key (and signing secret) is the target's address,
`{env: NAME}` or `{key: {env: …}, secret: {env: …}}`, never YAML. `GroupBotChannel`
does what the three share: capabilities (one delivery a call, the provider's limit per
bot kept below it, parts to one bot in order, at most one resend of an unknown
outcome), the bot's rate-limit key (a hash of its key: it is shown on the console),
splitting a long text into numbered parts by UTF-8 bytes, sending parts in order from
`delivery.first_part` (each further part waits for its own slot, `context.pace`),
reading the JSON answer (HTTP 200 with a non-zero code is a failure), and turning
transport errors into outcomes. A subclass gives the URL, the body and the code table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator

from broadcaster.channel import (
    Addressing,
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    ErrorClass,
    Message,
    MessageKind,
    RateLimit,
    Recipient,
    Result,
    Status,
)
from broadcaster.kit import split_parts

if TYPE_CHECKING:
    import requests

__all__ = ["BotSettings", "Code", "GroupBotChannel", "first_line"]


class BotSettings(ChannelSettings):
    """What every bot channel takes; the bot's key and secret come from each target."""

    base_url: str  # the provider's host; tests aim it at a local fake
    timeout: tuple[float, float] = (5.0, 15.0)  # connect, read (seconds)

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")) or len(v.split("/")) < 3:
            raise ValueError(
                f"地址须以 http:// 或 https:// 开头 expected an http(s) URL; got {v!r}"
            )
        return v.rstrip("/")


def keywords_field() -> Any:
    return Field(default_factory=list, max_length=10)  # the bot's security keywords


@dataclass(frozen=True)
class Code:
    """How one provider code is read: its class, a reason, and for throttling the wait."""

    error_class: ErrorClass
    reason: str
    retry_after: float | None = None
    block: bool = False  # the provider blocks the bot for retry_after (DingTalk)


def first_line(text: str, limit: int = 64) -> str:
    """A title from a text: its first non-empty line without markdown marks."""
    for line in text.splitlines():
        line = line.strip().lstrip("#>*- ").strip()
        if line:
            return line[:limit]
    return text.strip()[:limit]


class GroupBotChannel(BaseChannel):
    """The common part of a group-bot channel; see the module docstring."""

    name: ClassVar[str]
    rate_limit: ClassVar[RateLimit]  # per bot, below the provider's own limit
    code_field: ClassVar[str]  # where the answer's code is: "errcode" or "code"
    legacy_code_field: ClassVar[str | None] = None  # read when code_field is absent

    # -- what a bot channel declares

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            kinds=frozenset({MessageKind.BOT}),
            addressing=Addressing.TARGET,
            requires_address=True,
            secret_address=True,
            batch_size=1,
            rate_limit=self.rate_limit,
            concurrency=64,  # bots answer slowly; thousands of groups go out side by side
            endpoint_concurrency=1,  # one bot's parts leave in order, one at a time
            resend_on_unknown=1,  # no idempotency key: a lost answer is re-sent once at most
            settle_seconds=sum(self.settings.timeout) + 2,
        )

    def endpoint(self, recipient: Recipient) -> str:
        """The bot's rate-limit key: shared by every channel posting to it, key hashed."""
        digest = hashlib.sha256(recipient.address.encode("utf-8")).hexdigest()[:16]
        return f"{self.name}:{self.settings.base_url}#{digest}"

    def max_bytes(self, message: Message) -> int | None:
        """UTF-8 bytes one part may hold; None: the message is never split."""
        raise NotImplementedError

    def url(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def body(self, delivery: Delivery, part: int) -> dict[str, Any]:
        raise NotImplementedError

    def codes(self, code: int, message: str) -> Code:
        """What a non-zero code means (the message helps where one code has several)."""
        raise NotImplementedError

    def keywords(self) -> Sequence[str]:
        return list(getattr(self.settings, "keywords", []) or [])

    # -- checks and parts

    def prepare(self, message: Message, artefacts: Any) -> Message:
        """A text over the limit becomes numbered parts, split at paragraphs, sent in order."""
        limit = self.max_bytes(message)
        if limit is None:
            return message
        return replace(message, parts=split_parts(message.text, limit))

    def check_message(self, message: Message) -> list[str]:
        problems = []
        keywords = self.keywords()
        if keywords:
            pieces = self.prepare(message, None).pieces
            lacking = [i for i, p in enumerate(pieces, 1) if not any(k in p for k in keywords)]
            if lacking:
                where = "" if len(pieces) == 1 else f" (part {', '.join(map(str, lacking))})"
                problems.append(
                    f"缺少关键词 the message lacks every keyword of the bot{where}:"
                    f" expected one of {', '.join(keywords)}"
                )
        return problems

    # -- sending

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        return [self._send_parts(d) for d in batch]

    def _send_parts(self, delivery: Delivery) -> Result:
        """Each part in order from the first one not yet accepted; stop at the first failure."""
        pieces = delivery.message.pieces
        keywords = self.keywords()
        if keywords:
            for i, piece in enumerate(pieces[delivery.first_part :], delivery.first_part):
                if not any(k in piece for k in keywords):
                    return Result.fail(
                        delivery,
                        ErrorClass.CONTENT,
                        f"缺少关键词 part {i + 1} lacks every keyword of the bot; not sent",
                        parts_done=delivery.first_part if len(pieces) > 1 else None,
                    )
        endpoint = self.endpoint(delivery.recipient)
        result = Result.ok(delivery)
        for part in range(delivery.first_part, len(pieces)):
            if part > delivery.first_part and not self.context.pace(endpoint):
                return Result.fail(
                    delivery,
                    ErrorClass.TRANSIENT,
                    "停止中 stopping: the remaining parts wait for the next start",
                    parts_done=part,
                )
            result = self._post(delivery, part)
            if result.status is not Status.ACCEPTED:
                return replace(result, parts_done=part) if len(pieces) > 1 else result
        return replace(result, parts_done=len(pieces)) if len(pieces) > 1 else result

    def _post(self, delivery: Delivery, part: int) -> Result:
        import requests

        try:
            body = json.dumps(self.body(delivery, part), ensure_ascii=False).encode("utf-8")
            url = self.url(delivery)
        except Exception as exc:  # a message this bot cannot carry: nothing was sent
            return Result.fail(delivery, ErrorClass.CONTENT, f"无法生成消息 cannot build it: {exc}")
        try:
            response = self.context.http.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self.settings.timeout,
                allow_redirects=False,
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            # the exception's text would quote the key: name its class only
            return Result.fail(
                delivery, ErrorClass.CONFIG, f"地址无效 invalid URL ({type(exc).__name__})"
            )
        except requests.ConnectTimeout:
            return Result.fail(delivery, ErrorClass.TRANSIENT, "连接超时 connect timeout")
        except requests.ReadTimeout:
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                f"等待应答超时 no answer within {self.settings.timeout[1]:g}s; outcome unknown",
            )
        except requests.ConnectionError as exc:
            if _before_sending(exc):
                return Result.fail(delivery, ErrorClass.TRANSIENT, "无法连接 cannot connect")
            return Result.fail(
                delivery, ErrorClass.UNKNOWN, "连接中断 connection dropped after sending"
            )
        except requests.RequestException as exc:
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                f"应答不完整 incomplete answer ({type(exc).__name__}); outcome unknown",
            )
        return self._judge(delivery, response)

    def _judge(self, delivery: Delivery, response: requests.Response) -> Result:
        status = response.status_code
        raw = response.text[:500]
        if status == 429:
            return Result.fail(
                delivery,
                ErrorClass.THROTTLED,
                "HTTP 429 限流 throttled",
                retry_after=_retry_after(response.headers) or 60.0,
                raw=raw,
            )
        if status >= 500:
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                f"HTTP {status} 结果未知 outcome unknown: the bot may have posted it",
                raw=raw,
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        code = None
        if isinstance(data, dict):
            code = data.get(self.code_field)
            if code is None and self.legacy_code_field:
                code = data.get(self.legacy_code_field)
        if not isinstance(code, int) or isinstance(code, bool):
            if status in (401, 403, 404):
                return Result.fail(
                    delivery, ErrorClass.CONFIG, f"HTTP {status} 配置错误 check the bot key"
                )
            if 200 <= status < 300:
                return Result.fail(
                    delivery,
                    ErrorClass.UNKNOWN,
                    f"应答无法识别 unreadable answer: {raw[:60]!r}; outcome unknown",
                    raw=raw,
                )
            return Result.fail(delivery, ErrorClass.CONTENT, f"HTTP {status}: {raw[:120]}")
        if code == 0 and 200 <= status < 300:
            return Result(delivery.key, Status.ACCEPTED, raw=raw)
        message = str(data.get("errmsg") or data.get("msg") or "") if isinstance(data, dict) else ""
        known = self.codes(code, message)
        return Result.fail(
            delivery,
            known.error_class,
            f"{self.code_field}={code} {known.reason}: {message[:120]}",
            retry_after=known.retry_after,
            block=known.block,
            raw=raw,
        )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After") or ""))
    except ValueError:
        return None


def _before_sending(exc: Exception) -> bool:
    """Whether a connection error happened before any byte of the request left."""
    text = repr(exc)
    return any(
        s in text
        for s in (
            "NewConnectionError",
            "Connection refused",
            "NameResolutionError",
            "ConnectTimeout",
        )
    )
