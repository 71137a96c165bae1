"""aliyun-sms: Aliyun SMS (Dysms 2017-05-25) with an approved signature and template.

Plugin alias: aliyun-sms. Docs: https://help.aliyun.com/document_detail/419273.html
(SendSms), /419274.html (SendBatchSms), /419277.html (QuerySendDetails). Sends the
approved `template_code` under `sign_name` with `TemplateParam` mapped from the
message's parameters (`template_params`: template variable -> message parameter),
to up to `batch_size` numbers per call (`SendSms`, one BizId per call; or
`SendBatchSms`, 100 per call). Signature V1 (HMAC-SHA1), `channels/aliyun_rpc.py`.

Success is read from the body (`Code == "OK"`); any other code is a failure, classed
per channels.md §2. A call refused for one number (a bad number, an opted-out one, a
per-number cap) is split in halves until that number is found: the others go on, the
capped number alone is deferred until its window ends. A read timeout, a 5xx or a
damaged answer leaves the outcome unknown: `reconcile()` looks the number up with
`QuerySendDetails` (by BizId when known, else by the call's OutId) and it is sent
again only when the provider has no record of it. Receipts come from the same query
(accepted -> delivered or failed) and from the SmsReport push (`routes()`:
/hooks/<channel>/receipts, a shared `receipt_token` in the URL query).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from broadcaster.billing import billed, signed_text
from broadcaster.channel import (
    BaseChannel,
    Capabilities,
    ChannelContext,
    ChannelSettings,
    Delivery,
    EnvSecret,
    ErrorClass,
    InboundReply,
    InboundRequest,
    InboundRoute,
    Message,
    Outcome,
    Recipient,
    Result,
    Status,
)
from broadcaster.channels.aliyun_rpc import (
    PER_NUMBER_CODES,
    AliyunAnswer,
    AliyunClient,
    classify,
)
from broadcaster.sms import cloud_sms_capabilities

__all__ = ["AliyunSmsChannel", "mainland_mobile", "out_id", "params_problems", "template_values"]

MOBILE_FORMS = re.compile(r"(?:\+86|0086|86)?(1[3-9]\d{9})")
URL = re.compile(r"(https?://|www\.|\.(com|cn|net|org)\b)", re.IGNORECASE)
CN = dt.timezone(dt.timedelta(hours=8))
MAX_SIGNED = 500  # Aliyun's cap on signature + text


def mainland_mobile(address: str) -> str | None:
    """13800000001 from +8613800000001, 008613800000001 or 13800000001; None otherwise."""
    m = MOBILE_FORMS.fullmatch(address) or MOBILE_FORMS.fullmatch(re.sub(r"[\s-]", "", address))
    return m.group(1) if m else None


def e164(phone: str) -> str:
    """The address form deliveries carry, for matching receipts (+86…)."""
    local = mainland_mobile(phone)
    return f"+86{local}" if local else phone


def out_id(delivery: Delivery) -> str:
    """The OutId of a call: one per (campaign, occurrence, channel), shared by its numbers;
    with the number it names one delivery."""
    return _out_id(delivery.campaign, delivery.occurrence_id, delivery.channel_id)


@functools.lru_cache(maxsize=1024)
def _out_id(campaign: str, occurrence: str, channel: str) -> str:
    blob = f"{campaign}|{occurrence}|{channel}"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def template_values(mapping: dict[str, str], message: Message) -> dict[str, str]:
    """Template variable -> value from the message's parameters (KeyError names the missing)."""
    return {var: str(message.params[param]) for var, param in mapping.items()}


def params_problems(mapping: dict[str, str], message: Message, max_len: int) -> list[str]:
    problems = []
    for var, param in mapping.items():
        if param not in message.params:
            have = ", ".join(sorted(message.params)) or "none"
            problems.append(
                f"模板变量 ${{{var}}} 需要消息参数 '{param}' template variable {var} needs"
                f" message parameter '{param}'; the template gives: {have}"
            )
            continue
        value = str(message.params[param])
        if len(value) > max_len:
            problems.append(f"变量过长 variable {var} = {len(value)} characters, over {max_len}")
        if URL.search(value):
            problems.append(
                f"变量不能含链接 variable {var} contains a link: refused by the provider"
            )
    return problems


class AliyunSmsSettings(ChannelSettings):
    access_key_id: EnvSecret
    access_key_secret: EnvSecret
    sign_name: str = Field(min_length=2, max_length=12)  # approved signature, without 【】
    template_code: str = Field(pattern=r"^SMS_\d+$")  # approved template, e.g. SMS_71390007
    template_params: dict[str, str] = Field(default_factory=dict)  # ${var} -> message param
    api: Literal["SendSms", "SendBatchSms"] = "SendSms"
    batch_size: int = Field(default=500, ge=1, le=1000)  # numbers per call (SendBatchSms: ≤100)
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    region: str = "cn-hangzhou"
    calls_per_second: float = Field(default=50.0, gt=0)  # sends and receipt queries together
    query_batch: int = Field(default=20, ge=1, le=200)  # QuerySendDetails per reconcile() call
    receipt_hours: float = Field(default=72.0, gt=0)  # how long receipts are awaited
    receipt_poll_seconds: float = Field(default=1800.0, gt=0)  # a query per number: pushes first
    receipt_token: EnvSecret | None = None  # the push URL carries ?token=<this>
    max_billed: int = Field(default=3, ge=1, le=8)  # billed messages a text may cost
    settle_seconds: float = Field(default=60.0, gt=0)  # before an unknown send is looked up
    timeout: tuple[float, float] = (5.0, 15.0)

    @model_validator(mode="after")
    def _batch(self) -> AliyunSmsSettings:
        if self.api == "SendBatchSms" and self.batch_size > 100:
            raise ValueError(
                "SendBatchSms 每次最多 100 个号码 takes at most 100 numbers: batch_size ≤ 100"
            )
        return self


class AliyunSmsChannel(BaseChannel):
    """SendSms / SendBatchSms, receipts by QuerySendDetails and the SmsReport push."""

    name = "aliyun-sms"
    Settings = AliyunSmsSettings

    def __init__(self, settings: AliyunSmsSettings, context: ChannelContext) -> None:
        super().__init__(settings, context)
        self.client = AliyunClient(
            context.http,
            settings.endpoint,
            settings.access_key_id.value or "",
            settings.access_key_secret.get,
            "2017-05-25",
            context.clock,
            settings.region,
            settings.timeout,
        )

    @property
    def capabilities(self) -> Capabilities:
        return cloud_sms_capabilities(self.settings)

    def endpoint(self, recipient: Recipient) -> str:
        return f"{self.settings.endpoint}#{self.settings.access_key_id.env}"

    # -- validate

    def check_message(self, message: Message) -> list[str]:
        s = self.settings
        problems = params_problems(s.template_params, message, 35)
        signed = signed_text(s.sign_name, message.text)
        bill = billed(signed)
        if bill.length > MAX_SIGNED:
            problems.append(
                f"短信过长 {bill.length} characters with the signature, over Aliyun's {MAX_SIGNED}"
            )
        elif bill.parts > s.max_billed:
            problems.append(f"计费条数超限 {bill.describe()}, over max_billed {s.max_billed}")
        if any(ord(c) > 0xFFFF for c in message.text):
            problems.append("短信不能含表情符号 emoji are refused in SMS")
        return problems

    # -- send

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        results: dict[str, Result] = {}
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for d in batch:
            phone = mainland_mobile(d.recipient.address)
            if phone is None:
                results[d.key] = Result.fail(
                    d,
                    ErrorClass.RECIPIENT,
                    f"不是大陆手机号 not a mainland mobile: {d.recipient.display}",
                )
                continue
            try:
                template_values(self.settings.template_params, d.message)
            except KeyError as exc:
                results[d.key] = Result.fail(
                    d, ErrorClass.CONTENT, f"缺少模板参数 missing template parameter {exc}"
                )
                continue
            groups[out_id(d)].append(d)
        for items in groups.values():
            for r in self._send_group(items):
                results[r.key] = r
        return [results[d.key] for d in batch]

    def _send_group(self, items: list[Delivery]) -> list[Result]:
        """One call for these numbers; a refusal naming one number splits the group."""
        answer, failure = self._call_send(items)
        if failure is not None:
            return [Result.fail(d, failure[0], failure[1]) for d in items]
        assert answer is not None
        if answer.ok:
            biz = str((answer.body or {}).get("BizId", ""))
            return [Result.ok(d, biz, raw=answer.text) for d in items]
        cls, wait, reason = classify(answer, self.context.clock())
        if answer.code in PER_NUMBER_CODES and len(items) > 1:
            half = len(items) // 2
            return self._send_group(items[:half]) + self._send_group(items[half:])
        per_number = answer.code == "isv.BUSINESS_LIMIT_CONTROL"
        return [
            Result.fail(d, cls, reason, retry_after=wait, raw=answer.text, per_recipient=per_number)
            for d in items
        ]

    def _params(self, items: list[Delivery]) -> dict[str, str]:
        s = self.settings
        phones = [mainland_mobile(d.recipient.address) or "" for d in items]
        values = template_values(s.template_params, items[0].message)
        text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
        if s.api == "SendSms":
            return {
                "PhoneNumbers": ",".join(phones),
                "SignName": s.sign_name,
                "TemplateCode": s.template_code,
                "TemplateParam": text,
                "OutId": out_id(items[0]),
            }
        return {
            "PhoneNumberJson": json.dumps(phones),
            "SignNameJson": json.dumps([s.sign_name] * len(phones), ensure_ascii=False),
            "TemplateCode": s.template_code,
            "TemplateParamJson": json.dumps([values] * len(phones), ensure_ascii=False),
            "OutId": out_id(items[0]),
        }

    def _call_send(
        self, items: list[Delivery]
    ) -> tuple[AliyunAnswer | None, tuple[ErrorClass, str] | None]:
        """The answer, or (class, reason) when there is none; a refused nonce or timestamp
        is tried once more with a new one (nothing was sent)."""
        import requests

        for attempt in (1, 2):
            try:
                answer = self.client.call(self.settings.api, self._params(items))
            except requests.ConnectTimeout:
                return None, (ErrorClass.TRANSIENT, "连接超时 connect timeout: nothing sent")
            except requests.ReadTimeout:
                return None, (
                    ErrorClass.UNKNOWN,
                    f"等待应答超时 no answer within {self.settings.timeout[1]:g}s; 结果未知"
                    " outcome unknown, reconciled by QuerySendDetails",
                )
            except requests.ConnectionError as exc:
                if _before_sending(exc):
                    return None, (
                        ErrorClass.TRANSIENT,
                        "连接被拒绝 connection refused: nothing sent",
                    )
                return None, (ErrorClass.UNKNOWN, "连接中断 connection dropped; outcome unknown")
            except requests.RequestException as exc:
                return None, (
                    ErrorClass.UNKNOWN,
                    f"应答不完整 incomplete answer ({type(exc).__name__}); outcome unknown",
                )
            if attempt == 1 and answer.code in ("SignatureNonceUsed", "InvalidTimeStamp.Expired"):
                continue
            return answer, None
        return answer, None

    # -- receipts and reconciling

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """QuerySendDetails per number: by BizId when the send was answered, else by OutId.

        Delivered (SendStatus 3) and failed (2) are final; waiting (1) is accepted; an
        unknown send with no record on either day it may have gone is safe to send again.
        """
        out = []
        for d in pending[: self.settings.query_batch]:
            found = self._lookup(d)
            if found is not None:
                out.append(found)
        return out

    def _lookup(self, d: Delivery) -> Result | None:
        import requests

        phone = mainland_mobile(d.recipient.address)
        if phone is None:
            return None
        today = self.context.clock().astimezone(CN).strftime("%Y%m%d")
        planned = d.scheduled_at.astimezone(CN).strftime("%Y%m%d")
        days = [today] if planned == today else [today, planned]  # a recent attempt: today first
        wanted = out_id(d)
        for day in days:
            params = {"PhoneNumber": phone, "SendDate": day, "PageSize": "50", "CurrentPage": "1"}
            if d.provider_id:
                params["BizId"] = d.provider_id
            try:
                answer = self.client.call("QuerySendDetails", params)
            except requests.RequestException:
                return None  # still unknown: asked again later
            if not answer.ok:
                return None
            dtos = ((answer.body or {}).get("SmsSendDetailDTOs") or {}).get(
                "SmsSendDetailDTO"
            ) or []
            for item in dtos:
                if not d.provider_id and item.get("OutId") != wanted:
                    continue
                return self._receipt(d, item)
        if d.provider_id:
            return None  # answered accepted, no receipt yet
        return Result.fail(
            d, ErrorClass.TRANSIENT, "服务商无此记录 the provider has no record: safe to send again"
        )

    @staticmethod
    def _receipt(d: Delivery, item: dict[str, Any]) -> Result:
        raw = json.dumps({k: item.get(k) for k in ("SendStatus", "ErrCode", "ReceiveDate")})
        status = int(item.get("SendStatus", 1))
        if status == 3:
            return Result(d.key, Status.DELIVERED, reason="回执 receipt: DELIVERED", raw=raw)
        if status == 2:
            return Result.fail(
                d, ErrorClass.RECIPIENT, f"未送达 not delivered: {item.get('ErrCode')}", raw=raw
            )
        return Result(d.key, Status.ACCEPTED, reason="等待回执 waiting for the receipt", raw=raw)

    def routes(self) -> Sequence[InboundRoute]:
        return (
            InboundRoute(
                "/receipts", self._receipts, summary="阿里云短信回执 Aliyun SmsReport push"
            ),
        )

    def _receipts(self, request: InboundRequest) -> InboundReply:
        """SmsReport: a JSON array; duplicates are harmless (the log matches them once)."""
        token = self.settings.receipt_token
        if token is not None:
            given = (request.query.get("token") or [""])[0]
            if token.value is None or not hmac.compare_digest(given, token.value):
                return InboundReply.json({"code": 1, "msg": "unauthorised"}, status=401)
        try:
            items = request.json()
        except (ValueError, UnicodeDecodeError):
            return InboundReply.json({"code": 1, "msg": "expected a JSON array"}, status=400)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return InboundReply.json({"code": 1, "msg": "expected a JSON array"}, status=400)
        outcomes = []
        for item in items:
            phone, biz = item.get("phone_number"), item.get("biz_id")
            if not isinstance(phone, str) or not isinstance(biz, str):
                return InboundReply.json({"code": 1, "msg": "phone_number, biz_id"}, status=400)
            ok = item.get("success") is True
            at = _report_time(item.get("report_time"))
            raw = json.dumps(
                {k: item.get(k) for k in ("success", "err_code", "sms_size", "report_time")},
                ensure_ascii=False,
            )
            outcomes.append(
                Outcome(
                    Status.DELIVERED if ok else Status.FAILED,
                    provider_id=biz,
                    address=e164(phone),
                    at=at,
                    error_class=None if ok else ErrorClass.RECIPIENT,
                    reason=f"回执 receipt: {item.get('err_code')}",
                    raw=raw,
                )
            )
        return InboundReply.json({"code": 0, "msg": "接收成功"}, outcomes=outcomes)


def _report_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CN)
    except ValueError:
        return None


def _before_sending(exc: Exception) -> bool:
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
