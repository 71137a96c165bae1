"""webhook: a JSON POST to any HTTP endpoint, success read from the response body.

Plugin alias: webhook. For in-house gateways, relay services and group bots without
a dedicated plugin. The body is a sandboxed Jinja template that must render to JSON;
success needs a 2xx status *and* the body rule (`success.json_path` equal to
`success.equals`, or `success.regex` matching the text), because most providers
answer HTTP 200 with an error code inside; other codes at `json_path` are classified
by `codes` (throttled, retryable, recipient, optout, config; content otherwise). The
idempotency key travels in a header; only a receiver declared to drop repeats
(`receiver_deduplicates: true`) has a 5xx retried: for any other a 5xx after the
request was sent leaves the outcome unknown. A `status_url` lets the engine ask
whether a send whose answer was lost arrived, instead of sending again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    EnvSecret,
    ErrorClass,
    Message,
    MessageKind,
    Recipient,
    Result,
    Status,
)
from broadcaster.channels._http import (
    PLACEHOLDER,
    TEMPLATES,
    ErrorCodes,
    SuccessRule,
    before_sending,
    dig,
    fill,
    http_url,
    retry_after,
)

if TYPE_CHECKING:
    import requests

__all__ = ["WebhookChannel"]

DEFAULT_BODY = (
    '{"id": {{ key|tojson }}, "kind": {{ kind|tojson }}, "to": {{ recipient|tojson }}, '
    '"title": {{ title|tojson }}, "text": {{ text|tojson }}}'
)


class WebhookSettings(ChannelSettings):
    url: str  # may contain {address}: the target's address on this channel (e.g. a bot key)
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)  # values may use {secret_name}
    secrets: dict[str, EnvSecret] = Field(default_factory=dict)
    body: str = DEFAULT_BODY
    success: SuccessRule
    codes: ErrorCodes = Field(default_factory=ErrorCodes)
    throttle_seconds: float = Field(default=60.0, gt=0)  # wait after a throttled code
    idempotency_header: str | None = "Idempotency-Key"
    receiver_deduplicates: bool = False  # the receiver drops a repeated Idempotency-Key
    max_bytes: int | None = Field(default=None, ge=64)  # longer texts go as numbered parts
    status_url: str | None = None  # GET {key} -> the same success rule means it arrived; 404 not
    timeout: tuple[float, float] = (5.0, 30.0)  # connect, read (seconds)

    @field_validator("url", "status_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        return http_url(v)

    @model_validator(mode="after")
    def _placeholders(self) -> WebhookSettings:
        if self.status_url is not None and "{key}" not in self.status_url:
            raise ValueError("status_url 须包含 {key} status_url must contain {key}")
        for name, template in self.headers.items():
            for field in PLACEHOLDER.findall(template):
                if field not in self.secrets:
                    raise ValueError(
                        f"headers.{name}: 未声明的密钥 {{{field}}} names no entry of secrets"
                    )
        for field in PLACEHOLDER.findall(self.url):
            if field != "address" and field not in self.secrets:
                raise ValueError(
                    f"url: 未知的占位符 {{{field}}}: expected {{address}} or a name under secrets"
                )
        return self


_env = TEMPLATES


class WebhookChannel(BaseChannel):
    """POSTs one JSON body per delivery."""

    name = "webhook"
    Settings = WebhookSettings

    def __init__(self, settings: WebhookSettings, context: Any) -> None:
        super().__init__(settings, context)
        self._body = _env.from_string(settings.body)
        self._header_values: dict[str, str] | None = None

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            kinds=frozenset(MessageKind),
            requires_address="{address}" in self.settings.url,
            batch_size=1,
            concurrency=16,  # the instance's `concurrency:` and `rate_limit:` override these
            settle_seconds=sum(self.settings.timeout) + 2,  # a request cut off may still land
            reconciles=self.settings.status_url is not None,
        )

    # -- helpers

    def _headers(self) -> dict[str, str]:
        """The request headers, secrets filled in (made once: settings never change)."""
        if self._header_values is None:
            secrets = self._secret_values()
            headers = {"Content-Type": "application/json; charset=utf-8"}
            headers.update({k: v.format(**secrets) for k, v in self.settings.headers.items()})
            self._header_values = headers
        return dict(self._header_values)

    def _secret_values(self) -> dict[str, str]:
        return {name: (s.value or "").strip() for name, s in self.settings.secrets.items()}

    def _url(self, delivery: Delivery) -> str:
        values = {**self._secret_values(), "address": delivery.recipient.address}
        return fill(self.settings.url, values)

    def endpoint(self, recipient: Recipient) -> str:
        """The URL with the address filled in and secrets left as placeholders (it is logged)."""
        return fill(self.settings.url, {"address": recipient.address})

    def prepare(self, message: Message, artefacts: Any) -> Message:
        """Split a text longer than `max_bytes` into numbered parts, sent in order."""
        if self.settings.max_bytes is None:
            return message
        from dataclasses import replace

        from broadcaster.kit import split_parts

        return replace(message, parts=split_parts(message.text, self.settings.max_bytes))

    def render_body(self, delivery: Delivery, part: int = 0) -> str:
        m = delivery.message
        return self._body.render(
            key=delivery.key if not m.parts else f"{delivery.key}#{part + 1}",
            kind=m.kind.value,
            recipient=delivery.recipient.address,
            recipient_display=delivery.recipient.display,
            target=delivery.recipient.target_id,
            title=m.title,
            text=m.pieces[part],
            part=part + 1,
            parts=len(m.pieces),
            params=dict(m.params),
            template=m.template,
            occurrence=delivery.occurrence_id,
            rule=delivery.rule_id,
            channel=delivery.channel_id,
            scheduled_at=delivery.scheduled_at.isoformat(),
        )

    def check_message(self, message: Message) -> list[str]:
        import datetime as dt

        sample = Delivery(
            "k" * 32,
            "rule@2000-01-01T00:00",
            "rule",
            self.context.instance_id,
            Recipient("t", "address", "display"),
            message,
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        )
        try:
            json.loads(self.render_body(sample))
        except json.JSONDecodeError as exc:
            return [
                f"body 模板生成的不是 JSON the body template does not render to JSON: {exc.msg}"
            ]
        except Exception as exc:
            return [f"body 模板错误 the body template fails: {exc}"]
        return []

    def _judge(self, delivery: Delivery, response: requests.Response) -> Result:
        status = response.status_code
        raw = response.text[:500]
        if status == 429:
            return Result.fail(
                delivery,
                ErrorClass.THROTTLED,
                "HTTP 429 限流 throttled",
                retry_after=retry_after(response),
                raw=raw,
            )
        if status >= 500:
            if self.settings.receiver_deduplicates and self.settings.idempotency_header:
                return Result.fail(
                    delivery,
                    ErrorClass.TRANSIENT,
                    f"HTTP {status} 服务端错误 server error",
                    raw=raw,
                )
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                f"HTTP {status} 结果未知 outcome unknown: the receiver may have acted",
                raw=raw,
            )
        if status in (401, 403, 404):
            return Result.fail(
                delivery, ErrorClass.CONFIG, f"HTTP {status} 配置错误 check url and credentials"
            )
        if not 200 <= status < 300:
            return Result.fail(
                delivery,
                ErrorClass.CONTENT,
                f"HTTP {status} 被拒绝 rejected: {response.text[:120]}",
            )
        rule = self.settings.success
        text = response.text
        provider_id = None
        if rule.json_path or rule.id_path:
            try:
                body = response.json()
            except ValueError:
                return Result.fail(
                    delivery,
                    ErrorClass.UNKNOWN,
                    f"应答不是 JSON response is not JSON: {text[:60]!r}",
                )
            if rule.id_path:
                try:
                    provider_id = str(dig(body, rule.id_path))
                except KeyError:
                    provider_id = None
            if rule.json_path:
                try:
                    value = dig(body, rule.json_path)
                except KeyError:
                    return Result.fail(
                        delivery,
                        ErrorClass.UNKNOWN,
                        f"应答缺少 {rule.json_path} response lacks {rule.json_path}: {text[:80]!r}",
                    )
                if value != rule.equals:
                    cls = self.settings.codes.classify(value)
                    after = self.settings.throttle_seconds if cls is ErrorClass.THROTTLED else None
                    return Result.fail(
                        delivery,
                        cls,
                        f"{rule.json_path}={value!r}: {text[:120]}",
                        retry_after=after,
                        raw=raw,
                    )
        if rule.regex and not re.search(rule.regex, text):
            return Result.fail(
                delivery,
                ErrorClass.CONTENT,
                f"应答不符 response does not match {rule.regex!r}: {text[:80]!r}",
            )
        return Result(delivery.key, Status.ACCEPTED, provider_id=provider_id, raw=raw)

    # -- contract

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        return [self._send_parts(d) for d in batch]

    def _send_parts(self, delivery: Delivery) -> Result:
        """Each part in order from the first one not yet accepted; stop at the first failure."""
        pieces = len(delivery.message.pieces)
        result = Result.ok(delivery)
        for part in range(delivery.first_part, pieces):
            result = self._send_one(delivery, part)
            if result.status is not Status.ACCEPTED:
                return replace_result(result, parts_done=part) if pieces > 1 else result
        return replace_result(result, parts_done=pieces) if pieces > 1 else result

    def _send_one(self, delivery: Delivery, part: int = 0) -> Result:
        import requests

        headers = self._headers()
        if self.settings.idempotency_header:
            key = (
                delivery.key if len(delivery.message.pieces) == 1 else f"{delivery.key}#{part + 1}"
            )
            headers[self.settings.idempotency_header] = key
        try:
            body = self.render_body(delivery, part).encode("utf-8")
        except Exception as exc:
            return Result.fail(
                delivery, ErrorClass.CONTENT, f"body 模板错误 body template fails: {exc}"
            )
        try:
            response = self.context.http.request(
                self.settings.method,
                self._url(delivery),
                data=body,
                headers=headers,
                timeout=self.settings.timeout,
                allow_redirects=False,  # a redirect would turn the POST into a GET
            )
        except (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
        ) as exc:
            # the exception's text may quote a secret: name its class only
            return Result.fail(
                delivery,
                ErrorClass.CONFIG,
                f"请求无效 invalid request ({type(exc).__name__}): check url, headers and secrets",
            )
        except requests.ConnectTimeout as exc:
            return Result.fail(
                delivery, ErrorClass.TRANSIENT, f"连接失败 cannot connect: {type(exc).__name__}"
            )
        except requests.ReadTimeout:
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                f"等待应答超时 no answer within {self.settings.timeout[1]:g}s; outcome unknown",
            )
        except requests.ConnectionError as exc:
            if before_sending(exc):
                return Result.fail(delivery, ErrorClass.TRANSIENT, "连接被拒绝 connection refused")
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                "连接中断 connection dropped after sending; outcome unknown",
            )
        except requests.RequestException as exc:  # e.g. an answer cut off mid-body
            return Result.fail(
                delivery,
                ErrorClass.UNKNOWN,
                f"应答不完整 incomplete answer ({type(exc).__name__}); outcome unknown",
            )
        return self._judge(delivery, response)

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """Ask `status_url` about each key (each part's key, for a split message): arrived is
        accepted, 404 is safe to send again from the first part missing. The engine asks
        only after the settle time, when a request cut off has had time to land."""
        if not self.settings.status_url:
            return []
        out = []
        for d in pending:
            pieces = len(d.message.pieces)
            found: Result | None = None
            for part in range(d.first_part, pieces):
                key = d.key if pieces == 1 else f"{d.key}#{part + 1}"
                answer = self._lookup(d, key)
                if answer is None or answer.status is not Status.ACCEPTED:
                    found = answer
                    if answer is not None and pieces > 1:
                        found = replace_result(answer, parts_done=part)
                    break
                found = replace_result(answer, parts_done=part + 1) if pieces > 1 else answer
            if found is not None:
                out.append(found)
        return out

    def _lookup(self, d: Delivery, key: str) -> Result | None:
        """What `status_url` says of one key; None when it cannot tell now."""
        import requests

        assert self.settings.status_url is not None
        url = self.settings.status_url.replace("{key}", key)
        try:
            response = self.context.http.get(
                url, headers=self._headers(), timeout=self.settings.timeout, allow_redirects=False
            )
        except requests.RequestException:
            return None  # still unknown; asked again next time
        if response.status_code in (401, 403):
            return Result(
                d.key,
                Status.UNKNOWN,
                ErrorClass.CONFIG,
                f"HTTP {response.status_code} 对账被拒绝 status_url refused our credentials",
            )
        if response.status_code == 404:
            return Result.fail(
                d, ErrorClass.TRANSIENT, "对方无记录 receiver has no record; safe to send again"
            )
        if 200 <= response.status_code < 300:
            judged = self._judge(d, response)
            if judged.status is Status.ACCEPTED:
                return judged
        return None


def replace_result(result: Result, **changes: Any) -> Result:
    from dataclasses import replace

    return replace(result, **changes)
