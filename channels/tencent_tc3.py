"""Tencent Cloud API 3.0 calls (SMS, VMS): TC3-HMAC-SHA256 signing and error classes.

Shared by `tencent-sms` and `voice-call` (provider: tencent); not a plugin itself.
Signing follows the vendor's steps (`/work/shared/channels.md` §3): the exact body
bytes are hashed once, the canonical request signs `content-type` and `host`, the
date is the UTC date of the timestamp, the key is derived TC3+secret → date →
service → "tc3_request".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from broadcaster.vocab import ErrorClass

if TYPE_CHECKING:
    import requests

__all__ = ["TencentAnswer", "TencentClient", "classify", "tc3_signature"]

CONTENT_TYPE = "application/json; charset=utf-8"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def canonical_request(host: str, body: bytes, content_type: str = CONTENT_TYPE) -> str:
    payload = hashlib.sha256(body).hexdigest()
    return f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\ncontent-type;host\n{payload}"


def tc3_signature(
    secret_key: str,
    service: str,
    host: str,
    timestamp: int,
    body: bytes,
    content_type: str = CONTENT_TYPE,
) -> str:
    """The hex signature of one POST with `body` to `host` at `timestamp` (Unix seconds)."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    hashed = hashlib.sha256(canonical_request(host, body, content_type).encode()).hexdigest()
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashed}"
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TencentAnswer:
    """One API answer: HTTP status, `Response` (None when the body is not JSON), text kept."""

    status: int
    response: dict[str, Any] | None
    text: str
    retry_after: float | None = None  # seconds, from a Retry-After header

    @property
    def error(self) -> tuple[str, str] | None:
        """(Code, Message) of a whole-call failure, else None."""
        err = (self.response or {}).get("Error")
        if isinstance(err, dict):
            return str(err.get("Code", "")), str(err.get("Message", ""))
        return None


class TencentClient:
    """Signs and POSTs API 3.0 calls to one endpoint for one service (sms, vms)."""

    def __init__(
        self,
        http: requests.Session,
        endpoint: str,
        service: str,
        version: str,
        secret_id: str,
        secret_key: Callable[[], str],
        clock: Callable[[], dt.datetime],
        region: str = "ap-guangzhou",
        timeout: tuple[float, float] = (5.0, 15.0),
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.host = urlsplit(endpoint).netloc
        self.service = service
        self.version = version
        self.secret_id = secret_id
        self._secret = secret_key
        self.clock = clock
        self.region = region
        self.timeout = timeout

    def headers(self, action: str, body: bytes) -> dict[str, str]:
        timestamp = int(self.clock().timestamp())
        date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
        signature = tc3_signature(self._secret(), self.service, self.host, timestamp, body)
        auth = (
            f"TC3-HMAC-SHA256 Credential={self.secret_id}/{date}/{self.service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        )
        return {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": self.version,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.region,
            "Authorization": auth,
        }

    def call(self, action: str, payload: Mapping[str, Any]) -> TencentAnswer:
        """POST one signed call; requests' exceptions pass through (the caller maps them)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        response = self.http.post(
            self.endpoint,
            data=body,
            headers=self.headers(action, body),
            timeout=self.timeout,
            allow_redirects=False,
        )
        text = response.text
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        inner = parsed.get("Response") if isinstance(parsed, dict) else None
        return TencentAnswer(
            response.status_code,
            inner if isinstance(inner, dict) else None,
            text[:500],
            _retry_after(response.headers.get("Retry-After")),
        )


def _until_tomorrow(now: dt.datetime, hour: int = 0) -> float:
    local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
    target = (local + dt.timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
    if hour and local.hour < hour:
        target = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return (target - local).total_seconds() + 60.0


# per-number throttles: (seconds or None for "until tomorrow")
NUMBER_LIMITS: dict[str, float | None] = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
    "LimitExceeded.PhoneNumberDailyLimit": None,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": None,
    "LimitExceeded.DeliveryFrequencyLimit": 30.0,
}
CONFIG_CODES = {
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "AuthFailure.SignatureFailure",
    "AuthFailure.SecretIdNotFound",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "UnauthorizedOperation.SerivceSuspendDueToArrears",
    "AuthFailure.SignatureExpire",
    "LimitExceeded.PhoneNumberCountLimit",
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
}
CONTENT_CODES = {
    "FailedOperation.ContainSensitiveWord",
    "InvalidParameterValue.ContentLengthLimit",
    "InvalidParameterValue.TemplateParameterLengthLimit",
    "InvalidParameterValue.TemplateParameterFormatError",
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter",
}
RECIPIENT_CODES = {
    "InvalidParameterValue.IncorrectPhoneNumber": ErrorClass.RECIPIENT,
    "FailedOperation.PhoneNumberInBlacklist": ErrorClass.OPTOUT,
}


@dataclass(frozen=True)
class Verdict:
    """What one error code comes to."""

    error_class: ErrorClass
    retry_after: float | None
    reason: str
    per_number: bool = False  # throttled for that number only: the rest of the batch goes on


def classify(code: str, message: str, now: dt.datetime) -> Verdict:
    """The class of a Tencent code, the same wherever it appears (call or per number)."""
    detail = f"{code}: {message}"[:200]
    if code in NUMBER_LIMITS:
        wait = NUMBER_LIMITS[code]
        wait = _until_tomorrow(now) if wait is None else wait
        return Verdict(
            ErrorClass.THROTTLED, wait, f"号码频率上限 per-number cap ({detail})", per_number=True
        )
    if code.startswith("RequestLimitExceeded"):
        return Verdict(ErrorClass.THROTTLED, 1.0, f"限流 throttled ({detail})")
    if code in ("LimitExceeded.AppDailyLimit", "LimitExceeded.DailyLimit") or (
        code.startswith("LimitExceeded") and code.endswith("DailyLimit")
    ):
        return Verdict(
            ErrorClass.THROTTLED, _until_tomorrow(now), f"账号日上限 daily cap ({detail})"
        )
    if code == "FailedOperation.MarketingSendTimeConstraint":
        return Verdict(
            ErrorClass.THROTTLED, _until_tomorrow(now, 8), f"营销时段 time window ({detail})"
        )
    if code in RECIPIENT_CODES:
        return Verdict(RECIPIENT_CODES[code], None, f"号码被拒 number refused ({detail})")
    if code == "AuthFailure.SignatureExpire":
        return Verdict(ErrorClass.CONFIG, None, f"时钟偏差 clock skew: fix the clock ({detail})")
    if code in CONFIG_CODES:
        return Verdict(ErrorClass.CONFIG, None, f"渠道配置错误 channel config ({detail})")
    if code in CONTENT_CODES:
        return Verdict(ErrorClass.CONTENT, None, f"内容被拒 content refused ({detail})")
    if code.startswith("InternalError"):
        return Verdict(ErrorClass.TRANSIENT, None, f"临时故障 transient ({detail})")
    return Verdict(ErrorClass.CONTENT, None, f"未知错误码 unknown code, alert ({detail})")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
