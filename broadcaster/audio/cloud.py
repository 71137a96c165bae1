"""Cloud speech synthesis for offices that want natural voices: Aliyun and Tencent Cloud.

* **Aliyun** (Intelligent Speech Interaction, RESTful TTS): a token from `CreateToken`
  (`nls-meta`, RPC style, API version 2019-02-28, signature V1 HMAC-SHA1 as for SMS,
  channels.md §2), then `POST {gateway}/stream/v1/tts` with JSON `appkey, token, text,
  format=wav, sample_rate, voice, volume, speech_rate, pitch_rate`; audio comes back
  with an `audio/*` Content-Type, an error as JSON (`status`, `message`). At most 300
  characters per request: longer scripts are split at sentence ends and joined.
* **Tencent Cloud** (TTS, API 3.0 `TextToVoice`, version 2019-08-23, TC3-HMAC-SHA256 as for
  SMS, channels.md §3): JSON `Text, SessionId, VoiceType, Codec=wav, SampleRate, Speed,
  Volume, PrimaryLanguage=1`; `Response.Audio` is base64 WAV, `Response.Error` a failure.
  At most 150 characters per request.

Both take their HTTP session from the channel (base URLs are settings: tests aim them at
local fakes) and their keys from environment variables.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import Field

from broadcaster.audio.engines import Speech, read_wav
from broadcaster.channel import ChannelSettings, EnvSecret
from broadcaster.errors import AudioError

if TYPE_CHECKING:
    import requests

__all__ = [
    "AliyunEngine",
    "AliyunTtsSettings",
    "TencentEngine",
    "TencentTtsSettings",
    "aliyun_signature",
    "split_text",
    "tc3_authorization",
]


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut after a sentence or clause mark if possible."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind(m) for m in "。！？；!?;")
        if cut < limit // 3:
            cut = max(window.rfind(m) for m in "，、,：:")
        cut = cut + 1 if cut >= limit // 3 else limit
        pieces.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        pieces.append(rest)
    return pieces


def _join(parts: list[Speech]) -> Speech:
    import numpy as np

    rates = {p.rate for p in parts}
    if len(rates) != 1:
        raise AudioError(
            f"语音片段采样率不一致 pieces came back at different rates: {sorted(rates)}"
        )
    return Speech(np.concatenate([p.samples for p in parts]), parts[0].rate)


# -- Aliyun ---------------------------------------------------------------------------------------


def _pe(value: str) -> str:
    return quote(value, safe="~")


def aliyun_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """RPC signature V1: HMAC-SHA1 over METHOD&%2F&pe(sorted canonical query), key secret + '&'."""
    canonical = "&".join(f"{_pe(k)}={_pe(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_pe('/')}&{_pe(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunTtsSettings(ChannelSettings):
    appkey: str
    access_key_id: EnvSecret
    access_key_secret: EnvSecret
    voice: str = "xiaoyun"
    sample_rate: int = 16000
    volume: int = Field(default=50, ge=0, le=100)
    speech_rate: int = Field(default=0, ge=-500, le=500)
    pitch_rate: int = Field(default=0, ge=-500, le=500)
    gateway_url: str = "https://nls-gateway-cn-shanghai.aliyuncs.com"
    token_url: str = "https://nls-meta.cn-shanghai.aliyuncs.com"
    region: str = "cn-shanghai"
    timeout: tuple[float, float] = (5.0, 60.0)


class AliyunEngine:
    """Aliyun Intelligent Speech Interaction, RESTful text-to-speech."""

    name = "aliyun"
    max_chars = 300

    def __init__(
        self,
        settings: AliyunTtsSettings,
        http: requests.Session,
        clock: Callable[[], dt.datetime] | None = None,
    ):
        self.settings = settings
        self.http = http
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._token: tuple[str, float] | None = None

    def identity(self) -> str:
        s = self.settings
        return (
            f"aliyun-nls appkey={s.appkey} voice={s.voice} rate={s.sample_rate}"
            f" volume={s.volume} speech={s.speech_rate} pitch={s.pitch_rate}"
        )

    def check(self) -> str | None:
        missing = [
            s.env
            for s in (self.settings.access_key_id, self.settings.access_key_secret)
            if s.value is None
        ]
        if missing:
            return f"缺少环境变量 environment variable {', '.join(missing)} not set"
        return None

    def _token_id(self) -> str:
        now = self.clock()
        if self._token is not None and self._token[1] - 60 > now.timestamp():
            return self._token[0]
        s = self.settings
        params = {
            "AccessKeyId": s.access_key_id.get(),
            "Action": "CreateToken",
            "Format": "JSON",
            "RegionId": s.region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "Timestamp": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2019-02-28",
        }
        params["Signature"] = aliyun_signature("GET", params, s.access_key_secret.get())
        response = self.http.get(s.token_url.rstrip("/") + "/", params=params, timeout=s.timeout)
        try:
            token = response.json()["Token"]
            value = (str(token["Id"]), float(token["ExpireTime"]))
        except (ValueError, KeyError, TypeError):
            code = _json_field(response, "Code")
            raise AudioError(
                f"阿里云令牌获取失败 Aliyun CreateToken failed: HTTP {response.status_code} {code}"
            ) from None
        self._token = value
        return value[0]

    def _piece(self, text: str) -> Speech:
        s = self.settings
        body = {
            "appkey": s.appkey,
            "token": self._token_id(),
            "text": text,
            "format": "wav",
            "sample_rate": s.sample_rate,
            "voice": s.voice,
            "volume": s.volume,
            "speech_rate": s.speech_rate,
            "pitch_rate": s.pitch_rate,
        }
        response = self.http.post(
            s.gateway_url.rstrip("/") + "/stream/v1/tts", json=body, timeout=s.timeout
        )
        kind = response.headers.get("Content-Type", "")
        if response.status_code == 200 and kind.startswith("audio/"):
            return read_wav(response.content)
        message = _json_field(response, "message")
        raise AudioError(
            f"阿里云语音合成失败 Aliyun TTS failed: HTTP {response.status_code} {message}"
        )

    def synthesise(self, text: str) -> Speech:
        return _join([self._piece(p) for p in split_text(text, self.max_chars)])


# -- Tencent Cloud ---------------------------------------------------------------------------------


def tc3_authorization(
    secret_id: str,
    secret_key: str,
    *,
    host: str,
    service: str,
    timestamp: int,
    body: bytes,
    content_type: str = "application/json; charset=utf-8",
) -> str:
    """The TC3-HMAC-SHA256 Authorization header of a POST to `/` with this exact body."""
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical = (
        f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\ncontent-type;host\n{payload_hash}"
    )
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    to_sign = (
        f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n" + hashlib.sha256(canonical.encode()).hexdigest()
    )

    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = sign(sign(sign(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


class TencentTtsSettings(ChannelSettings):
    secret_id: EnvSecret
    secret_key: EnvSecret
    voice_type: int = 101001  # a standard Mandarin voice
    sample_rate: int = 16000
    speed: float = Field(default=0, ge=-2, le=6)
    volume: float = Field(default=0, ge=-10, le=10)
    region: str = "ap-guangzhou"
    url: str = "https://tts.tencentcloudapi.com"
    host: str = "tts.tencentcloudapi.com"  # the signed Host (the real one when url is a proxy)
    timeout: tuple[float, float] = (5.0, 60.0)


class TencentEngine:
    """Tencent Cloud TTS `TextToVoice`."""

    name = "tencent"
    max_chars = 150

    def __init__(
        self,
        settings: TencentTtsSettings,
        http: requests.Session,
        clock: Callable[[], dt.datetime] | None = None,
    ):
        self.settings = settings
        self.http = http
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def identity(self) -> str:
        s = self.settings
        return (
            f"tencent-tts voice={s.voice_type} rate={s.sample_rate}"
            f" speed={s.speed:g} volume={s.volume:g}"
        )

    def check(self) -> str | None:
        missing = [
            s.env for s in (self.settings.secret_id, self.settings.secret_key) if s.value is None
        ]
        if missing:
            return f"缺少环境变量 environment variable {', '.join(missing)} not set"
        return None

    def _piece(self, text: str) -> Speech:
        s = self.settings
        body = json.dumps(
            {
                "Text": text,
                "SessionId": str(uuid.uuid4()),
                "VoiceType": s.voice_type,
                "Codec": "wav",
                "SampleRate": s.sample_rate,
                "Speed": s.speed,
                "Volume": s.volume,
                "PrimaryLanguage": 1,
            },
            ensure_ascii=False,
        ).encode("utf-8")  # serialised once: the signature covers these exact bytes
        timestamp = int(self.clock().timestamp())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Host": s.host,
            "X-TC-Action": "TextToVoice",
            "X-TC-Version": "2019-08-23",
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": s.region,
            "Authorization": tc3_authorization(
                s.secret_id.get(),
                s.secret_key.get(),
                host=s.host,
                service="tts",
                timestamp=timestamp,
                body=body,
            ),
        }
        response = self.http.post(s.url, data=body, headers=headers, timeout=s.timeout)
        try:
            answer = response.json()["Response"]
        except (ValueError, KeyError, TypeError):
            raise AudioError(
                f"腾讯云语音合成应答无法读取 Tencent TTS answer unreadable: HTTP {response.status_code}"
            ) from None
        if "Error" in answer:
            error = answer["Error"]
            raise AudioError(
                f"腾讯云语音合成失败 Tencent TTS failed: {error.get('Code')}: {error.get('Message')}"
            )
        try:
            return read_wav(base64.b64decode(answer["Audio"]))
        except (KeyError, ValueError) as exc:
            raise AudioError(f"腾讯云返回的音频无效 Tencent TTS audio invalid: {exc}") from None

    def synthesise(self, text: str) -> Speech:
        return _join([self._piece(p) for p in split_text(text, self.max_chars)])


def _json_field(response: requests.Response, name: str) -> str:
    try:
        return str(response.json().get(name, ""))[:120]
    except (ValueError, AttributeError):
        return response.text[:60]
