"""Fake cloud speech services: Aliyun (CreateToken + RESTful TTS) and Tencent Cloud TextToVoice.

Each checks the signature itself, written here independently of the product's signer
(channels.md §2 and §3), and answers with real WAV audio (a tone whose length follows
the text, 0.2 s a character), so the product's processing runs on what came back.

* `AliyunSpeechFake`: `GET /` CreateToken (V1 HMAC-SHA1 over the sorted query; 400
  `SignatureDoesNotMatch` otherwise; a reused nonce is `SignatureNonceUsed`) gives a
  token valid `token_seconds`; `POST /stream/v1/tts` needs that token and appkey, refuses
  text over 300 characters (`status` 40000004), answers `audio/wav`.
* `TencentSpeechFake`: `POST /` with TC3-HMAC-SHA256 (`AuthFailure.SignatureFailure`;
  `AuthFailure.SignatureExpire` when the timestamp is more than 5 min off the fake's
  `now`), `X-TC-Action: TextToVoice`, at most 150 characters
  (`InvalidParameterValue.TextTooLong`), answers base64 WAV in `Response.Audio`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from urllib.parse import quote

from broadcaster.audio.process import wav_bytes
from tests.audio.helpers import tone

from .http import FakeHTTPServer, RecordedRequest, Reply

__all__ = ["AliyunSpeechFake", "TencentSpeechFake"]


def _speech_wav(text: str, rate: int) -> bytes:
    return wav_bytes(tone(0.2 * len(text), rate=rate, level=0.2, freq=220.0))


class AliyunSpeechFake(FakeHTTPServer):
    def __init__(self, key_id: str, secret: str, appkey: str, now: dt.datetime) -> None:
        super().__init__()
        self.key_id, self.secret, self.appkey, self.now = key_id, secret, appkey, now
        self.token_seconds = 3600
        self.tokens: dict[str, float] = {}
        self.nonces: set[str] = set()
        self.texts: list[str] = []

    def _signed(self, query: dict[str, list[str]]) -> bool:
        params = {k: v[0] for k, v in query.items() if k != "Signature"}

        def pe(s: str) -> str:
            return quote(s, safe="~")

        canonical = "&".join(f"{pe(k)}={pe(params[k])}" for k in sorted(params))
        to_sign = "GET&%2F&" + pe(canonical)
        mac = hmac.new((self.secret + "&").encode(), to_sign.encode(), hashlib.sha1)
        return query.get("Signature", [""])[0] == base64.b64encode(mac.digest()).decode()

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/":
            q = request.query
            if q.get("Action") != ["CreateToken"] or q.get("AccessKeyId") != [self.key_id]:
                return Reply.json({"Code": "InvalidAccessKeyId.NotFound"}, 404)
            if not self._signed(q):
                return Reply.json({"Code": "SignatureDoesNotMatch"}, 400)
            nonce = q["SignatureNonce"][0]
            if nonce in self.nonces:
                return Reply.json({"Code": "SignatureNonceUsed"}, 400)
            self.nonces.add(nonce)
            token = f"token-{len(self.tokens) + 1}"
            expires = self.now.timestamp() + self.token_seconds
            self.tokens[token] = expires
            return Reply.json({"Token": {"Id": token, "ExpireTime": int(expires)}})
        if request.method == "POST" and request.path == "/stream/v1/tts":
            body = request.json()
            token = body.get("token")
            if token not in self.tokens or self.tokens[token] < self.now.timestamp():
                return Reply.json({"status": 40000001, "message": "The token is invalid!"}, 400)
            if body.get("appkey") != self.appkey:
                return Reply.json({"status": 40020105, "message": "APPKEY_NOT_EXIST"}, 400)
            text = body.get("text", "")
            if len(text) > 300:
                return Reply.json({"status": 40000004, "message": "text too long"}, 400)
            self.texts.append(text)
            return Reply(200, _speech_wav(text, body["sample_rate"]), {"Content-Type": "audio/wav"})
        return Reply(404, "not found")


class TencentSpeechFake(FakeHTTPServer):
    def __init__(self, secret_id: str, secret_key: str, now: dt.datetime) -> None:
        super().__init__()
        self.secret_id, self.secret_key, self.now = secret_id, secret_key, now
        self.texts: list[str] = []

    def _error(self, code: str) -> Reply:
        return Reply.json(
            {"Response": {"Error": {"Code": code, "Message": code}, "RequestId": "r"}}
        )

    def _expected(self, request: RecordedRequest, timestamp: int) -> str:
        host = request.headers.get("Host", "")
        content_type = request.headers.get("Content-Type", "")
        canonical = "\n".join(
            [
                "POST",
                "/",
                "",
                f"content-type:{content_type}",
                f"host:{host}",
                "",
                "content-type;host",
                hashlib.sha256(request.body).hexdigest(),
            ]
        )
        date = dt.datetime.fromtimestamp(timestamp, dt.UTC).date().isoformat()
        string = "\n".join(
            [
                "TC3-HMAC-SHA256",
                str(timestamp),
                f"{date}/tts/tc3_request",
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = ("TC3" + self.secret_key).encode()
        for part in (date, "tts", "tc3_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, string.encode(), hashlib.sha256).hexdigest()
        return (
            f"TC3-HMAC-SHA256 Credential={self.secret_id}/{date}/tts/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        )

    def handle(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/":
            return Reply(404, "not found")
        if request.headers.get("X-TC-Action") != "TextToVoice":
            return self._error("InvalidAction")
        timestamp = int(request.headers.get("X-TC-Timestamp", "0"))
        if request.headers.get("Authorization") != self._expected(request, timestamp):
            return self._error("AuthFailure.SignatureFailure")
        if abs(timestamp - self.now.timestamp()) > 300:
            return self._error("AuthFailure.SignatureExpire")
        body = json.loads(request.body)
        text = body["Text"]
        if len(text) > 150:
            return self._error("InvalidParameterValue.TextTooLong")
        self.texts.append(text)
        audio = base64.b64encode(_speech_wav(text, body["SampleRate"])).decode()
        return Reply.json(
            {"Response": {"Audio": audio, "SessionId": body["SessionId"], "RequestId": "r"}}
        )
