"""Cloud speech engines against local fakes that check the signatures as the providers do."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from broadcaster.audio.cloud import (
    AliyunEngine,
    AliyunTtsSettings,
    TencentEngine,
    TencentTtsSettings,
    aliyun_signature,
    split_text,
    tc3_authorization,
)
from broadcaster.channel import Message, MessageKind
from broadcaster.channels.loudspeaker import LoudspeakerChannel, LoudspeakerSettings
from broadcaster.engine.artefacts import FileArtefactStore
from broadcaster.engine.http import channel_context
from broadcaster.errors import AudioError
from tests.audio.helpers import decode
from tests.fakes.http import serving
from tests.fakes.speech_cloud import AliyunSpeechFake, TencentSpeechFake

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
ENV = {
    "ALI_ID": "ali-id",
    "ALI_SECRET": "ali-Canary-secret",
    "TC_ID": "tc-id",
    "TC_KEY": "tc-Canary-key",
}
LONG = (
    "乡亲们请注意！" + "陌生电话让您转账汇款，一律是诈骗，请马上挂断。" * 14
)  # over 300 characters


def test_aliyun_signature_matches_the_official_example() -> None:
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert aliyun_signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_tc3_signature_matches_the_official_example() -> None:
    body = (
        b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
    )
    header = tc3_authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        host="cvm.tencentcloudapi.com",
        service="cvm",
        timestamp=1551113065,
        body=body,
    )
    assert header.endswith(
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )
    assert "Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request" in header


def test_split_text_cuts_at_sentence_ends() -> None:
    pieces = split_text(LONG, 150)
    assert "".join(pieces) == LONG
    assert all(len(p) <= 150 for p in pieces)
    assert all(p.endswith(("。", "！")) for p in pieces[:-1])


@pytest.fixture
def aliyun() -> Iterator[AliyunSpeechFake]:
    yield from serving(AliyunSpeechFake("ali-id", ENV["ALI_SECRET"], "app-1", NOW))


@pytest.fixture
def tencent() -> Iterator[TencentSpeechFake]:
    yield from serving(TencentSpeechFake("tc-id", ENV["TC_KEY"], NOW))


def aliyun_settings(fake: AliyunSpeechFake, **kw: object) -> AliyunTtsSettings:
    data = {
        "appkey": "app-1",
        "access_key_id": {"env": "ALI_ID"},
        "access_key_secret": {"env": "ALI_SECRET"},
        "gateway_url": fake.url,
        "token_url": fake.url,
        **kw,
    }
    return AliyunTtsSettings.model_validate(data, context={"environ": ENV})


def tencent_settings(fake: TencentSpeechFake, environ: dict[str, str] = ENV) -> TencentTtsSettings:
    data = {"secret_id": {"env": "TC_ID"}, "secret_key": {"env": "TC_KEY"}, "url": fake.url}
    return TencentTtsSettings.model_validate(data, context={"environ": environ})


def test_aliyun_engine_gets_a_token_then_speech(aliyun: AliyunSpeechFake) -> None:
    with requests.Session() as http:
        engine = AliyunEngine(aliyun_settings(aliyun), http, lambda: NOW)
        speech = engine.synthesise(LONG)
        assert speech.rate == 16000
        assert len(aliyun.texts) == 2 and "".join(aliyun.texts) == LONG  # split under 300
        assert speech.seconds == pytest.approx(0.2 * len(LONG), abs=0.1)
        engine.synthesise("你好")
        assert len(aliyun.tokens) == 1  # the token is reused until it nearly expires
        aliyun.tokens.clear()  # the service forgot it: the failure is reported, not hidden
        with pytest.raises(AudioError, match=r"Aliyun TTS failed: HTTP 400 The token is invalid!"):
            engine.synthesise("你好")


def test_aliyun_refuses_a_bad_signature(aliyun: AliyunSpeechFake) -> None:
    aliyun.secret = "another"
    with requests.Session() as http:
        engine = AliyunEngine(aliyun_settings(aliyun), http, lambda: NOW)
        with pytest.raises(AudioError) as caught:
            engine.synthesise("你好")
    assert str(caught.value) == (
        "阿里云令牌获取失败 Aliyun CreateToken failed: HTTP 400 SignatureDoesNotMatch"
    )
    assert ENV["ALI_SECRET"] not in str(caught.value)


def test_tencent_engine_signs_and_splits(tencent: TencentSpeechFake) -> None:
    with requests.Session() as http:
        speech = TencentEngine(tencent_settings(tencent), http, lambda: NOW).synthesise(LONG)
    assert all(len(t) <= 150 for t in tencent.texts) and "".join(tencent.texts) == LONG
    assert speech.seconds == pytest.approx(0.2 * len(LONG), abs=0.1)


def test_tencent_refuses_a_wrong_key_and_a_skewed_clock(tencent: TencentSpeechFake) -> None:
    with requests.Session() as http:
        wrong = tencent_settings(tencent, {**ENV, "TC_KEY": "wrong"})
        with pytest.raises(AudioError, match=r"AuthFailure\.SignatureFailure"):
            TencentEngine(wrong, http, lambda: NOW).synthesise("你好")
        late = lambda: NOW + dt.timedelta(minutes=6)  # noqa: E731
        with pytest.raises(AudioError, match=r"AuthFailure\.SignatureExpire"):
            TencentEngine(tencent_settings(tencent), http, late).synthesise("你好")


def test_the_channel_speaks_through_a_cloud_engine(
    tencent: TencentSpeechFake, tmp_path: Path
) -> None:
    settings = LoudspeakerSettings.model_validate(
        {
            "engine": "tencent",
            "tencent": {
                "secret_id": {"env": "TC_ID"},
                "secret_key": {"env": "TC_KEY"},
                "url": tencent.url,
            },
        },
        context={"environ": ENV},
    )
    context = channel_context(
        "speakers", concurrency=1, clock=lambda: NOW, data_dir=tmp_path, base_dir=tmp_path
    )
    channel = LoudspeakerChannel(settings, context)
    assert channel.check() is None
    message = Message(MessageKind.LOUDSPEAKER, "请拨打96110咨询。", "loudspeaker/a.j2", "0" * 64)
    (mp3,) = channel.prepare(message, FileArtefactStore(tmp_path / "a")).artefacts
    assert tencent.texts == ["请拨打九六幺幺零咨询。"]  # the normalised text went to the cloud
    decoded = decode(mp3.path)
    assert decoded.seconds == pytest.approx(0.2 * 11 + 2 * 1.6 + 0.5, abs=0.2)
    unset = dataclasses.replace(context)
    no_keys = LoudspeakerSettings.model_validate(settings.model_dump(), context={"environ": {}})
    assert LoudspeakerChannel(no_keys, unset).check() == (
        "缺少环境变量 environment variable TC_ID, TC_KEY not set"
    )
    context.http.close()


def test_a_cloud_engine_needs_its_settings_block() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"engine: aliyun 需要 aliyun: 设置块 needs an? "):
        LoudspeakerSettings.model_validate({"engine": "aliyun"})
