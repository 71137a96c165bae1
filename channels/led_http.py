"""The generic HTTP push bridge for LED playlists (bridge `http`).

PUTs (or POSTs) each screen's playlist, as JSON or as text in the screen's charset, to
`url` with `{screen}` replaced by the screen id; a bearer token from the environment
goes in the Authorization header. Success is a 2xx whose JSON body, when one is
configured, has `success.json_path` equal to `success.equals`. 401/403 are
configuration errors; 429, 5xx, refused and timeouts are retried on the next push.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from broadcaster.led.bridge import PushResult
from broadcaster.led.playlist import Playlist

__all__ = ["HttpPushBridge", "HttpPushOptions"]


class SuccessRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    json_path: str
    equals: Any = None


class HttpPushOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(pattern=r"^https?://[^/\s]+")  # may contain {screen}
    method: Literal["PUT", "POST"] = "PUT"
    format: Literal["json", "text"] = "json"
    token_env: str | None = None  # the bearer token's environment variable
    success: SuccessRule | None = None  # beyond a 2xx status
    timeout: tuple[float, float] = (5.0, 15.0)


class HttpPushBridge:
    name: ClassVar[str] = "http"
    Options: ClassVar[type[BaseModel]] = HttpPushOptions

    def __init__(self, options: dict[str, Any], http: Any, environ: dict[str, str]) -> None:
        self.options = HttpPushOptions.model_validate(options)
        self.http = http
        self.token = environ.get(self.options.token_env) if self.options.token_env else None

    def check(self) -> str | None:
        if self.options.token_env and self.token is None:
            return f"缺少环境变量 environment variable {self.options.token_env} not set"
        return None

    def push(self, playlist: Playlist, body: bytes, media_type: str) -> PushResult:
        import requests  # here: `validate` loads this class without any network library

        url = self.options.url.replace("{screen}", playlist.screen.id)
        headers = {"Content-Type": media_type, "X-Playlist-Version": playlist.version}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.http.request(
                self.options.method, url, data=body, headers=headers, timeout=self.options.timeout
            )
        except requests.ConnectionError as exc:
            return PushResult(False, True, f"连接失败 connection failed: {type(exc).__name__}")
        except requests.Timeout:
            return PushResult(False, True, "超时 timed out")
        status = response.status_code
        if status in (401, 403):
            return PushResult(False, False, f"HTTP {status}: 令牌被拒绝 the token was refused")
        if status == 429 or status >= 500:
            return PushResult(False, True, f"HTTP {status}")
        if not 200 <= status < 300:
            return PushResult(False, False, f"HTTP {status}")
        rule = self.options.success
        if rule is not None:
            try:
                value: Any = response.json()
                for part in rule.json_path.split("."):
                    value = value[part]
            except (ValueError, KeyError, TypeError, IndexError):
                return PushResult(
                    False, False, f"应答无法识别 unreadable answer: no {rule.json_path}"
                )
            if value != rule.equals:
                return PushResult(
                    False, False, f"{rule.json_path} = {json.dumps(value, ensure_ascii=False)}"
                )
        return PushResult(True)
