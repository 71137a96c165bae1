"""voice-call: real HTTP to the Aliyun (Dyvms) and Tencent (VMS) fakes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from pydantic import ValidationError

from broadcaster.channel import (
    ChannelContext,
    Delivery,
    ErrorClass,
    InboundRequest,
    MessageKind,
    Recipient,
    Status,
)
from broadcaster.channels.voice_call import CallLedger, VoiceCallChannel, landline, spaced_digits
from tests.conftest import NOW, SECRET_CANARY
from tests.fakes.aliyun import AliyunFake
from tests.fakes.deliveries import delivery
from tests.fakes.fixtures import ALIYUN_KEY_ID, TENCENT_SECRET_ID
from tests.fakes.tencent import TencentFake

ENVIRON = {"VOICE_ID": ALIYUN_KEY_ID, "VOICE_SECRET": SECRET_CANARY}
TC_ENVIRON = {"VOICE_ID": TENCENT_SECRET_ID, "VOICE_SECRET": SECRET_CANARY}
PARAMS = {"topic.name": "刷单诈骗", "office.hotline": "96110"}
LANDLINE = "+8657188886666"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def call(n: int = 1, address: str | None = None) -> Delivery:
    d = delivery(n, channel="voice", kind=MessageKind.LOUDSPEAKER)
    return dataclasses.replace(
        d,
        message=dataclasses.replace(d.message, params=PARAMS),
        recipient=dataclasses.replace(d.recipient, address=address or f"+86{d.recipient.address}"),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_channel(
    aliyun_fake: AliyunFake,
    tencent_fake: TencentFake,
    http_session: requests.Session,
    tmp_path: Path,
    clock: Clock,
) -> Iterator[Callable[..., VoiceCallChannel]]:
    aliyun_fake.clock = tencent_fake.clock = clock

    def make(provider: str = "aliyun", **overrides: Any) -> VoiceCallChannel:
        fake = aliyun_fake if provider == "aliyun" else tencent_fake
        data = {
            "provider": provider,
            "key_id": {"env": "VOICE_ID"},
            "key_secret": {"env": "VOICE_SECRET"},
            "template": "TTS_171680001" if provider == "aliyun" else "2001",
            "template_params": {"topic": "topic.name", "hotline": "office.hotline"},
            "endpoint": f"{fake.url}/",
            "timeout": [1, 1],
            **({"sdk_app_id": tencent_fake.voice_app_id} if provider == "tencent" else {}),
            **overrides,
        }
        environ = ENVIRON if provider == "aliyun" else TC_ENVIRON
        settings = VoiceCallChannel.Settings.model_validate(data, context={"environ": environ})
        return VoiceCallChannel(settings, ChannelContext("voice", http_session, clock, tmp_path))

    yield make


def test_hotlines_are_spaced_digit_by_digit() -> None:
    assert spaced_digits("96110") == "9 6 1 1 0"
    assert spaced_digits("110") == "1 1 0"
    assert spaced_digits("刷单诈骗") == "刷单诈骗"
    assert spaced_digits("12") == "12"


def test_landlines_keep_their_area_code() -> None:
    assert landline("+8657188886666") == "057188886666"
    assert landline("+861088886666") == "01088886666"
    assert landline("+8613800000001") is None


def test_aliyun_calls_one_number_per_request_mobiles_and_landlines(
    make_channel: Callable[..., VoiceCallChannel], aliyun_fake: AliyunFake
) -> None:
    channel = make_channel()
    assert channel.capabilities.batch_size == 1
    results = channel.send([call(1)]) + channel.send([call(2, LANDLINE)])
    assert [r.status for r in results] == [Status.ACCEPTED] * 2
    assert [c.number for c in aliyun_fake.calls] == ["13800000001", "057188886666"]
    assert aliyun_fake.calls[0].params == {"topic": "刷单诈骗", "hotline": "9 6 1 1 0"}
    form = {k: v[0] for k, v in parse_qs(aliyun_fake.requests[0].text).items()}
    assert form["Action"] == "SingleCallByTts" and form["TtsCode"] == "TTS_171680001"
    assert form["OutId"] == call(1).key[:15]
    assert results[0].provider_id == aliyun_fake.calls[0].call_id


def test_tencent_calls_mobiles_in_e164_and_refuses_landlines(
    make_channel: Callable[..., VoiceCallChannel], tencent_fake: TencentFake
) -> None:
    channel = make_channel("tencent")
    [ok] = channel.send([call(1)])
    [fixed] = channel.send([call(2, LANDLINE)])
    assert ok.status is Status.ACCEPTED
    assert (fixed.status, fixed.error_class) == (Status.FAILED, ErrorClass.RECIPIENT)
    assert "needs another channel" in fixed.reason
    [sent] = tencent_fake.sent
    assert (sent.phone, sent.params, sent.session) == (
        "+8613800000001",
        ["刷单诈骗", "9 6 1 1 0"],
        call(1).key,
    )
    assert tencent_fake.requests[0].headers["Authorization"].split("/")[2] == "vms"


def test_validate_says_landlines_need_another_channel(
    make_channel: Callable[..., VoiceCallChannel],
) -> None:
    people = [
        Recipient("v", "+8613800000001", "138****0001"),
        Recipient("v", LANDLINE, "0571****6666"),
    ]
    [problem] = make_channel("tencent").check_recipients(people)
    assert "1 numbers are landlines" in problem and "0571****6666" in problem
    assert "88886666" not in problem
    assert make_channel("aliyun").check_recipients(people) == []


def test_the_per_number_caps_defer_that_number_not_a_retry_storm(
    make_channel: Callable[..., VoiceCallChannel], aliyun_fake: AliyunFake, clock: Clock
) -> None:
    channel = make_channel()
    assert channel.send([call(1)])[0].status is Status.ACCEPTED
    [again] = channel.send([call(1)])
    assert (again.error_class, again.per_recipient, again.retry_after) == (
        ErrorClass.THROTTLED,
        True,
        60.0,
    )
    assert channel.send([call(2)])[0].status is Status.ACCEPTED  # another number goes on
    for minute in range(1, 5):
        clock.now = NOW + dt.timedelta(minutes=minute, seconds=1)
        assert channel.send([call(1)])[0].status is Status.ACCEPTED
    clock.now = NOW + dt.timedelta(minutes=6)
    [hourly] = channel.send([call(1)])
    assert hourly.per_recipient and hourly.retry_after == 54 * 60  # the first call + 1 h
    assert aliyun_fake.calls_received["13800000001"] == 5
    assert aliyun_fake.refused == {}  # the ledger deferred it before the provider had to


def test_a_day_allows_20_calls_per_number() -> None:
    ledger = CallLedger()
    answers = [ledger.reserve("1", NOW + dt.timedelta(hours=h)) for h in range(0, 24)]
    assert answers[:20] == [None] * 20 and all(a is not None for a in answers[20:])
    assert answers[20] == pytest.approx(4 * 3600)  # the first call's day ends at NOW + 24 h


def test_the_providers_own_cap_is_deferred_for_that_number(
    make_channel: Callable[..., VoiceCallChannel], aliyun_fake: AliyunFake
) -> None:
    make_channel().send([call(1)])
    [capped] = make_channel().send([call(1)])  # a restarted process: its ledger is empty
    assert (capped.error_class, capped.per_recipient, capped.retry_after) == (
        ErrorClass.THROTTLED,
        True,
        60.0,
    )
    assert "分钟级" in capped.reason and aliyun_fake.calls_received["13800000001"] == 1


def test_call_results_answered_is_delivered_with_seconds_else_failed(
    make_channel: Callable[..., VoiceCallChannel], aliyun_fake: AliyunFake
) -> None:
    channel = make_channel()
    aliyun_fake.call_results["13800000002"] = (False, 0, "用户未接听")
    placed = [call(1), call(2), call(3)]
    results = [r for d in placed for r in channel.send([d])]
    asked = [
        dataclasses.replace(d, provider_id=r.provider_id)
        for d, r in zip(placed, results, strict=True)
    ]
    answers = {r.key: r for r in channel.reconcile([*asked, call(4)])}
    assert (answers[placed[0].key].status, answers[placed[0].key].reason) == (
        Status.DELIVERED,
        "已接听 answered, 23 s",
    )
    assert answers[placed[1].key].status is Status.FAILED
    assert answers[placed[1].key].reason == "未接听 not answered: 用户未接听"
    assert call(4).key not in answers  # never placed: nothing to say


def test_pushed_call_results_aliyun(
    make_channel: Callable[..., VoiceCallChannel], aliyun_fake: AliyunFake
) -> None:
    channel = make_channel()
    aliyun_fake.call_results["13800000002"] = (False, 0, "用户未接听")
    channel.send([call(1)])
    channel.send([call(2)])
    [route] = channel.routes()
    body = json.dumps(aliyun_fake.voice_reports()[::-1], ensure_ascii=False).encode()
    reply = route.handler(InboundRequest("POST", "/calls", {}, {}, body))
    assert [(o.provider_id, o.status, o.reason) for o in reply.outcomes] == [
        (aliyun_fake.calls[1].call_id, Status.FAILED, "未接听 not answered: 用户未接听"),
        (aliyun_fake.calls[0].call_id, Status.DELIVERED, "已接听 answered, 23 s"),
    ]
    assert route.handler(InboundRequest("POST", "/calls", {}, {}, b"[{}]")).status == 400


def test_pushed_call_results_tencent(make_channel: Callable[..., VoiceCallChannel]) -> None:
    channel = make_channel("tencent")
    [route] = channel.routes()
    key = call(1).key
    body = {
        "voiceprompt_callback": {
            "callid": "vms-1",
            "mobile": "13800000001",
            "nationcode": "86",
            "accept_time": "1772412000",
            "end_calltime": "1772412031",
            "result": "0",
            "session_context": key,
        }
    }
    reply = route.handler(InboundRequest("POST", "/calls", {}, {}, json.dumps(body).encode()))
    [o] = reply.outcomes
    assert (o.key, o.status, o.reason) == (key, Status.DELIVERED, "已接听 answered, 31 s")


def test_settings_are_checked_per_provider() -> None:
    base = {"key_id": {"env": "A"}, "key_secret": {"env": "B"}}
    with pytest.raises(ValidationError, match="TtsCode"):
        VoiceCallChannel.Settings.model_validate({**base, "provider": "aliyun", "template": "1"})
    with pytest.raises(ValidationError, match="sdk_app_id"):
        VoiceCallChannel.Settings.model_validate({**base, "provider": "tencent", "template": "1"})


def test_quiet_hours_default_to_the_night(make_channel: Callable[..., VoiceCallChannel]) -> None:
    assert str(make_channel().capabilities.quiet_hours) == "21:00-08:00"


def test_check_message_limits_tts_params(make_channel: Callable[..., VoiceCallChannel]) -> None:
    long = dataclasses.replace(call(1).message, params={**PARAMS, "topic.name": "长" * 240})
    [problem] = make_channel().check_message(long)
    assert "TtsParam" in problem
    assert make_channel().check_message(call(1).message) == []
