"""Aliyun RPC calls (Dysms SMS, Dyvms voice): signature V1 (HMAC-SHA1), error classes.

Shared by `aliyun-sms` and `voice-call` (provider: aliyun); not a plugin itself.
Signing follows the vendor's steps (`/work/shared/channels.md` §2): RFC 3986
percent-encoding (`quote(s, safe="~")`), parameters sorted by encoded name,
`StringToSign = METHOD&%2F&pe(query)`, `Base64(HMAC-SHA1(secret + "&", StringToSign))`.
Every request carries a fresh `SignatureNonce`, retries included.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from broadcaster.vocab import ErrorClass

if TYPE_CHECKING:
    import requests

__all__ = [
    "AliyunAnswer",
    "AliyunClient",
    "classify",
    "percent_encode",
    "sign_v1",
    "string_to_sign",
]


def percent_encode(value: str) -> str:
    """RFC 3986: keep A-Z a-z 0-9 - _ . ~, everything else %XX (space %20, * %2A)."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in encoded)


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign_v1(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The `Signature` of `params` (every parameter but Signature itself)."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class AliyunAnswer:
    """One RPC answer: HTTP status, the JSON body (None when not JSON), the text kept."""

    status: int
    body: dict[str, Any] | None
    text: str
    retry_after: float | None = None  # seconds, from a Retry-After header

    @property
    def code(self) -> str | None:
        return str(self.body.get("Code")) if self.body and "Code" in self.body else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.code == "OK"

    @property
    def message(self) -> str:
        return str((self.body or {}).get("Message", ""))


class AliyunClient:
    """Signs and POSTs RPC calls (form-urlencoded, Format=JSON) to one endpoint."""

    def __init__(
        self,
        http: requests.Session,
        endpoint: str,
        access_key_id: str,
        access_key_secret: Callable[[], str],
        version: str,
        clock: Callable[[], dt.datetime],
        region: str = "cn-hangzhou",
        timeout: tuple[float, float] = (5.0, 15.0),
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.version = version
        self.clock = clock
        self.region = region
        self.timeout = timeout

    def signed(self, action: str, params: Mapping[str, str]) -> dict[str, str]:
        """The full parameter set of one request, Signature included (a new nonce each time)."""
        now = self.clock().astimezone(dt.UTC)
        common = {
            "AccessKeyId": self.access_key_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": self.region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": self.version,
        }
        full = {**common, **params}
        full["Signature"] = sign_v1(self._secret(), "POST", full)
        return full

    def call(self, action: str, params: Mapping[str, str]) -> AliyunAnswer:
        """POST one signed call; requests' exceptions pass through (the caller maps them)."""
        body = canonical_query(self.signed(action, params))
        response = self.http.post(
            self.endpoint,
            data=body.encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=self.timeout,
            allow_redirects=False,
        )
        text = response.text
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return AliyunAnswer(
            response.status_code,
            parsed if isinstance(parsed, dict) else None,
            text[:500],
            _retry_after(response.headers.get("Retry-After")),
        )


# code -> class; the per-number codes are tried on each number of a refused batch
RECIPIENT_CODES = {
    "isv.MOBILE_NUMBER_ILLEGAL": ErrorClass.RECIPIENT,
    "isv.BLACK_KEY_CONTROL_LIMIT": ErrorClass.OPTOUT,
}
PER_NUMBER_CODES = {*RECIPIENT_CODES, "isv.BUSINESS_LIMIT_CONTROL"}
CONFIG_CODES = {
    "isv.SMS_SIGN_ILLEGAL",
    "isv.SIGN_STATE_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.DENY_IP_RANGE",
    "isp.RAM_PERMISSION_DENY",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId.NotFound",
    "InvalidTimeStamp.Expired",
    # quota and billing: the channel stops until someone acts
    "isv.DAY_LIMIT_CONTROL",
    "isv.MONTH_LIMIT_CONTROL",
    "isv.OUT_OF_SERVICE",
    "isv.AMOUNT_NOT_ENOUGH",
}
CONTENT_CODES = {
    "isv.SMS_CONTENT_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
}
TRANSIENT_CODES = {"isp.SYSTEM_ERROR", "SignatureNonceUsed"}


def limit_window(message: str, now: dt.datetime) -> float:
    """Seconds until a BUSINESS_LIMIT_CONTROL window ends, read from its message."""
    if "分钟" in message:
        return 60.0
    if "小时" in message:
        return 3600.0
    if "天" in message or "日" in message:
        local = now.astimezone(dt.timezone(dt.timedelta(hours=8)))
        midnight = (local + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - local).total_seconds() + 60.0
    return 60.0


def classify(answer: AliyunAnswer, now: dt.datetime) -> tuple[ErrorClass, float | None, str]:
    """(class, retry_after, reason) of a failed answer (an HTTP 200 with another Code too)."""
    code = answer.code or ""
    detail = f"{code}: {answer.message}"[:200] if code else f"HTTP {answer.status}"
    if answer.status == 429 or code in ("Throttling.User", "Throttling", "Throttling.Api"):
        return ErrorClass.THROTTLED, answer.retry_after or 1.0, f"限流 throttled ({detail})"
    if code == "isv.BUSINESS_LIMIT_CONTROL":
        wait = limit_window(answer.message, now)
        return ErrorClass.THROTTLED, wait, f"号码频率上限 per-number cap ({detail})"
    if code in RECIPIENT_CODES:
        return RECIPIENT_CODES[code], None, f"号码被拒 number refused ({detail})"
    if code == "InvalidTimeStamp.Expired":
        return ErrorClass.CONFIG, None, f"时钟偏差 clock skew: fix the clock ({detail})"
    if code in CONFIG_CODES:
        return ErrorClass.CONFIG, None, f"渠道配置错误 channel config ({detail})"
    if code in CONTENT_CODES:
        return ErrorClass.CONTENT, None, f"内容被拒 content refused ({detail})"
    if code in TRANSIENT_CODES:
        return ErrorClass.TRANSIENT, None, f"临时故障 transient ({detail})"
    if answer.status >= 500 or answer.body is None:
        what = "服务端错误 server error" if answer.status >= 500 else "应答不是 JSON not JSON"
        return ErrorClass.UNKNOWN, None, f"{what} ({detail}); 结果未知 outcome unknown"
    return ErrorClass.CONTENT, None, f"未知错误码 unknown code, alert ({detail})"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
