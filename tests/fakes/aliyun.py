"""A fake Aliyun RPC endpoint: Dysms (SendSms, SendBatchSms, QuerySendDetails) and Dyvms
(SingleCallByTts, QueryCallDetailByCallId), checking signatures as Aliyun does.

Every request is verified like the provider (channels.md §2) with its own, independent
implementation of signature V1: the AccessKeyId must be known (`keys`), the
`Signature` must match (400 `SignatureDoesNotMatch`), the `Timestamp` must be within
15 minutes of the fake's `clock` (400 `InvalidTimeStamp.Expired`) and a
`SignatureNonce` may be used once (400 `SignatureNonceUsed`). Parameters come as a
form body or a query string.

Answers are per number: `number_codes[phone] = code` makes a number refused with that
code (a SendSms naming it fails whole, as Aliyun's one-BizId call does). Per-number
caps are enforced (`sms_day_cap` per signature, template and number per day; voice
1/min, 5/h, 20/day per number, counted for refused calls too). `faults` is a queue of
what the next calls answer instead (`Fault`), e.g. 500, 429, an HTML page, a body cut
off, a slow answer, or `ACCEPT_HANG`: the send is taken (counted, its receipt held)
but never answered.

Counting: `sms_received[phone]` and `calls_received[phone]` count what was acted on:
more than one per (number, OutId) is a duplicate (`duplicates()`). Receipts are held
for `QuerySendDetails` (`receipt_status[phone]` = (SendStatus, ErrCode); default 3,
"DELIVERED"), and `sms_reports()` / `push()` make SmsReport push bodies.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, quote

import requests

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["AliyunFake", "Fault", "SentSms", "VoiceCall"]

SKEW = dt.timedelta(minutes=15)
HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"


class Fault(StrEnum):
    """What the next call answers instead of the normal answer."""

    HTTP_500 = "500"  # {"Code": "InternalError"}, not acted on (the client cannot know)
    HTTP_503 = "503"  # {"Code": "ServiceUnavailable"}
    THROTTLING = "429"  # HTTP 400 Throttling.User
    HTTP_429 = "bare429"  # a proxy's bare 429 with Retry-After: 2
    SYSTEM_ERROR = "isp"  # 200 isp.SYSTEM_ERROR: not acted on
    HTML = "html"  # 200 text/html
    CUT = "cut"  # acted on; the answer's body is cut off mid-way
    SLOW = "slow"  # acted on; the normal answer after `slow_seconds`
    ACCEPT_HANG = "hang"  # acted on; never answered


@dataclass
class SentSms:
    biz_id: str
    phone: str
    out_id: str
    sign: str
    template: str
    params: dict[str, Any]
    send_date: str  # yyyyMMdd
    at: dt.datetime


@dataclass
class VoiceCall:
    call_id: str
    number: str
    out_id: str
    tts_code: str
    params: dict[str, Any]
    shown: str
    at: dt.datetime
    answered: bool = True
    duration: int = 23
    reason: str = "用户听完语音通知"


def pe(s: str) -> str:
    return quote(s, safe="~")


def expected_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """Aliyun's check, written out independently of the client's signer."""
    pairs = sorted((pe(k), pe(v)) for k, v in params.items() if k != "Signature")
    query = "&".join(f"{k}={v}" for k, v in pairs)
    text = "&".join([method.upper(), pe("/"), pe(query)])
    mac = hmac.new((secret + "&").encode("utf-8"), text.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply.json({"Code": code, "Message": message, "RequestId": "fake-req"}, status)


@dataclass
class _Caps:
    """Per-number voice call times (for 1/min, 5/h, 20/day)."""

    times: dict[str, list[dt.datetime]] = field(default_factory=dict)


class AliyunFake(FakeHTTPServer):
    def __init__(
        self,
        keys: dict[str, str] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        super().__init__()
        self.keys = dict(keys or {})  # AccessKeyId -> AccessKeySecret
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.latency = 0.0  # seconds before every SendSms answer (benchmarks)
        self.slow_seconds = 2.0
        self.number_codes: dict[str, str] = {}
        self.voice_codes: dict[str, str] = {}
        self.sms_day_cap = 50
        self.receipt_status: dict[str, tuple[int, str]] = {}
        self.call_results: dict[str, tuple[bool, int, str]] = {}  # number -> answered, s, why
        self.faults: deque[Fault] = deque()
        self.sent: list[SentSms] = []
        self.calls: list[VoiceCall] = []
        self.sms_received: Counter[str] = Counter()
        self.calls_received: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # calls refused by code
        self._by_out: Counter[tuple[str, str]] = Counter()
        self._nonces: set[str] = set()
        self._day: Counter[tuple[str, str, str, str]] = Counter()
        self._voice = _Caps()
        self._biz = itertools.count(1)
        self._state = threading.Lock()

    # -- what tests read

    def duplicates(self) -> dict[tuple[str, str], int]:
        """(number, OutId) acted on more than once: a message or call sent twice."""
        with self._state:
            return {k: n for k, n in self._by_out.items() if n > 1}

    def fault(self, *faults: Fault) -> None:
        with self._state:
            self.faults.extend(faults)

    def sms_reports(self, sent: Iterable[SentSms] | None = None) -> list[dict[str, Any]]:
        """SmsReport push items for sends (default: all), as Aliyun posts them."""
        out = []
        for s in list(self.sent if sent is None else sent):
            status, err = self.receipt_status.get(s.phone, (3, "DELIVERED"))
            when = s.at.astimezone(dt.timezone(dt.timedelta(hours=8)))
            out.append(
                {
                    "phone_number": s.phone,
                    "send_time": f"{when:%Y-%m-%d %H:%M:%S}",
                    "report_time": f"{when + dt.timedelta(seconds=5):%Y-%m-%d %H:%M:%S}",
                    "success": status == 3,
                    "err_code": err,
                    "err_msg": "用户接收成功" if status == 3 else "失败",
                    "sms_size": "1",
                    "biz_id": s.biz_id,
                    "out_id": s.out_id,
                }
            )
        return out

    def voice_reports(self) -> list[dict[str, Any]]:
        """Call-result push items, one per call taken."""
        out = []
        for c in list(self.calls):
            start = c.at.astimezone(dt.timezone(dt.timedelta(hours=8)))
            out.append(
                {
                    "call_id": c.call_id,
                    "out_id": c.out_id,
                    "status_code": "200000" if c.answered else "200005",
                    "status_msg": c.reason,
                    "duration": str(c.duration if c.answered else 0),
                    "start_time": f"{start:%Y-%m-%d %H:%M:%S}",
                    "end_time": f"{start + dt.timedelta(seconds=c.duration):%Y-%m-%d %H:%M:%S}",
                }
            )
        return out

    @staticmethod
    def push(url: str, items: list[dict[str, Any]], timeout: float = 5.0) -> requests.Response:
        """POST a JSON array of reports to `url`, as the console-configured push does."""
        return requests.post(url, json=items, timeout=timeout)

    # -- answering

    def handle(self, request: RecordedRequest) -> Reply:
        params = {k: v[-1] for k, v in request.query.items()}
        if request.method == "POST" and request.body:
            form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            params.update({k: v[-1] for k, v in form.items()})
        refused = self._authenticate(request.method, params)
        if refused is not None:
            return refused
        action = params.get("Action", "")
        if action in ("QuerySendDetails", "QueryCallDetailByCallId"):
            return self._query(action, params)
        with self._state:
            fault = self.faults.popleft() if self.faults else None
        if fault is Fault.HTTP_500:
            return _error(500, "InternalError", "The request processing has failed")
        if fault is Fault.HTTP_503:
            return _error(503, "ServiceUnavailable", "The service is unavailable")
        if fault is Fault.THROTTLING:
            return _error(400, "Throttling.User", "Request was denied due to user flow control.")
        if fault is Fault.HTTP_429:
            return Reply(429, "Too Many Requests", {"Retry-After": "2"})
        if fault is Fault.SYSTEM_ERROR:
            return Reply.json({"Code": "isp.SYSTEM_ERROR", "Message": "系统异常"})
        if fault is Fault.HTML:
            return Reply(200, HTML, {"Content-Type": "text/html"})
        if action in ("SendSms", "SendBatchSms"):
            reply = self._send_sms(action, params)
        elif action == "SingleCallByTts":
            reply = self._call(params)
        else:
            return _error(400, "InvalidAction.NotFound", f"no action {action}")
        if fault is Fault.CUT:
            body = reply.payload()
            return Reply(200, body[: len(body) // 2], reply.headers, short_by=len(body) // 2 + 1)
        if fault is Fault.SLOW:
            return Reply(reply.status, reply.body, reply.headers, delay=self.slow_seconds)
        if fault is Fault.ACCEPT_HANG:
            return Reply.hang()
        if self.latency:
            return Reply(reply.status, reply.body, reply.headers, delay=self.latency)
        return reply

    def _authenticate(self, method: str, params: dict[str, str]) -> Reply | None:
        key_id = params.get("AccessKeyId", "")
        if key_id not in self.keys:
            return _error(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        for name in ("SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                return _error(400, "MissingParameter", f"{name} is mandatory")
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            return _error(400, "InvalidParameter", "SignatureMethod")
        wanted = expected_signature(self.keys[key_id], method, params)
        if not hmac.compare_digest(wanted, params.get("Signature", "")):
            return _error(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation.",
            )
        try:
            stamp = dt.datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC
            )
        except ValueError:
            return _error(400, "InvalidTimeStamp.Format", "Specified time stamp is not valid.")
        if abs(self.clock() - stamp) > SKEW:
            return _error(
                400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        with self._state:
            if params["SignatureNonce"] in self._nonces:
                return _error(
                    400, "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces.add(params["SignatureNonce"])
        if params.get("Format", "XML") != "JSON":
            return Reply(200, "<Response><Code>OK</Code></Response>", {"Content-Type": "text/xml"})
        return None

    def _send_sms(self, action: str, params: dict[str, str]) -> Reply:
        template = params.get("TemplateCode", "")
        if action == "SendSms":
            phones = [p for p in params.get("PhoneNumbers", "").split(",") if p]
            signs = [params.get("SignName", "")] * len(phones)
            values = [json.loads(params.get("TemplateParam") or "{}")] * len(phones)
            if len(phones) > 1000:
                return Reply.json({"Code": "isv.MOBILE_COUNT_OVER_LIMIT", "Message": "over 1000"})
        else:
            phones = json.loads(params.get("PhoneNumberJson", "[]"))
            signs = json.loads(params.get("SignNameJson", "[]"))
            values = json.loads(params.get("TemplateParamJson", "[]") or "[]")
            if len(phones) > 100 or len(signs) != len(phones):
                return Reply.json({"Code": "isv.INVALID_JSON_PARAM", "Message": "arrays"})
        if not phones or not template or not all(signs):
            return Reply.json({"Code": "isv.INVALID_PARAMETERS", "Message": "missing"})
        now = self.clock()
        day = now.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y%m%d")
        with self._state:
            for phone, sign in zip(phones, signs, strict=True):
                code = self.number_codes.get(phone)
                if code is None and not (len(phone) == 11 and phone.startswith("1")):
                    code = "isv.MOBILE_NUMBER_ILLEGAL"
                if code is not None:
                    self.refused[code] += 1
                    message = (
                        "触发天级流控Permits:10" if code == "isv.BUSINESS_LIMIT_CONTROL" else code
                    )
                    return Reply.json({"Code": code, "Message": message, "RequestId": "fake"})
                if self._day[(sign, template, phone, day)] >= self.sms_day_cap:
                    self.refused["isv.BUSINESS_LIMIT_CONTROL"] += 1
                    return Reply.json(
                        {
                            "Code": "isv.BUSINESS_LIMIT_CONTROL",
                            "Message": f"触发天级流控Permits:{self.sms_day_cap}",
                        }
                    )
            biz = f"{next(self._biz):012d}^0"
            out_id = params.get("OutId", "")
            for phone, sign, value in zip(phones, signs, values, strict=True):
                self._day[(sign, template, phone, day)] += 1
                self.sms_received[phone] += 1
                self._by_out[(phone, out_id)] += 1
                self.sent.append(SentSms(biz, phone, out_id, sign, template, value, day, now))
        return Reply.json({"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": "fake"})

    def _call(self, params: dict[str, str]) -> Reply:
        number = params.get("CalledNumber", "")
        if not params.get("TtsCode"):
            return Reply.json({"Code": "isv.INVALID_PARAMETERS", "Message": "TtsCode"})
        if len(params.get("OutId", "")) > 15:
            return Reply.json({"Code": "isv.INVALID_PARAMETERS", "Message": "OutId too long"})
        now = self.clock()
        with self._state:
            times = [t for t in self._voice.times.get(number, []) if now - t < dt.timedelta(days=1)]
            for window, cap, text in (
                (dt.timedelta(minutes=1), 1, "分钟级"),
                (dt.timedelta(hours=1), 5, "小时级"),
                (dt.timedelta(days=1), 20, "天级"),
            ):
                if sum(now - t < window for t in times) >= cap:
                    times.append(now)  # refused calls count too
                    self._voice.times[number] = times
                    self.refused["isv.BUSINESS_LIMIT_CONTROL"] += 1
                    return Reply.json(
                        {
                            "Code": "isv.BUSINESS_LIMIT_CONTROL",
                            "Message": f"触发{text}流控Permits:{cap}",
                        }
                    )
            times.append(now)
            self._voice.times[number] = times
            code = self.voice_codes.get(number)
            if code is not None:
                self.refused[code] += 1
                return Reply.json({"Code": code, "Message": code})
            call_id = f"{next(self._biz):09d}^1"
            answered, seconds, reason = self.call_results.get(
                number, (True, 23, "用户听完语音通知")
            )
            out_id = params.get("OutId", "")
            self.calls_received[number] += 1
            self._by_out[(number, out_id)] += 1
            self.calls.append(
                VoiceCall(
                    call_id,
                    number,
                    out_id,
                    params["TtsCode"],
                    json.loads(params.get("TtsParam") or "{}"),
                    params.get("CalledShowNumber", ""),
                    now,
                    answered,
                    seconds,
                    reason,
                )
            )
        return Reply.json({"Code": "OK", "Message": "OK", "CallId": call_id, "RequestId": "fake"})

    def _query(self, action: str, params: dict[str, str]) -> Reply:
        with self._state:
            if action == "QueryCallDetailByCallId":
                found = [c for c in self.calls if c.call_id == params.get("CallId")]
                if not found:
                    return Reply.json({"Code": "OK", "Message": "OK", "Data": None})
                c = found[0]
                data = {
                    "callId": c.call_id,
                    "state": "200000" if c.answered else "200005",
                    "stateDesc": c.reason,
                    "duration": c.duration if c.answered else 0,
                    "calledNum": c.number,
                }
                return Reply.json({"Code": "OK", "Message": "OK", "Data": json.dumps(data)})
            phone = params.get("PhoneNumber", "")
            if not phone or not params.get("SendDate"):
                return Reply.json({"Code": "isv.INVALID_PARAMETERS", "Message": "PhoneNumber"})
            size = min(50, int(params.get("PageSize", "10")))
            page = int(params.get("CurrentPage", "1"))
            found_sms = [
                s
                for s in self.sent
                if s.phone == phone
                and s.send_date == params["SendDate"]
                and (not params.get("BizId") or s.biz_id == params["BizId"])
            ]
            items = []
            for s in found_sms[(page - 1) * size : page * size]:
                status, err = self.receipt_status.get(s.phone, (3, "DELIVERED"))
                items.append(
                    {
                        "PhoneNum": s.phone,
                        "SendStatus": status,
                        "ErrCode": err,
                        "TemplateCode": s.template,
                        "Content": "",
                        "SendDate": f"{s.at:%Y-%m-%d %H:%M:%S}",
                        "ReceiveDate": f"{s.at:%Y-%m-%d %H:%M:%S}" if status == 3 else "",
                        "OutId": s.out_id,
                    }
                )
        return Reply.json(
            {
                "Code": "OK",
                "Message": "OK",
                "TotalCount": len(found_sms),
                "SmsSendDetailDTOs": {"SmsSendDetailDTO": items},
                "RequestId": "fake",
            }
        )
