"""A fake Tencent Cloud API 3.0 endpoint: SMS 2021-01-11 (SendSms, PullSmsSendStatus,
PullSmsSendStatusByPhoneNumber) and VMS 2020-09-02 (SendTtsVoice), checking TC3 as
Tencent does.

Every request is verified like the provider (channels.md §3) with its own, independent
implementation of TC3-HMAC-SHA256: a known SecretId (`keys`), the credential's date
equal to the UTC date of `X-TC-Timestamp`, the timestamp within 5 minutes of the
fake's `clock` (`AuthFailure.SignatureExpire`), the signature over the exact body
bytes (`AuthFailure.SignatureFailure`). Failures come back as HTTP 200 with
`Response.Error`, as Tencent does.

SendSms answers per number in `SendStatusSet`: `number_codes[phone] = code` refuses a
number; the same content to a number within 30 s is refused
(`LimitExceeded.PhoneNumberThirtySecondLimit`), more than `day_cap` a day too
(`…PhoneNumberDailyLimit`); more than 200 numbers is `LimitExceeded.PhoneNumberCountLimit`.
Receipts (`receipt_status[phone]`, default SUCCESS/DELIVRD) wait in a queue that
`PullSmsSendStatus` hands out once each, and in a per-number store read by
`PullSmsSendStatusByPhoneNumber`; `sms_callbacks()` makes callback bodies. `faults`
replaces the next answers (`TcFault`): 502, 503, RequestLimitExceeded, a bare 429,
InternalError, truncated JSON, a slow answer, or `ACCEPT_HANG` (taken, never answered).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import re
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["SentTencent", "TcFault", "TencentFake", "expected_signature"]

SKEW = 300  # seconds
AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d\d-\d\d)/(?P<service>\w+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[\w;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
MOBILE = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")


class TcFault(StrEnum):
    HTTP_502 = "502"
    HTTP_503 = "503"
    REQUEST_LIMIT = "RequestLimitExceeded"  # HTTP 200, Response.Error
    HTTP_429 = "429"
    INTERNAL = "InternalError.Timeout"  # HTTP 200, Response.Error: not acted on
    TRUNCATED = "truncated"  # acted on; 200 with half a JSON body
    SLOW = "slow"  # acted on; answered after `slow_seconds`
    ACCEPT_HANG = "hang"  # acted on; never answered


@dataclass
class SentTencent:
    serial: str
    phone: str  # +86…
    session: str
    template: str
    params: list[str]
    at: dt.datetime
    voice: bool = False


def expected_signature(
    secret: str, service: str, host: str, timestamp: int, body: bytes, content_type: str
) -> str:
    """Tencent's check, written out independently of the client's signer."""
    day = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).date().isoformat()
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}",
            f"host:{host}",
            "",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            f"{day}/{service}/tc3_request",
            hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        ]
    )
    key = ("TC3" + secret).encode("utf-8")
    for part in (day, service, "tc3_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _error(code: str, message: str = "") -> Reply:
    return Reply.json(
        {"Response": {"Error": {"Code": code, "Message": message or code}, "RequestId": "fake"}}
    )


class TencentFake(FakeHTTPServer):
    def __init__(
        self,
        keys: dict[str, str] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        app_id: str = "1400006666",
    ) -> None:
        super().__init__()
        self.keys = dict(keys or {})  # SecretId -> SecretKey
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.app_id = app_id
        self.voice_app_id = "1400000001"
        self.number_codes: dict[str, str] = {}
        self.day_cap = 10
        self.slow_seconds = 2.0
        self.latency = 0.0
        self.receipt_status: dict[str, tuple[str, str]] = {}  # phone -> (SUCCESS|FAIL, desc)
        self.faults: deque[TcFault] = deque()
        self.sent: list[SentTencent] = []
        self.received: Counter[str] = Counter()  # messages and calls acted on, per number
        self.pulled: Counter[str] = Counter()  # receipts handed out by PullSmsSendStatus
        self._by_session: Counter[tuple[str, str]] = Counter()
        self._queue: deque[dict[str, Any]] = deque()
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._times: dict[tuple[str, str], list[dt.datetime]] = {}
        self._serial = itertools.count(1)
        self._state = threading.Lock()

    def duplicates(self) -> dict[tuple[str, str], int]:
        with self._state:
            return {k: n for k, n in self._by_session.items() if n > 1}

    def fault(self, *faults: TcFault) -> None:
        with self._state:
            self.faults.extend(faults)

    def queued_receipts(self) -> int:
        with self._state:
            return len(self._queue)

    def sms_callbacks(self, sent: list[SentTencent] | None = None) -> list[dict[str, Any]]:
        """Status callback items (the console-configured push), one per send."""
        out = []
        for s in list(self.sent if sent is None else sent):
            status, desc = self.receipt_status.get(s.phone, ("SUCCESS", "DELIVRD"))
            when = s.at.astimezone(dt.timezone(dt.timedelta(hours=8)))
            out.append(
                {
                    "user_receive_time": f"{when:%Y-%m-%d %H:%M:%S}",
                    "nationcode": "86",
                    "mobile": s.phone.removeprefix("+86"),
                    "report_status": status,
                    "errmsg": desc,
                    "description": "用户短信送达成功" if status == "SUCCESS" else "失败",
                    "sid": s.serial,
                    "ext": {},
                }
            )
        return out

    # -- answering

    def handle(self, request: RecordedRequest) -> Reply:
        action = request.headers.get("X-TC-Action", "")
        service = "vms" if action == "SendTtsVoice" else "sms"
        refused = self._authenticate(request, service)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body)
        except ValueError:
            return _error("InvalidParameter", "body is not JSON")
        if action == "PullSmsSendStatus":
            return self._pull(body)
        if action == "PullSmsSendStatusByPhoneNumber":
            return self._pull_number(body)
        with self._state:
            fault = self.faults.popleft() if self.faults else None
        if fault in (TcFault.HTTP_502, TcFault.HTTP_503):
            return Reply(
                int(fault.value), "<html>Bad Gateway</html>", {"Content-Type": "text/html"}
            )
        if fault is TcFault.HTTP_429:
            return Reply(429, "Too Many Requests", {"Retry-After": "3"})
        if fault in (TcFault.REQUEST_LIMIT, TcFault.INTERNAL):
            return _error(fault.value)
        if action == "SendSms":
            reply = self._send(body)
        elif action == "SendTtsVoice":
            reply = self._voice(body)
        else:
            return _error("InvalidAction", action)
        if fault is TcFault.TRUNCATED:
            payload = reply.payload()
            return Reply(200, payload[: len(payload) // 2], {"Content-Type": "application/json"})
        if fault is TcFault.SLOW:
            return Reply(reply.status, reply.body, reply.headers, delay=self.slow_seconds)
        if fault is TcFault.ACCEPT_HANG:
            return Reply.hang()
        if self.latency:
            return Reply(reply.status, reply.body, reply.headers, delay=self.latency)
        return reply

    def _authenticate(self, request: RecordedRequest, service: str) -> Reply | None:
        m = AUTH.match(request.headers.get("Authorization", ""))
        if m is None:
            return _error("AuthFailure.SignatureFailure", "Authorization is malformed")
        if m["id"] not in self.keys:
            return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found")
        if m["signed"] != "content-type;host" or m["service"] != service:
            return _error("AuthFailure.SignatureFailure", "signed headers or service")
        try:
            stamp = int(request.headers.get("X-TC-Timestamp", ""))
        except ValueError:
            return _error("AuthFailure.SignatureFailure", "X-TC-Timestamp")
        if abs(self.clock().timestamp() - stamp) > SKEW:
            return _error("AuthFailure.SignatureExpire", "signature expired: clock skew")
        if dt.datetime.fromtimestamp(stamp, tz=dt.UTC).date().isoformat() != m["date"]:
            return _error("AuthFailure.SignatureFailure", "credential date")
        wanted = expected_signature(
            self.keys[m["id"]],
            service,
            request.headers.get("Host", ""),
            stamp,
            request.body,
            request.headers.get("Content-Type", ""),
        )
        if not hmac.compare_digest(wanted, m["sig"]):
            return _error(
                "AuthFailure.SignatureFailure", "The provided credentials could not be validated."
            )
        return None

    def _send(self, body: dict[str, Any]) -> Reply:
        phones = body.get("PhoneNumberSet") or []
        if body.get("SmsSdkAppId") != self.app_id:
            return _error("UnauthorizedOperation.SmsSdkAppIdVerifyFail")
        if len(phones) > 200:
            return _error("LimitExceeded.PhoneNumberCountLimit", "over 200 numbers")
        if not body.get("SignName") or not body.get("TemplateId"):
            return _error("MissingParameter", "SignName, TemplateId")
        now = self.clock()
        content = json.dumps([body["TemplateId"], body.get("TemplateParamSet")])
        session = str(body.get("SessionContext", ""))
        statuses = []
        with self._state:
            for raw in phones:
                m = MOBILE.match(str(raw))
                phone = f"+86{m[1]}" if m else str(raw)
                code = self.number_codes.get(phone) or (
                    None if m else "InvalidParameterValue.IncorrectPhoneNumber"
                )
                times = self._times.setdefault((phone, ""), [])
                same = self._times.setdefault((phone, content), [])
                if code is None and any((now - t).total_seconds() < 30 for t in same):
                    code = "LimitExceeded.PhoneNumberThirtySecondLimit"
                today = [
                    t
                    for t in times
                    if t.astimezone(dt.timezone(dt.timedelta(hours=8))).date()
                    == now.astimezone(dt.timezone(dt.timedelta(hours=8))).date()
                ]
                if code is None and len(today) >= self.day_cap:
                    code = "LimitExceeded.PhoneNumberDailyLimit"
                if code is not None:
                    statuses.append(
                        {
                            "SerialNo": "",
                            "PhoneNumber": phone,
                            "Fee": 0,
                            "SessionContext": session,
                            "Code": code,
                            "Message": code,
                            "IsoCode": "CN",
                        }
                    )
                    continue
                serial = f"2433:{next(self._serial):010d}"
                times.append(now)
                same.append(now)
                self.received[phone] += 1
                self._by_session[(phone, session)] += 1
                sent = SentTencent(
                    serial,
                    phone,
                    session,
                    str(body["TemplateId"]),
                    list(body.get("TemplateParamSet") or []),
                    now,
                )
                self.sent.append(sent)
                self._receipt(sent)
                statuses.append(
                    {
                        "SerialNo": serial,
                        "PhoneNumber": phone,
                        "Fee": 1,
                        "SessionContext": session,
                        "Code": "Ok",
                        "Message": "send success",
                        "IsoCode": "CN",
                    }
                )
        return Reply.json({"Response": {"SendStatusSet": statuses, "RequestId": "fake"}})

    def _receipt(self, s: SentTencent) -> None:
        status, desc = self.receipt_status.get(s.phone, ("SUCCESS", "DELIVRD"))
        item = {
            "UserReceiveTime": f"{s.at.astimezone(dt.timezone(dt.timedelta(hours=8))):%Y-%m-%d %H:%M:%S}",
            "CountryCode": "86",
            "SubscriberNumber": s.phone.removeprefix("+86"),
            "PhoneNumber": s.phone,
            "SerialNo": s.serial,
            "ReportStatus": status,
            "Description": desc,
            "SessionContext": s.session,
        }
        self._queue.append(item)
        self._history.setdefault(s.phone, []).append({**item, "_at": s.at})

    def _pull(self, body: dict[str, Any]) -> Reply:
        limit = int(body.get("Limit", 0))
        if not 1 <= limit <= 100 or body.get("SmsSdkAppId") != self.app_id:
            return _error("InvalidParameterValue", "Limit 1-100, SmsSdkAppId")
        with self._state:
            items = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            for i in items:
                self.pulled[i["SerialNo"]] += 1
        return Reply.json({"Response": {"PullSmsSendStatusSet": items, "RequestId": "fake"}})

    def _pull_number(self, body: dict[str, Any]) -> Reply:
        limit = int(body.get("Limit", 0))
        begin = int(body.get("BeginTime", 0))
        end = int(body.get("EndTime", 0) or self.clock().timestamp())
        if not 1 <= limit <= 100 or body.get("SmsSdkAppId") != self.app_id:
            return _error("InvalidParameterValue", "Limit 1-100, SmsSdkAppId")
        if self.clock().timestamp() - begin > 7 * 86400:
            return _error("InvalidParameterValue.TimeRangeExceeds", "BeginTime over 7 days ago")
        m = MOBILE.match(str(body.get("PhoneNumber", "")))
        phone = f"+86{m[1]}" if m else ""
        offset = int(body.get("Offset", 0))
        with self._state:
            found = [
                {k: v for k, v in i.items() if k != "_at"}
                for i in self._history.get(phone, [])
                if begin <= i["_at"].timestamp() <= end
            ]
        return Reply.json(
            {
                "Response": {
                    "PullSmsSendStatusSet": found[offset : offset + limit],
                    "RequestId": "fake",
                }
            }
        )

    def _voice(self, body: dict[str, Any]) -> Reply:
        if body.get("VoiceSdkAppid") != self.voice_app_id:
            return _error("UnauthorizedOperation.SdkAppIdIsDisabled")
        number = str(body.get("CalledNumber", ""))
        m = MOBILE.match(number)
        if m is None or not number.startswith("+86"):
            return _error("InvalidParameterValue.IncorrectPhoneNumber", "mainland mobiles only")
        code = self.number_codes.get(number)
        if code:
            return _error(code)
        session = str(body.get("SessionContext", ""))
        with self._state:
            call_id = f"vms-{next(self._serial):010d}"
            self.received[number] += 1
            self._by_session[(number, session)] += 1
            self.sent.append(
                SentTencent(
                    call_id,
                    number,
                    session,
                    str(body.get("TemplateId")),
                    list(body.get("TemplateParamSet") or []),
                    self.clock(),
                    voice=True,
                )
            )
        return Reply.json(
            {
                "Response": {
                    "SendStatus": {"CallId": call_id, "SessionContext": session},
                    "RequestId": "fake",
                }
            }
        )
