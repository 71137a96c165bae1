"""voice-call: text-to-speech voice notifications (语音通知) through Aliyun or Tencent Cloud.

Plugin alias: voice-call. Docs: Aliyun Dyvms `SingleCallByTts`
(https://help.aliyun.com/document_detail/393519.html) and `QueryCallDetailByCallId`;
Tencent VMS `SendTtsVoice` (https://cloud.tencent.com/document/api/1128/51558) and its
call-status callback. `provider` chooses one.

One number per call. Aliyun calls mobiles and landlines (sent as 0571…); Tencent calls
mainland mobiles only, so a landline fails as a recipient problem and `validate` warns
that it needs another channel. The approved template's parameters come from the
message's parameters (`template_params`); a value made of digits (a hotline, 96110) is
sent spaced, "9 6 1 1 0", so the TTS engine reads it digit by digit, not as a quantity.

Per number at most 1 call a minute, 5 an hour and 20 a day (Aliyun's caps, kept for
both providers): a ledger checks before calling and defers that number alone until
its window frees (a provider answering with its cap does the same). Calls are
accepted when placed; the call result comes later: answered -> delivered with
"已接听 answered, N s", not answered -> failed with the reason. Results come from
`QueryCallDetailByCallId` (Aliyun, `reconcile()`) and the push routes
(/hooks/<channel>/calls).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

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
    MessageKind,
    Outcome,
    QuietHours,
    RateLimit,
    Recipient,
    Result,
    Status,
)
from broadcaster.channels.aliyun_rpc import AliyunClient
from broadcaster.channels.aliyun_rpc import classify as aliyun_classify
from broadcaster.channels.aliyun_sms import URL, mainland_mobile
from broadcaster.channels.tencent_tc3 import TencentClient
from broadcaster.channels.tencent_tc3 import classify as tencent_classify
from broadcaster.vocab import Addressing

__all__ = ["CallLedger", "VoiceCallChannel", "spaced_digits"]

DIGITS = re.compile(r"^\d{3,}$")
LANDLINE = re.compile(r"^(?:\+86|0086|86|0)?([1-9]\d{1,2})(\d{7,8})$")
ANSWERED = "200000"
CAPS = ((dt.timedelta(minutes=1), 1), (dt.timedelta(hours=1), 5), (dt.timedelta(days=1), 20))
ENDPOINTS = {
    "aliyun": "https://dyvmsapi.aliyuncs.com/",
    "tencent": "https://vms.tencentcloudapi.com/",
}


def spaced_digits(value: str) -> str:
    """96110 -> "9 6 1 1 0": read digit by digit, not as a quantity."""
    return " ".join(value) if DIGITS.match(value) else value


def landline(address: str) -> str | None:
    """A mainland landline with its trunk 0 (05718888666), or None."""
    if mainland_mobile(address):
        return None
    digits = re.sub(r"[\s-]", "", address)
    m = LANDLINE.match(digits)
    if m is None or len(m[1] + m[2]) not in (10, 11):
        return None
    return f"0{m[1]}{m[2]}"


class CallLedger:
    """Calls per number over the last day; what the per-number caps still allow."""

    def __init__(self) -> None:
        self._calls: dict[str, list[dt.datetime]] = {}
        self._lock = threading.Lock()

    def reserve(self, number: str, now: dt.datetime) -> float | None:
        """Count a call at `now` and return None, or the seconds until one is allowed."""
        with self._lock:
            times = [t for t in self._calls.get(number, []) if now - t < dt.timedelta(days=1)]
            for window, cap in CAPS:
                recent = sorted(t for t in times if now - t < window)
                if len(recent) >= cap:
                    self._calls[number] = times
                    return (recent[-cap] + window - now).total_seconds()
            times.append(now)
            self._calls[number] = times
            return None


class VoiceCallSettings(ChannelSettings):
    provider: Literal["aliyun", "tencent"]
    key_id: EnvSecret  # Aliyun AccessKeyId / Tencent SecretId
    key_secret: EnvSecret  # Aliyun AccessKeySecret / Tencent SecretKey
    template: str  # Aliyun TtsCode (TTS_…) / Tencent TemplateId (digits)
    template_params: dict[str, str] = Field(default_factory=dict)  # variable -> message param
    sdk_app_id: str | None = None  # Tencent VoiceSdkAppid
    called_show_number: str = ""  # Aliyun display number; empty: the public pool
    play_times: int = Field(default=2, ge=1, le=3)
    volume: int = Field(default=100, ge=0, le=100)  # Aliyun only
    speed: int = Field(default=0, ge=-500, le=500)  # Aliyun only
    spell_digits: bool = True  # digit-only values read digit by digit
    endpoint: str | None = None  # default: the provider's
    calls_per_second: float | None = Field(default=None, gt=0)  # default 100 Aliyun, 20 Tencent
    result_hours: float = Field(default=2.0, gt=0)  # how long call results are awaited
    result_poll_seconds: float = Field(default=120.0, gt=0)
    receipt_token: EnvSecret | None = None  # the push URL carries ?token=<this>
    timeout: tuple[float, float] = (5.0, 15.0)

    @model_validator(mode="after")
    def _provider(self) -> VoiceCallSettings:
        if self.provider == "aliyun" and not re.match(r"^TTS_\d+$", self.template):
            raise ValueError(
                f"阿里云 TtsCode 形如 TTS_123 expected an Aliyun TtsCode; got {self.template!r}"
            )
        if self.provider == "tencent":
            if not self.template.isdigit():
                raise ValueError(f"腾讯云 TemplateId 为数字 expected digits; got {self.template!r}")
            if not self.sdk_app_id:
                raise ValueError("腾讯云需要 sdk_app_id (VoiceSdkAppid) for provider tencent")
        return self


class VoiceCallChannel(BaseChannel):
    """One TTS call per delivery; call results as late outcomes."""

    name = "voice-call"
    Settings = VoiceCallSettings

    def __init__(self, settings: VoiceCallSettings, context: ChannelContext) -> None:
        super().__init__(settings, context)
        endpoint = settings.endpoint or ENDPOINTS[settings.provider]
        self.ledger = CallLedger()
        self.aliyun: AliyunClient | None = None
        self.tencent: TencentClient | None = None
        if settings.provider == "aliyun":
            self.aliyun = AliyunClient(
                context.http,
                endpoint,
                settings.key_id.value or "",
                settings.key_secret.get,
                "2017-05-25",
                context.clock,
                timeout=settings.timeout,
            )
        else:
            self.tencent = TencentClient(
                context.http,
                endpoint,
                "vms",
                "2020-09-02",
                settings.key_id.value or "",
                settings.key_secret.get,
                context.clock,
                timeout=settings.timeout,
            )

    @property
    def capabilities(self) -> Capabilities:
        s = self.settings
        rate = s.calls_per_second or (100.0 if s.provider == "aliyun" else 20.0)
        return Capabilities(
            kinds=frozenset({MessageKind.LOUDSPEAKER}),
            addressing=Addressing.CONTACTS,
            batch_size=1,
            rate_limit=RateLimit(max(1, int(rate)), 1.0),
            concurrency=8,
            quiet_hours=QuietHours(dt.time(21), dt.time(8)),
            reconciles=s.provider == "aliyun",
            settle_seconds=sum(s.timeout) + 60.0,
            outcome_window=s.result_hours * 3600.0,
            outcome_poll=s.result_poll_seconds,
            reconcile_batch=10,
        )

    def endpoint(self, recipient: Recipient) -> str:
        return f"{self.settings.provider}:{self.settings.key_id.env}"

    def number(self, address: str) -> str | None:
        """The called number as the provider wants it, or None when it cannot be called."""
        mobile = mainland_mobile(address)
        if self.settings.provider == "tencent":
            return f"+86{mobile}" if mobile else None
        return mobile or landline(address)

    def params(self, message: Message) -> dict[str, str]:
        out = {}
        for var, param in self.settings.template_params.items():
            value = str(message.params[param])
            out[var] = spaced_digits(value) if self.settings.spell_digits else value
        return out

    # -- validate

    def check_message(self, message: Message) -> list[str]:
        problems = []
        for var, param in self.settings.template_params.items():
            if param not in message.params:
                have = ", ".join(sorted(message.params)) or "none"
                problems.append(
                    f"模板变量 {var} 需要消息参数 '{param}' template variable {var} needs"
                    f" message parameter '{param}'; the template gives: {have}"
                )
            elif URL.search(str(message.params[param])):
                problems.append(f"变量不能含链接 variable {var} contains a link")
        if problems:
            return problems
        if self.settings.provider == "aliyun":
            size = len(json.dumps(self.params(message), ensure_ascii=False))
            if size >= 250:
                problems.append(f"TtsParam 过长 {size} characters, Aliyun takes under 250")
        elif len(message.text) > 350:
            problems.append(f"语音内容过长 {len(message.text)} characters, Tencent takes ≤ 350")
        return problems

    def check_recipients(self, recipients: Sequence[Recipient]) -> list[str]:
        """Numbers this provider cannot call (Tencent: landlines), counted, never listed in clear."""
        cannot = [r for r in recipients if self.number(r.address) is None]
        if not cannot:
            return []
        shown = ", ".join(r.display for r in cannot[:3]) + (" …" if len(cannot) > 3 else "")
        if self.settings.provider == "tencent":
            return [
                f"{len(cannot)} 个号码是固定电话或非大陆手机，腾讯云语音只能呼叫大陆手机，需另设渠道"
                f" (如阿里云 voice-call) {len(cannot)} numbers are landlines or not mainland mobiles:"
                f" Tencent calls mainland mobiles only, give them another channel: {shown}"
            ]
        return [f"{len(cannot)} 个号码无法呼叫 numbers cannot be called: {shown}"]

    # -- send

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        return [self._call(d) for d in batch]

    def _call(self, d: Delivery) -> Result:
        number = self.number(d.recipient.address)
        if number is None:
            why = (
                "腾讯云语音只能呼叫大陆手机 Tencent calls mainland mobiles only: needs another channel"
                if self.settings.provider == "tencent"
                else "无法呼叫的号码 not a mainland mobile or landline"
            )
            return Result.fail(d, ErrorClass.RECIPIENT, f"{why}: {d.recipient.display}")
        try:
            params = self.params(d.message)
        except KeyError as exc:
            return Result.fail(
                d, ErrorClass.CONTENT, f"缺少模板参数 missing template parameter {exc}"
            )
        now = self.context.clock()
        wait = self.ledger.reserve(number, now)
        if wait is not None:
            return Result.fail(
                d,
                ErrorClass.THROTTLED,
                "号码呼叫频率上限 per-number call cap (1/min, 5/h, 20/day): deferred",
                retry_after=wait,
                per_recipient=True,
            )
        import requests

        try:
            if self.aliyun is not None:
                return self._aliyun(d, number, params)
            return self._tencent(d, number, params)
        except requests.ConnectTimeout:
            return Result.fail(d, ErrorClass.TRANSIENT, "连接超时 connect timeout: nothing sent")
        except requests.ReadTimeout:
            return Result.fail(d, ErrorClass.UNKNOWN, "等待应答超时 no answer; outcome unknown")
        except requests.ConnectionError as exc:
            if "refused" in repr(exc) or "NewConnectionError" in repr(exc):
                return Result.fail(d, ErrorClass.TRANSIENT, "连接被拒绝 connection refused")
            return Result.fail(d, ErrorClass.UNKNOWN, "连接中断 connection dropped; unknown")
        except requests.RequestException as exc:
            return Result.fail(
                d, ErrorClass.UNKNOWN, f"应答不完整 incomplete answer ({type(exc).__name__})"
            )

    def _aliyun(self, d: Delivery, number: str, params: dict[str, str]) -> Result:
        s = self.settings
        assert self.aliyun is not None
        call = {
            "CalledNumber": number,
            "TtsCode": s.template,
            "TtsParam": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            "PlayTimes": str(s.play_times),
            "Volume": str(s.volume),
            "Speed": str(s.speed),
            "OutId": d.key[:15],
        }
        if s.called_show_number:
            call["CalledShowNumber"] = s.called_show_number
        answer = self.aliyun.call("SingleCallByTts", call)
        if answer.ok:
            return Result.ok(d, str((answer.body or {}).get("CallId")), raw=answer.text)
        cls, wait, reason = aliyun_classify(answer, self.context.clock())
        per_number = answer.code == "isv.BUSINESS_LIMIT_CONTROL"
        return Result.fail(
            d, cls, reason, retry_after=wait, raw=answer.text, per_recipient=per_number
        )

    def _tencent(self, d: Delivery, number: str, params: dict[str, str]) -> Result:
        s = self.settings
        assert self.tencent is not None
        answer = self.tencent.call(
            "SendTtsVoice",
            {
                "TemplateId": s.template,
                "CalledNumber": number,
                "VoiceSdkAppid": s.sdk_app_id,
                "TemplateParamSet": list(params.values()),
                "PlayTimes": s.play_times,
                "SessionContext": d.key,
            },
        )
        if answer.status == 429:
            return Result.fail(
                d, ErrorClass.THROTTLED, "HTTP 429", retry_after=answer.retry_after or 1.0
            )
        if answer.status >= 500 or answer.response is None:
            return Result.fail(d, ErrorClass.UNKNOWN, f"HTTP {answer.status}; outcome unknown")
        if answer.error is not None:
            v = tencent_classify(*answer.error, self.context.clock())
            return Result.fail(
                d, v.error_class, v.reason, retry_after=v.retry_after, per_recipient=v.per_number
            )
        status = (answer.response or {}).get("SendStatus") or {}
        return Result.ok(d, str(status.get("CallId")), raw=answer.text)

    # -- call results

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """Aliyun: QueryCallDetailByCallId for placed calls; unanswered sends stay unknown."""
        if self.aliyun is None:
            return []
        import requests

        out = []
        for d in pending:
            if not d.provider_id:
                continue  # no CallId: the call-result push or an operator settles it
            day = d.scheduled_at.astimezone(dt.UTC)
            try:
                answer = self.aliyun.call(
                    "QueryCallDetailByCallId",
                    {
                        "CallId": d.provider_id,
                        "ProdId": "11000000300006",
                        "QueryDate": str(int(day.timestamp() * 1000)),
                    },
                )
            except requests.RequestException:
                continue
            data = (answer.body or {}).get("Data") if answer.ok else None
            if not data:
                continue
            try:
                detail = json.loads(data) if isinstance(data, str) else data
            except ValueError:
                continue
            result = _call_result(
                d.key,
                str(detail.get("state")),
                str(detail.get("stateDesc", "")),
                int(detail.get("duration") or 0),
                d.provider_id,
            )
            out.append(result)
        return out

    def routes(self) -> Sequence[InboundRoute]:
        return (InboundRoute("/calls", self._results, summary="语音呼叫结果 voice call results"),)

    def _results(self, request: InboundRequest) -> InboundReply:
        token = self.settings.receipt_token
        if token is not None:
            given = (request.query.get("token") or [""])[0]
            if token.value is None or not hmac.compare_digest(given, token.value):
                return InboundReply.json({"code": 1, "msg": "unauthorised"}, status=401)
        try:
            data = request.json()
        except (ValueError, UnicodeDecodeError):
            return InboundReply.json({"code": 1, "msg": "expected JSON"}, status=400)
        items = data if isinstance(data, list) else [data]
        outcomes = []
        for item in items:
            o = _aliyun_report(item) if self.aliyun else _tencent_report(item)
            if o is None:
                return InboundReply.json({"code": 1, "msg": "unexpected report"}, status=400)
            outcomes.append(o)
        if self.aliyun:
            return InboundReply.json({"code": 0, "msg": "成功"}, outcomes=outcomes)
        return InboundReply.json({"result": 0, "errmsg": "OK"}, outcomes=outcomes)


def _call_result(key: str, state: str, desc: str, seconds: int, call_id: str) -> Result:
    raw = json.dumps({"state": state, "duration": seconds}, ensure_ascii=False)
    if state == ANSWERED:
        return Result(
            key, Status.DELIVERED, None, f"已接听 answered, {seconds} s", call_id, raw=raw
        )
    return Result(
        key,
        Status.FAILED,
        ErrorClass.RECIPIENT,
        f"未接听 not answered: {desc or state}",
        call_id,
        raw=raw,
    )


def _aliyun_report(item: Any) -> Outcome | None:
    if not isinstance(item, dict) or not isinstance(item.get("call_id"), str):
        return None
    try:
        seconds = int(item.get("duration") or 0)
    except (TypeError, ValueError):
        return None
    r = _call_result(
        "", str(item.get("status_code")), str(item.get("status_msg", "")), seconds, item["call_id"]
    )
    return Outcome(
        r.status, provider_id=item["call_id"], error_class=r.error_class, reason=r.reason, raw=r.raw
    )


def _tencent_report(item: Any) -> Outcome | None:
    body = item.get("voiceprompt_callback") if isinstance(item, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("callid"), str):
        return None
    try:
        start = int(body.get("accept_time") or body.get("start_calltime") or 0)
        end = int(body.get("end_calltime") or 0)
    except (TypeError, ValueError):
        return None
    answered = str(body.get("result")) == "0"
    r = _call_result(
        "",
        ANSWERED if answered else str(body.get("result")),
        str(body.get("description", "")),
        max(0, end - start),
        body["callid"],
    )
    session = body.get("session_context")
    key = session if isinstance(session, str) and re.fullmatch(r"[0-9a-f]{64}", session) else None
    return Outcome(
        r.status,
        key=key,
        provider_id=body["callid"],
        error_class=r.error_class,
        reason=r.reason,
        raw=r.raw,
    )
