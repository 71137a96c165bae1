"""tencent-sms: Tencent Cloud SMS (API 3.0, 2021-01-11) with an approved signature and template.

Plugin alias: tencent-sms. Docs: https://cloud.tencent.com/document/api/382/55981
(SendSms), /382/59171 (PullSmsSendStatus), /382/59172 (PullSmsSendStatusByPhoneNumber),
/382/52077 (status callback). Sends `template_id` under `sign_name` with
`TemplateParamSet` taken in order from the message's parameters (`template_params`),
to up to 200 numbers per call, signed TC3-HMAC-SHA256 (`channels/tencent_tc3.py`).

Each number's status is read from `SendStatusSet` (`Code == "Ok"`, `SerialNo` kept as
provider id): partial success is normal, and only numbers refused retryably are tried
again. A whole-call `Response.Error` is classed like a per-number code. A read timeout,
a 5xx or a damaged answer leaves the outcome unknown; `reconcile()` reads the number's
statuses with `PullSmsSendStatusByPhoneNumber` (up to 7 days back) and never sends
again blindly. Receipts come from `pull_outcomes()` (`PullSmsSendStatus`: each status
is handed out once, so the engine writes a page before it pulls the next), from the
same per-number query and from the callback route (/hooks/<channel>/receipts).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import Field

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
    OutcomePage,
    Recipient,
    Result,
    Status,
)
from broadcaster.channels.aliyun_sms import URL, mainland_mobile, out_id
from broadcaster.channels.tencent_tc3 import TencentAnswer, TencentClient, classify
from broadcaster.sms import cloud_sms_capabilities

__all__ = ["TencentSmsChannel", "session_context"]

CN = dt.timezone(dt.timedelta(hours=8))
WEEK = 7 * 86400


def session_context(delivery: Delivery) -> str:
    """The SessionContext of a call: one per (campaign, occurrence, channel), echoed back."""
    return out_id(delivery)


def plus86(address: str) -> str | None:
    local = mainland_mobile(address)
    return f"+86{local}" if local else None


class TencentSmsSettings(ChannelSettings):
    secret_id: EnvSecret
    secret_key: EnvSecret
    sdk_app_id: str = Field(pattern=r"^\d{6,12}$")  # SmsSdkAppId, e.g. 1400006666
    sign_name: str = Field(min_length=2, max_length=12)  # approved signature, without 【】
    template_id: str = Field(pattern=r"^\d+$")  # approved template
    template_params: list[str] = Field(default_factory=list)  # message params for {1}, {2}, …
    param_max_length: int = Field(default=12, ge=1, le=35)  # 12 for individually verified accounts
    batch_size: int = Field(default=200, ge=1, le=200)
    endpoint: str = "https://sms.tencentcloudapi.com/"
    region: str = "ap-guangzhou"
    calls_per_second: float = Field(default=20.0, gt=0)  # the per-number query allows 20/s
    query_batch: int = Field(default=10, ge=1, le=100)  # per-number queries per reconcile()
    pull_limit: int = Field(default=100, ge=1, le=100)
    receipt_hours: float = Field(default=72.0, gt=0)
    receipt_poll_seconds: float = Field(default=1800.0, gt=0)  # a query per number: pushes first
    receipt_token: EnvSecret | None = None  # the callback URL carries ?token=<this>
    max_billed: int = Field(default=3, ge=1, le=8)
    settle_seconds: float = Field(default=60.0, gt=0)  # before an unknown send is looked up
    timeout: tuple[float, float] = (5.0, 15.0)


class TencentSmsChannel(BaseChannel):
    """SendSms with per-number statuses; receipts pulled, queried per number and pushed."""

    name = "tencent-sms"
    Settings = TencentSmsSettings

    def __init__(self, settings: TencentSmsSettings, context: ChannelContext) -> None:
        super().__init__(settings, context)
        self.client = TencentClient(
            context.http,
            settings.endpoint,
            "sms",
            "2021-01-11",
            settings.secret_id.value or "",
            settings.secret_key.get,
            context.clock,
            settings.region,
            settings.timeout,
        )

    @property
    def capabilities(self) -> Capabilities:
        return cloud_sms_capabilities(self.settings)

    def endpoint(self, recipient: Recipient) -> str:
        return f"{self.settings.endpoint}#{self.settings.sdk_app_id}"

    def _values(self, message: Message) -> list[str]:
        return [str(message.params[p]) for p in self.settings.template_params]

    # -- validate

    def check_message(self, message: Message) -> list[str]:
        s = self.settings
        problems = []
        for i, param in enumerate(s.template_params, 1):
            if param not in message.params:
                have = ", ".join(sorted(message.params)) or "none"
                problems.append(
                    f"模板变量 {{{i}}} 需要消息参数 '{param}' template variable {{{i}}} needs"
                    f" message parameter '{param}'; the template gives: {have}"
                )
                continue
            value = str(message.params[param])
            if len(value) > s.param_max_length:
                problems.append(
                    f"变量过长 variable {{{i}}} = {len(value)} characters, over {s.param_max_length}"
                )
            if URL.search(value):
                problems.append(f"变量不能含链接 variable {{{i}}} contains a link")
        bill = billed(signed_text(s.sign_name, message.text))
        if bill.parts > s.max_billed:
            problems.append(f"计费条数超限 {bill.describe()}, over max_billed {s.max_billed}")
        if any(ord(c) > 0xFFFF for c in message.text):
            problems.append("短信不能含表情符号 emoji are refused in SMS")
        return problems

    # -- send

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        results: dict[str, Result] = {}
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for d in batch:
            if plus86(d.recipient.address) is None:
                results[d.key] = Result.fail(
                    d,
                    ErrorClass.RECIPIENT,
                    f"不是大陆手机号 not a mainland mobile: {d.recipient.display}",
                )
                continue
            try:
                self._values(d.message)
            except KeyError as exc:
                results[d.key] = Result.fail(
                    d, ErrorClass.CONTENT, f"缺少模板参数 missing template parameter {exc}"
                )
                continue
            groups[session_context(d)].append(d)
        for items in groups.values():
            for r in self._send_group(items):
                results[r.key] = r
        return [results[d.key] for d in batch]

    def _send_group(self, items: list[Delivery]) -> list[Result]:
        s = self.settings
        payload = {
            "PhoneNumberSet": [plus86(d.recipient.address) for d in items],
            "SmsSdkAppId": s.sdk_app_id,
            "SignName": s.sign_name,
            "TemplateId": s.template_id,
            "TemplateParamSet": self._values(items[0].message),
            "SessionContext": session_context(items[0]),
        }
        answer, failure = self._call("SendSms", payload)
        if failure is not None:
            cls, reason, wait = failure
            return [Result.fail(d, cls, reason, retry_after=wait) for d in items]
        assert answer is not None
        now = self.context.clock()
        error = answer.error
        if error is not None:
            v = classify(*error, now)
            return [
                Result.fail(d, v.error_class, v.reason, retry_after=v.retry_after, raw=answer.text)
                for d in items
            ]
        statuses = (answer.response or {}).get("SendStatusSet")
        if not isinstance(statuses, list):
            return [
                Result.fail(d, ErrorClass.UNKNOWN, "应答缺少 SendStatusSet; outcome unknown")
                for d in items
            ]
        by_phone = {str(i.get("PhoneNumber")): i for i in statuses if isinstance(i, dict)}
        out = []
        for d in items:
            item = by_phone.get(plus86(d.recipient.address) or "")
            if item is None:
                out.append(
                    Result.fail(d, ErrorClass.UNKNOWN, "应答未列出该号码 number missing; unknown")
                )
                continue
            raw = json.dumps(
                {k: item.get(k) for k in ("SerialNo", "Fee", "Code", "Message")},
                ensure_ascii=False,
            )
            if item.get("Code") == "Ok":
                out.append(Result.ok(d, str(item.get("SerialNo") or "") or None, raw=raw))
                continue
            v = classify(str(item.get("Code")), str(item.get("Message", "")), now)
            out.append(
                Result.fail(
                    d,
                    v.error_class,
                    v.reason,
                    retry_after=v.retry_after,
                    raw=raw,
                    per_recipient=v.per_number,
                )
            )
        return out

    def _call(
        self, action: str, payload: dict[str, Any]
    ) -> tuple[TencentAnswer | None, tuple[ErrorClass, str, float | None] | None]:
        """The answer, or (class, reason, retry_after) when there is none to read."""
        import requests

        for attempt in (1, 2):
            try:
                answer = self.client.call(action, payload)
            except requests.ConnectTimeout:
                return None, (ErrorClass.TRANSIENT, "连接超时 connect timeout: nothing sent", None)
            except requests.ReadTimeout:
                return None, (
                    ErrorClass.UNKNOWN,
                    f"等待应答超时 no answer within {self.settings.timeout[1]:g}s; 结果未知"
                    " outcome unknown, reconciled by PullSmsSendStatusByPhoneNumber",
                    None,
                )
            except requests.ConnectionError as exc:
                if "refused" in repr(exc) or "NewConnectionError" in repr(exc):
                    return None, (ErrorClass.TRANSIENT, "连接被拒绝 connection refused", None)
                return None, (ErrorClass.UNKNOWN, "连接中断 connection dropped; unknown", None)
            except requests.RequestException as exc:
                reason = f"应答不完整 incomplete answer ({type(exc).__name__}); outcome unknown"
                return None, (ErrorClass.UNKNOWN, reason, None)
            if answer.status == 429:
                wait = answer.retry_after or 1.0
                return None, (ErrorClass.THROTTLED, "HTTP 429 限流 throttled", wait)
            if answer.status >= 500:
                return None, (
                    ErrorClass.UNKNOWN,
                    f"HTTP {answer.status} 服务端错误 server error; outcome unknown",
                    None,
                )
            if answer.response is None:
                return None, (
                    ErrorClass.UNKNOWN,
                    f"应答不是完整 JSON answer is not JSON: {answer.text[:60]!r}; outcome unknown",
                    None,
                )
            error = answer.error
            if attempt == 1 and error is not None and error[0] == "AuthFailure.SignatureExpire":
                continue  # signed again with a new timestamp, once
            return answer, None
        return answer, None

    # -- receipts and reconciling

    def pull_outcomes(self, cursor: str | None) -> OutcomePage | None:
        """PullSmsSendStatus: a queue; each status comes once, the engine writes it first."""
        answer, failure = self._call(
            "PullSmsSendStatus",
            {"Limit": self.settings.pull_limit, "SmsSdkAppId": self.settings.sdk_app_id},
        )
        if failure is not None or answer is None or answer.error is not None:
            reason = failure[1] if failure else (answer.error if answer else "")
            raise RuntimeError(f"PullSmsSendStatus failed: {reason}")
        items = (answer.response or {}).get("PullSmsSendStatusSet") or []
        outcomes = [self._outcome(i) for i in items if isinstance(i, dict)]
        count = int(cursor or 0) + len(outcomes)
        return OutcomePage(outcomes, str(count), more=len(items) >= self.settings.pull_limit)

    @staticmethod
    def _outcome(item: dict[str, Any]) -> Outcome:
        ok = item.get("ReportStatus") == "SUCCESS"
        at = None
        try:
            at = dt.datetime.strptime(str(item.get("UserReceiveTime")), "%Y-%m-%d %H:%M:%S")
            at = at.replace(tzinfo=CN)
        except ValueError:
            pass
        return Outcome(
            Status.DELIVERED if ok else Status.FAILED,
            provider_id=str(item.get("SerialNo")),
            address=plus86(str(item.get("PhoneNumber", ""))) or None,
            at=at,
            error_class=None if ok else ErrorClass.RECIPIENT,
            reason=f"回执 receipt: {item.get('Description')}",
            raw=json.dumps(
                {k: item.get(k) for k in ("ReportStatus", "Description", "UserReceiveTime")},
                ensure_ascii=False,
            ),
        )

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """PullSmsSendStatusByPhoneNumber per number, over the last 7 days at most: a status
        with the delivery's SerialNo (or, when the send went unanswered, its SessionContext)
        settles it; none leaves it as it is (no record of a send is never proof it was lost)."""
        now = self.context.clock()
        out = []
        for d in pending[: self.settings.query_batch]:
            phone = plus86(d.recipient.address)
            if phone is None:
                continue
            start = min(d.scheduled_at, now).timestamp() - 3600
            begin = int(max(now.timestamp() - WEEK + 60, start))
            answer, failure = self._call(
                "PullSmsSendStatusByPhoneNumber",
                {
                    "BeginTime": begin,
                    "EndTime": int(now.timestamp()),
                    "Offset": 0,
                    "Limit": 100,
                    "PhoneNumber": phone,
                    "SmsSdkAppId": self.settings.sdk_app_id,
                },
            )
            if failure is not None or answer is None or answer.error is not None:
                continue
            for item in (answer.response or {}).get("PullSmsSendStatusSet") or []:
                if d.provider_id:
                    if item.get("SerialNo") != d.provider_id:
                        continue
                elif item.get("SessionContext") != session_context(d):
                    continue
                o = self._outcome(item)
                if o.status is Status.DELIVERED:
                    out.append(
                        Result(d.key, Status.DELIVERED, None, o.reason, o.provider_id, raw=o.raw)
                    )
                else:
                    out.append(
                        Result.fail(d, ErrorClass.RECIPIENT, o.reason, provider_id=o.provider_id)
                    )
                break
        return out

    def routes(self) -> Sequence[InboundRoute]:
        return (
            InboundRoute(
                "/receipts",
                self._callback,
                summary="腾讯云短信状态回调 Tencent SMS status callback",
            ),
        )

    def _callback(self, request: InboundRequest) -> InboundReply:
        token = self.settings.receipt_token
        if token is not None:
            given = (request.query.get("token") or [""])[0]
            if token.value is None or not hmac.compare_digest(given, token.value):
                return InboundReply.json({"result": 1, "errmsg": "unauthorised"}, status=401)
        try:
            items = request.json()
        except (ValueError, UnicodeDecodeError):
            return InboundReply.json({"result": 1, "errmsg": "expected a JSON array"}, status=400)
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("sid"), str) for i in items
        ):
            return InboundReply.json({"result": 1, "errmsg": "expected a JSON array"}, status=400)
        outcomes = [
            self._outcome(
                {
                    "SerialNo": i["sid"],
                    "PhoneNumber": str(i.get("mobile", "")),
                    "ReportStatus": i.get("report_status"),
                    "Description": i.get("errmsg"),
                    "UserReceiveTime": i.get("user_receive_time"),
                }
            )
            for i in items
        ]
        return InboundReply.json({"result": 0, "errmsg": "OK"}, outcomes=outcomes)
