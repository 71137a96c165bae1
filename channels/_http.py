"""Shared steps of the HTTP channels (`webhook`, `sms-http`): body templates, success rules,
error-code classes, Retry-After, and telling a refused connection from a lost answer.

A private helper module (not a plugin): import it as `broadcaster.channels._http`.
"""

from __future__ import annotations

import email.utils
import re
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import Field, model_validator

from broadcaster.channel import ChannelSettings, ErrorClass

if TYPE_CHECKING:
    import requests

__all__ = [
    "PLACEHOLDER",
    "TEMPLATES",
    "ErrorCodes",
    "SuccessRule",
    "before_sending",
    "dig",
    "fill",
    "http_url",
    "retry_after",
]

# templates come from offices, not programmers: sandboxed, and a missing name is an error
TEMPLATES = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
PLACEHOLDER = re.compile(r"\{(\w+)\}")


class SuccessRule(ChannelSettings):
    """HTTP 2xx alone is never success: the body must say so."""

    json_path: str | None = None  # dotted path into the JSON body, e.g. "errcode" or "result.code"
    equals: Any = None  # the value that means success at json_path
    regex: str | None = None  # or: a pattern the body text must match
    id_path: str | None = None  # where the provider's message id is, if any

    @model_validator(mode="after")
    def _something(self) -> SuccessRule:
        if not self.json_path and not self.regex:
            raise ValueError(
                "需要成功判定 expected json_path (with equals) or regex: HTTP 200 alone is never success"
            )
        return self


class ErrorCodes(ChannelSettings):
    """Values at `success.json_path` that mean a failure of a known kind (others: content)."""

    throttled: list[Any] = Field(default_factory=list)  # slow down, try again later
    retryable: list[Any] = Field(default_factory=list)  # the provider did nothing: safe to resend
    recipient: list[Any] = Field(default_factory=list)  # this recipient can never get it
    optout: list[Any] = Field(default_factory=list)  # unsubscribed: suppressed for good
    config: list[Any] = Field(default_factory=list)  # bad key or signature: the channel is wrong

    def classify(self, value: Any) -> ErrorClass:
        for name, cls in (
            ("throttled", ErrorClass.THROTTLED),
            ("retryable", ErrorClass.TRANSIENT),
            ("recipient", ErrorClass.RECIPIENT),
            ("optout", ErrorClass.OPTOUT),
            ("config", ErrorClass.CONFIG),
        ):
            if value in getattr(self, name):
                return cls
        return ErrorClass.CONTENT


def http_url(v: str | None) -> str | None:
    """`v` when it is an http(s) URL with a host and a valid port (None passes)."""
    if v is None:
        return v
    m = re.match(r"^https?://(\[[^\]]*\]|[^/:?#{}]*)(?::([^/?#]*))?", v)
    if m is None or not m.group(1):
        raise ValueError(
            f"地址须以 http:// 或 https:// 开头 expected an http(s) URL with a host; got {v!r}"
        )
    port = m.group(2)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"端口无效 expected a port 1-65535; got {port!r} in {v!r}")
    return v


def fill(template: str, values: dict[str, str]) -> str:
    """Replace {name} placeholders whose name is in values; leave the rest as written."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path ("result.code", "items.0.id"); KeyError when absent."""
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise KeyError(path)
    return data


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date); None when unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        date = response.headers.get("Date")
        now = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
    return max(0.0, (parsed - now).total_seconds()) if now else None


def before_sending(exc: Exception) -> bool:
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
