"""sms-http: a generic HTTP SMS gateway (local and provincial gateways, Kannel, playSMS).

Plugin alias: sms-http. Everything is configuration (channels.md §4): URL and method,
query/form fields or a raw body as sandboxed templates, headers with secrets from the
environment, how many numbers go in one request, and how to read the answer: one
answer for the whole request, one line per number (`OK <id>` / `ERR <code> …`) or a
JSON list of per-number items. HTTP 200 alone is never success: the success rule (a
regex whose `id` group is the message id, or a JSON path and value) must match;
`error_regex` or the JSON code names the failure, classified by `codes`; an answer
matching neither (garbage, an HTML page) leaves the outcome unknown. A 5xx, a read
timeout or a dropped connection after sending leaves it unknown too: never re-sent
blindly, but looked up through `status_url` (by our reference `{key}`, or the message
id `{id}`) and settled by delivery receipts: Kannel-style `dlr-url` callbacks on the
route `/hooks/<channel>/dlr` (authenticated by a token from the environment).

Template variables: `to` (the numbers joined by `separator`), `numbers`, `text` (with
the 【signature】 unless `sign_in_text: false`), `body` (without it), `key` (our
references joined like `to`), `keys`, `secrets` (by name), `params`, `template`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from broadcaster.billing import signed_text
from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    EnvSecret,
    ErrorClass,
    InboundReply,
    InboundRequest,
    InboundRoute,
    Message,
    MessageKind,
    Outcome,
    Result,
    Status,
)
from broadcaster.channels._http import (
    TEMPLATES,
    ErrorCodes,
    SuccessRule,
    before_sending,
    dig,
    fill,
    http_url,
    retry_after,
)
from broadcaster.sms import SMS_QUIET_HOURS, SmsSettings, check_sms_message
from broadcaster.vocab import Addressing

if TYPE_CHECKING:
    import requests
    from jinja2 import Template

__all__ = ["SmsHttpChannel"]

RECEIPT_WINDOW = 3 * 86400.0  # receipts are awaited this long after a send (seconds)


class StatusRule(ChannelSettings):
    """How `status_url`'s answer reads: patterns for delivered, failed, accepted."""

    delivered: str = r"(?i)\bDELIVRD\b|\bDELIVERED\b"
    failed: str = r"(?i)\bUNDELIV\b|\bREJECTD\b|\bFAILED\b|\bEXPIRED\b"
    accepted: str | None = r"(?i)\bACCEPTD\b|\bACCEPTED\b|\bENROUTE\b|\bQUEUED\b"
    id_regex: str | None = r"^\S+\s+(?P<id>\S+)"  # the message id in the answer, if any


class ReceiptSettings(ChannelSettings):
    """Delivery receipts pushed to /hooks/<channel>/dlr (Kannel `dlr-url` style).

    Write the dlr-url in your query template with the token and our reference, e.g.
    `https://office/hooks/sms/dlr?token=...&ref={{ key }}&to=%p&status=%d`.
    """

    token: EnvSecret  # the caller must send it as ?token= (compared in constant time)
    key_param: str = "ref"  # our reference (the `key` variable sent with the message)
    id_param: str = "id"  # or the gateway's message id
    number_param: str = "to"  # the number, with the message id when there is no reference
    status_param: str = "status"
    delivered: list[str] = Field(default_factory=lambda: ["1"])  # Kannel dlr-mask 1
    failed: list[str] = Field(default_factory=lambda: ["2", "16"])  # 2 failed, 16 rejected


class BasicAuth(ChannelSettings):
    """HTTP Basic authentication: the user name, the password from the environment."""

    user: str
    password: EnvSecret


class SmsHttpSettings(SmsSettings):
    url: str
    method: Literal["GET", "POST"] = "POST"
    query: dict[str, str] = Field(default_factory=dict)  # name -> template, in the URL
    form: dict[str, str] = Field(default_factory=dict)  # name -> template, form-encoded body
    body: str | None = None  # or a raw body template (e.g. JSON), with content_type
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = Field(default_factory=dict)  # values may use {secret_name}
    secrets: dict[str, EnvSecret] = Field(default_factory=dict)
    basic_auth: BasicAuth | None = None  # HTTP Basic, for gateways that take it
    batch_size: int = Field(default=1, ge=1, le=1000)  # numbers per request
    separator: str = ","
    number_format: Literal["national", "e164"] = "national"  # 13800000000 or +8613800000000
    sign_in_text: bool = True  # prefix 【sign_name】 to the text (off: the gateway adds it)
    answers: Literal["whole", "lines", "items"] = "whole"
    success: SuccessRule  # regex (group `id`: the message id) or json_path/equals/id_path
    error_regex: str | None = None  # e.g. "^ERR\\s*(?P<code>\\S*)": a failure, code classified
    items_path: str | None = None  # answers: items — where the per-number list is
    number_path: str | None = None  # in each item, the number it answers for
    code_path: str | None = None  # in a JSON failure, where its code is (default json_path)
    codes: ErrorCodes = Field(default_factory=ErrorCodes)
    throttle_seconds: float = Field(default=60.0, gt=0)  # wait after a throttled code
    status_url: str | None = None  # GET; {key} (our reference) or {id} (the message id)
    status: StatusRule = Field(default_factory=StatusRule)
    receipts: ReceiptSettings | None = None
    timeout: tuple[float, float] = (5.0, 30.0)  # connect, read (seconds)

    @field_validator("url", "status_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        return http_url(v)

    @model_validator(mode="after")
    def _consistent(self) -> SmsHttpSettings:
        if self.body is not None and self.form:
            raise ValueError("body 与 form 只能二选一 give either body or form, not both")
        if self.method == "GET" and (self.body is not None or self.form):
            raise ValueError("GET 请求没有正文 a GET has no body: put the fields in query")
        if self.answers == "items" and not self.items_path:
            raise ValueError("answers: items 需要 items_path (where the per-number list is)")
        if self.status_url is not None and not (
            "{key}" in self.status_url or "{id}" in self.status_url
        ):
            raise ValueError(
                "status_url 须包含 {key} 或 {id} status_url must contain {key} or {id}"
            )
        for name, template in self.headers.items():
            for field in re.findall(r"\{(\w+)\}", template):
                if field not in self.secrets:
                    raise ValueError(
                        f"headers.{name}: 未声明的密钥 {{{field}}} names no entry of secrets"
                    )
        for pattern in (self.success.regex, self.error_regex):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"正则表达式无效 invalid regex {pattern!r}: {exc}") from None
        return self


class SmsHttpChannel(BaseChannel):
    """Sends each batch of numbers in one request to a configured HTTP gateway."""

    name = "sms-http"
    Settings = SmsHttpSettings

    def __init__(self, settings: SmsHttpSettings, context: Any) -> None:
        super().__init__(settings, context)
        self._query = {k: TEMPLATES.from_string(v) for k, v in settings.query.items()}
        self._form = {k: TEMPLATES.from_string(v) for k, v in settings.form.items()}
        self._body: Template | None = (
            TEMPLATES.from_string(settings.body) if settings.body is not None else None
        )
        self._success = re.compile(settings.success.regex) if settings.success.regex else None
        self._error = re.compile(settings.error_regex) if settings.error_regex else None

    @property
    def capabilities(self) -> Capabilities:
        s = self.settings
        return Capabilities(
            kinds=frozenset({MessageKind.SMS}),
            addressing=Addressing.CONTACTS,
            batch_size=s.batch_size,
            batch_by_message=True,  # one request carries one text
            concurrency=8,
            quiet_hours=SMS_QUIET_HOURS,
            resend_on_unknown=0,  # SMS: never resend blindly
            reconciles=s.status_url is not None,
            settle_seconds=sum(s.timeout) + 2,
            outcome_window=RECEIPT_WINDOW if (s.receipts or s.status_url) else None,
        )

    # -- what is sent

    def _secrets(self) -> dict[str, str]:
        return {name: (s.value or "").strip() for name, s in self.settings.secrets.items()}

    def _auth(self) -> tuple[str, str] | None:
        auth = self.settings.basic_auth
        return (auth.user, (auth.password.value or "").strip()) if auth is not None else None

    def _number(self, address: str) -> str:
        if self.settings.number_format == "national" and address.startswith("+86"):
            return address[3:]
        return address

    def _variables(self, batch: Sequence[Delivery]) -> dict[str, Any]:
        s = self.settings
        message = batch[0].message
        numbers = [self._number(d.recipient.address) for d in batch]
        keys = [d.key for d in batch]
        text = signed_text(s.sign_name, message.text) if s.sign_in_text else message.text
        return {
            "to": s.separator.join(numbers),
            "numbers": numbers,
            "text": text,
            "body": message.text,
            "key": s.separator.join(keys),
            "keys": keys,
            "secrets": self._secrets(),
            "params": dict(message.params),
            "template": message.template,
        }

    def _request(self, batch: Sequence[Delivery]) -> dict[str, Any]:
        """The arguments of the HTTP request for one batch (rendered once per batch)."""
        values = self._variables(batch)
        secrets = values["secrets"]
        headers = {k: v.format(**secrets) for k, v in self.settings.headers.items()}
        request: dict[str, Any] = {
            "params": {k: t.render(**values) for k, t in self._query.items()} or None,
            "headers": headers,
            "auth": self._auth(),
        }
        if self._form:
            request["data"] = {k: t.render(**values) for k, t in self._form.items()}
        elif self._body is not None:
            request["data"] = self._body.render(**values).encode("utf-8")
            headers.setdefault("Content-Type", self.settings.content_type)
        return request

    def check_message(self, message: Message) -> list[str]:
        import datetime as dt

        from broadcaster.channel import Recipient

        problems = check_sms_message(message, self.settings)
        sample = Delivery(
            "k" * 32,
            "rule@2000-01-01T00:00",
            "rule",
            self.context.instance_id,
            Recipient("t", "+8613800000000", "138****0000"),
            message,
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        )
        try:
            request = self._request([sample])
        except Exception as exc:
            return [*problems, f"请求模板错误 a query/form/body template fails: {exc}"]
        if self._body is not None and "json" in self.settings.content_type:
            try:
                json.loads(request["data"])
            except json.JSONDecodeError as exc:
                problems.append(
                    f"body 模板生成的不是 JSON the body template does not render to JSON: {exc.msg}"
                )
        return problems

    # -- sending

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        import requests

        try:
            arguments = self._request(batch)
        except Exception as exc:
            return [
                Result.fail(d, ErrorClass.CONTENT, f"请求模板错误 template fails: {exc}")
                for d in batch
            ]
        try:
            response = self.context.http.request(
                self.settings.method,
                self.settings.url,
                timeout=self.settings.timeout,
                allow_redirects=False,  # a redirect would turn a POST into a GET
                **arguments,
            )
        except (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
        ) as exc:  # the text may quote a secret: name the class only
            return self._all(
                batch,
                ErrorClass.CONFIG,
                f"请求无效 invalid request ({type(exc).__name__}): check url, headers and secrets",
            )
        except requests.ConnectTimeout as exc:
            return self._all(
                batch, ErrorClass.TRANSIENT, f"连接失败 cannot connect: {type(exc).__name__}"
            )
        except requests.ReadTimeout:
            return self._all(
                batch,
                ErrorClass.UNKNOWN,
                f"等待应答超时 no answer within {self.settings.timeout[1]:g}s; outcome unknown",
            )
        except requests.ConnectionError as exc:
            if before_sending(exc):
                return self._all(batch, ErrorClass.TRANSIENT, "连接被拒绝 connection refused")
            return self._all(
                batch,
                ErrorClass.UNKNOWN,
                "连接中断 connection dropped after sending; outcome unknown",
            )
        except requests.RequestException as exc:
            return self._all(
                batch,
                ErrorClass.UNKNOWN,
                f"应答不完整 incomplete answer ({type(exc).__name__}); outcome unknown",
            )
        return self._judge(batch, response)

    def _all(
        self, batch: Sequence[Delivery], cls: ErrorClass, reason: str, **kw: Any
    ) -> list[Result]:
        return [Result.fail(d, cls, reason, **kw) for d in batch]

    def _judge(self, batch: Sequence[Delivery], response: requests.Response) -> list[Result]:
        status = response.status_code
        raw = response.text[:500]
        if status == 429:
            return self._all(
                batch,
                ErrorClass.THROTTLED,
                "HTTP 429 限流 throttled",
                retry_after=retry_after(response) or self.settings.throttle_seconds,
                raw=raw,
            )
        if status >= 500:
            return self._all(
                batch,
                ErrorClass.UNKNOWN,
                f"HTTP {status} 结果未知 outcome unknown: the gateway may have sent it",
                raw=raw,
            )
        if status in (401, 403):
            return self._all(
                batch, ErrorClass.CONFIG, f"HTTP {status} 认证失败 check the credentials", raw=raw
            )
        if not 200 <= status < 300:
            return self._all(
                batch, ErrorClass.CONTENT, f"HTTP {status} 被拒绝 rejected: {raw[:120]}", raw=raw
            )
        mode = self.settings.answers
        if mode == "whole":
            return [self._one(response.text, d) for d in batch]
        if mode == "lines":
            lines = [ln for ln in response.text.splitlines() if ln.strip()]
            return [
                self._one(lines[i], d) if i < len(lines) else self._missing(d, raw)
                for i, d in enumerate(batch)
            ]
        return self._items(batch, response, raw)

    def _missing(self, d: Delivery, raw: str) -> Result:
        return Result.fail(
            d, ErrorClass.UNKNOWN, "应答缺少此号码 the answer says nothing of this number", raw=raw
        )

    def _items(
        self, batch: Sequence[Delivery], response: requests.Response, raw: str
    ) -> list[Result]:
        s = self.settings
        try:
            items = dig(response.json(), s.items_path or "")
        except (ValueError, KeyError):
            return self._all(
                batch,
                ErrorClass.UNKNOWN,
                f"应答不可读 unreadable answer: {raw[:60]!r}; outcome unknown",
                raw=raw,
            )
        if not isinstance(items, list):
            return self._all(
                batch, ErrorClass.UNKNOWN, "应答不是列表 items are not a list", raw=raw
            )
        by_number: dict[str, Any] = {}
        if s.number_path:
            for item in items:
                try:
                    by_number[re.sub(r"\D", "", str(dig(item, s.number_path)))[-11:]] = item
                except KeyError:
                    continue
        out = []
        for i, d in enumerate(batch):
            if s.number_path:
                item = by_number.get(re.sub(r"\D", "", d.recipient.address)[-11:])
            else:
                item = items[i] if i < len(items) else None
            if item is None:
                out.append(self._missing(d, raw))
            else:
                out.append(self._judge_json(item, d, json.dumps(item, ensure_ascii=False)[:500]))
        return out

    def _one(self, text: str, d: Delivery) -> Result:
        """One answer (the whole body, or one line of it) for one delivery."""
        raw = text[:500]
        rule = self.settings.success
        if rule.json_path is not None:
            try:
                data = json.loads(text)
            except ValueError:
                return Result.fail(
                    d,
                    ErrorClass.UNKNOWN,
                    f"应答不是 JSON answer is not JSON: {raw[:60]!r}",
                    raw=raw,
                )
            return self._judge_json(data, d, raw)
        assert self._success is not None
        found = self._success.search(text)
        if found is not None:
            provider_id = found.groupdict().get("id")
            return Result(d.key, Status.ACCEPTED, provider_id=provider_id, raw=raw)
        failed = self._error.search(text) if self._error is not None else None
        if failed is not None:
            code = failed.groupdict().get("code")
            return self._failure(d, code if code is not None else failed.group(0), text, raw)
        return Result.fail(
            d,
            ErrorClass.UNKNOWN,
            f"应答不可识别 unrecognised answer {raw[:60]!r}; outcome unknown",
            raw=raw,
        )

    def _judge_json(self, data: Any, d: Delivery, raw: str) -> Result:
        rule = self.settings.success
        assert rule.json_path is not None
        try:
            value = dig(data, rule.json_path)
        except KeyError:
            return Result.fail(
                d, ErrorClass.UNKNOWN, f"应答缺少 {rule.json_path}: {raw[:60]!r}", raw=raw
            )
        if value == rule.equals:
            provider_id = None
            if rule.id_path:
                try:
                    provider_id = str(dig(data, rule.id_path))
                except KeyError:
                    provider_id = None
            return Result(d.key, Status.ACCEPTED, provider_id=provider_id, raw=raw)
        code = value
        if self.settings.code_path:
            with contextlib.suppress(KeyError):
                code = dig(data, self.settings.code_path)
        return self._failure(d, code, raw, raw)

    def _failure(self, d: Delivery, code: Any, text: str, raw: str) -> Result:
        cls = self.settings.codes.classify(code)
        after = self.settings.throttle_seconds if cls is ErrorClass.THROTTLED else None
        return Result.fail(
            d, cls, f"网关拒绝 gateway refused {code!r}: {text[:120]}", retry_after=after, raw=raw
        )

    # -- late outcomes

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """Ask `status_url` about each delivery: delivered, failed, accepted, or (asked by our
        reference) not found, which is safe to send again. Silence leaves it pending."""
        import requests

        s = self.settings
        if s.status_url is None:
            return []
        out = []
        by_key = "{key}" in s.status_url
        for d in pending:
            if not by_key and not d.provider_id:
                continue  # no id to ask with: receipts may still settle it
            url = fill(s.status_url, {"key": d.key, "id": d.provider_id or ""})
            try:
                response = self.context.http.get(
                    url,
                    headers={k: v.format(**self._secrets()) for k, v in s.headers.items()},
                    auth=self._auth(),
                    timeout=s.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException:
                continue
            text = response.text[:500]
            if response.status_code == 404 and by_key:
                out.append(
                    Result.fail(
                        d,
                        ErrorClass.TRANSIENT,
                        "网关无此记录 the gateway has no record; safe to send",
                    )
                )
            elif 200 <= response.status_code < 300:
                found = self._status(d, response.text, text)
                if found is not None:
                    out.append(found)
        return out

    def _status(self, d: Delivery, body: str, raw: str) -> Result | None:
        rule = self.settings.status
        provider_id = d.provider_id
        if provider_id is None and rule.id_regex is not None:
            match = re.search(rule.id_regex, body)
            provider_id = match.groupdict().get("id") if match else None
        if re.search(rule.delivered, body):
            return Result(
                d.key,
                Status.DELIVERED,
                provider_id=provider_id,
                raw=raw,
                reason="回执 receipt: delivered",
            )
        if re.search(rule.failed, body):
            return Result.fail(
                d, ErrorClass.RECIPIENT, f"回执 receipt: not delivered ({raw[:60]})", raw=raw
            )
        if rule.accepted is not None and re.search(rule.accepted, body):
            return Result(d.key, Status.ACCEPTED, provider_id=provider_id, raw=raw)
        return None

    def routes(self) -> Sequence[InboundRoute]:
        if self.settings.receipts is None:
            return ()
        return (
            InboundRoute(
                "/dlr",
                self._dlr,
                methods=("GET", "POST"),
                summary="短信送达回执 delivery receipts (Kannel dlr-url style)",
            ),
        )

    def _dlr(self, request: InboundRequest) -> InboundReply:
        """One delivery report: authenticated by the token, matched by our reference, else by
        the message id and the number. Queued / at-SMSC reports carry no outcome."""
        receipts = self.settings.receipts
        assert receipts is not None
        values: dict[str, str] = {k: v[-1] for k, v in request.query.items() if v}
        if request.method == "POST" and request.body:
            from urllib.parse import parse_qs

            form = parse_qs(request.body.decode("utf-8", errors="replace"))
            values.update({k: v[-1] for k, v in form.items() if v})
        expected = (receipts.token.value or "").strip()
        given = values.get("token", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            return InboundReply.json({"error": "forbidden", "错误": "令牌无效"}, status=403)
        report = values.get(receipts.status_param, "")
        key = values.get(receipts.key_param) or None
        provider_id = values.get(receipts.id_param) or None
        number = values.get(receipts.number_param) or None
        if key is None and provider_id is None:
            return InboundReply.json({"error": "no reference or id"}, status=400)
        address = None
        if number:
            digits = re.sub(r"\D", "", number)[-11:]
            address = "+86" + digits if digits.startswith("1") else "+86" + digits.lstrip("0")
        if report in receipts.delivered:
            outcome = Outcome(
                Status.DELIVERED,
                key=key,
                provider_id=provider_id,
                address=address,
                reason="回执 receipt: delivered",
                raw=f"status={report}",
            )
        elif report in receipts.failed:
            outcome = Outcome(
                Status.FAILED,
                key=key,
                provider_id=provider_id,
                address=address,
                error_class=ErrorClass.RECIPIENT,
                reason=f"回执 receipt: not delivered (status {report})",
                raw=f"status={report}",
            )
        else:  # queued, at the SMSC: still on its way
            return InboundReply(200, "OK", "text/plain")
        return InboundReply(200, "OK", "text/plain", outcomes=(outcome,))
