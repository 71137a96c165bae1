"""aliyun-sms: real HTTP from `AliyunSmsChannel` to the Aliyun fake (`tests/fakes/aliyun.py`)."""

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

from broadcaster.channel import (
    ChannelContext,
    Delivery,
    ErrorClass,
    InboundRequest,
    Message,
    MessageKind,
    Status,
)
from broadcaster.channels.aliyun_sms import AliyunSmsChannel, out_id
from tests.conftest import NOW, SECRET_CANARY
from tests.fakes.aliyun import AliyunFake, Fault
from tests.fakes.deliveries import delivery
from tests.fakes.fixtures import ALIYUN_KEY_ID

ENVIRON = {"ALIYUN_ID": ALIYUN_KEY_ID, "ALIYUN_SECRET": SECRET_CANARY, "RECEIPT_TOKEN": "rt-1"}
MakeChannel = Callable[..., AliyunSmsChannel]
PARAMS = {"topic.name": "刷单诈骗", "office.hotline": "96110"}


def settings_data(fake: AliyunFake, **overrides: Any) -> dict[str, Any]:
    return {
        "access_key_id": {"env": "ALIYUN_ID"},
        "access_key_secret": {"env": "ALIYUN_SECRET"},
        "sign_name": "平安县反诈中心",
        "template_code": "SMS_71390007",
        "template_params": {"topic": "topic.name", "hotline": "office.hotline"},
        "endpoint": f"{fake.url}/",
        "timeout": [1, 1],
        **overrides,
    }


def sms(n: int, **kw: Any) -> Delivery:
    d = delivery(n, channel="aliyun", **kw)
    message = dataclasses.replace(d.message, params=PARAMS)
    return dataclasses.replace(
        d,
        message=message,
        recipient=dataclasses.replace(d.recipient, address=f"+86{d.recipient.address}"),
    )


@pytest.fixture
def make_channel(
    aliyun_fake: AliyunFake, http_session: requests.Session, tmp_path: Path
) -> Iterator[MakeChannel]:
    made: list[AliyunSmsChannel] = []

    def make(
        environ: dict[str, str] = ENVIRON,
        clock: Callable[[], dt.datetime] = lambda: NOW,
        **overrides: Any,
    ) -> AliyunSmsChannel:
        settings = AliyunSmsChannel.Settings.model_validate(
            settings_data(aliyun_fake, **overrides), context={"environ": environ}
        )
        channel = AliyunSmsChannel(
            settings, ChannelContext("aliyun", http_session, clock, tmp_path)
        )
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


# -- success


def test_one_call_carries_the_batch_with_sign_template_params_and_out_id(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    batch = [sms(n) for n in (1, 2, 3)]
    results = make_channel().send(batch)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert {r.provider_id for r in results} == {"000000000001^0"}
    [call] = aliyun_fake.requests
    form = {k: v[0] for k, v in parse_qs(call.text).items()}
    assert form["Action"] == "SendSms"
    assert form["Format"] == "JSON"
    assert form["PhoneNumbers"] == "13800000001,13800000002,13800000003"
    assert form["SignName"] == "平安县反诈中心"
    assert form["TemplateCode"] == "SMS_71390007"
    assert json.loads(form["TemplateParam"]) == {"topic": "刷单诈骗", "hotline": "96110"}
    assert form["OutId"] == out_id(batch[0])
    assert SECRET_CANARY not in call.text  # the secret signs, it never travels
    assert dict(aliyun_fake.sms_received) == {f"1380000000{n}": 1 for n in (1, 2, 3)}


def test_send_batch_sms_sends_index_aligned_arrays(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel(api="SendBatchSms", batch_size=100)
    assert channel.capabilities.batch_size == 100
    results = channel.send([sms(1), sms(2)])
    assert [r.status for r in results] == [Status.ACCEPTED] * 2
    assert [s.params for s in aliyun_fake.sent] == [{"topic": "刷单诈骗", "hotline": "96110"}] * 2


class _Url:
    url = "http://127.0.0.1:9"


def test_capabilities_batch_500_by_message_with_receipts(make_channel: MakeChannel) -> None:
    caps = make_channel().capabilities
    assert (caps.batch_size, caps.batch_by_message, caps.reconciles) == (500, True, True)
    assert caps.late_outcomes and caps.resend_on_unknown == 0


def test_send_batch_sms_refuses_more_than_100_numbers() -> None:
    with pytest.raises(ValueError, match="batch_size ≤ 100"):
        AliyunSmsChannel.Settings.model_validate(
            settings_data(_Url(), api="SendBatchSms"),
            context={"environ": ENVIRON},  # type: ignore[arg-type]
        )


# -- signatures, clock, nonce


def test_a_wrong_secret_is_refused_as_config_and_nothing_is_sent(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel(environ={**ENVIRON, "ALIYUN_SECRET": "wrong-secret"})
    [result] = channel.send([sms(1)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert "SignatureDoesNotMatch" in result.reason
    assert aliyun_fake.sent == []


def test_an_expired_timestamp_is_refused_after_one_retry(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel(clock=lambda: NOW - dt.timedelta(minutes=16))
    [result] = channel.send([sms(1)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert "时钟偏差 clock skew" in result.reason
    assert len(aliyun_fake.requests) == 2 and aliyun_fake.sent == []
    # 14 minutes off is still inside Aliyun's 15
    [ok] = make_channel(clock=lambda: NOW - dt.timedelta(minutes=14)).send([sms(2)])
    assert ok.status is Status.ACCEPTED


def test_a_replayed_request_is_refused_for_its_used_nonce(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    make_channel().send([sms(1)])
    [call] = aliyun_fake.requests
    again = requests.post(
        f"{aliyun_fake.url}/",
        data=call.body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert again.status_code == 400 and again.json()["Code"] == "SignatureNonceUsed"
    assert aliyun_fake.sms_received["13800000001"] == 1


def test_each_request_has_a_new_nonce(make_channel: MakeChannel, aliyun_fake: AliyunFake) -> None:
    channel = make_channel()
    channel.send([sms(1)])
    channel.send([sms(2)])
    nonces = {r.text.split("SignatureNonce=")[1].split("&")[0] for r in aliyun_fake.requests}
    assert len(nonces) == 2


# -- per-number answers


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("isv.MOBILE_NUMBER_ILLEGAL", ErrorClass.RECIPIENT),
        ("isv.BLACK_KEY_CONTROL_LIMIT", ErrorClass.OPTOUT),
    ],
)
def test_a_number_the_provider_rejects_fails_alone_the_rest_is_sent_once(
    make_channel: MakeChannel, aliyun_fake: AliyunFake, code: str, error_class: ErrorClass
) -> None:
    aliyun_fake.number_codes["13800000005"] = code
    batch = [sms(n) for n in range(1, 9)]
    results = make_channel().send(batch)
    by_n = {d.recipient.address[-1]: r for d, r in zip(batch, results, strict=True)}
    assert (by_n["5"].status, by_n["5"].error_class) == (Status.FAILED, error_class)
    assert code in by_n["5"].reason
    assert all(r.status is Status.ACCEPTED for n, r in by_n.items() if n != "5")
    assert sorted(aliyun_fake.sms_received) == [f"1380000000{n}" for n in (1, 2, 3, 4, 6, 7, 8)]
    assert set(aliyun_fake.sms_received.values()) == {1}
    assert aliyun_fake.duplicates() == {}


def test_the_per_number_cap_defers_that_number_until_tomorrow_the_rest_goes_on(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    aliyun_fake.sms_day_cap = 1
    channel = make_channel()
    assert channel.send([sms(2)])[0].status is Status.ACCEPTED
    results = channel.send([sms(1), sms(2), sms(3)])
    capped = results[1]
    assert (capped.status, capped.error_class) == (Status.FAILED, ErrorClass.THROTTLED)
    assert capped.per_recipient and "天级流控" in capped.reason
    # NOW is 09:00 in Shanghai: the day's window ends at midnight (plus a minute)
    assert capped.retry_after == 15 * 3600 + 60
    assert [results[0].status, results[2].status] == [Status.ACCEPTED] * 2
    assert aliyun_fake.sms_received["13800000002"] == 1


def test_a_non_mainland_number_fails_before_any_call(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    [result] = make_channel().send([sms(1, address="12345")])
    assert result.error_class is ErrorClass.RECIPIENT and aliyun_fake.requests == []


def test_a_missing_template_parameter_fails_the_message(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel(template_params={"x": "no.such.param"})
    [result] = channel.send([sms(1)])
    assert result.error_class is ErrorClass.CONTENT and aliyun_fake.requests == []


# -- whole-call faults


@pytest.mark.parametrize(
    ("fault", "status", "error_class"),
    [
        (Fault.SYSTEM_ERROR, Status.FAILED, ErrorClass.TRANSIENT),  # HTTP 200, another Code
        (Fault.THROTTLING, Status.FAILED, ErrorClass.THROTTLED),
        (Fault.HTTP_429, Status.FAILED, ErrorClass.THROTTLED),
        (Fault.HTTP_500, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (Fault.HTTP_503, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (Fault.HTML, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (Fault.CUT, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (Fault.ACCEPT_HANG, Status.UNKNOWN, ErrorClass.UNKNOWN),
    ],
)
def test_whole_call_faults_are_classed(
    make_channel: MakeChannel,
    aliyun_fake: AliyunFake,
    fault: Fault,
    status: Status,
    error_class: ErrorClass,
) -> None:
    aliyun_fake.fault(fault)
    results = make_channel().send([sms(1), sms(2)])
    assert {(r.status, r.error_class) for r in results} == {(status, error_class)}
    assert not any(r.per_recipient for r in results)
    if error_class is ErrorClass.THROTTLED:
        assert all(r.retry_after for r in results)


def test_a_slow_answer_within_the_timeout_is_success(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    aliyun_fake.slow_seconds = 0.3
    aliyun_fake.fault(Fault.SLOW)
    assert make_channel(timeout=[1, 2]).send([sms(1)])[0].status is Status.ACCEPTED


def test_a_refused_connection_is_transient(make_channel: MakeChannel) -> None:
    [result] = make_channel(endpoint="http://127.0.0.1:9/").send([sms(1)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.TRANSIENT)


# -- reconciling and receipts


def test_a_timeout_after_sending_is_reconciled_by_out_id_never_resent(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel()
    aliyun_fake.fault(Fault.ACCEPT_HANG)
    lost = [sms(1), sms(2)]
    assert {r.status for r in channel.send(lost)} == {Status.UNKNOWN}
    aliyun_fake.receipt_status["13800000002"] = (1, "")
    answers = {r.key: r for r in channel.reconcile(lost)}
    assert answers[lost[0].key].status is Status.DELIVERED
    assert answers[lost[1].key].status is Status.ACCEPTED
    assert dict(aliyun_fake.sms_received) == {"13800000001": 1, "13800000002": 1}


def test_an_unknown_send_the_provider_never_got_is_safe_to_send_again(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel()
    aliyun_fake.fault(Fault.HTTP_500)
    [lost] = channel.send([sms(1)])
    assert lost.status is Status.UNKNOWN
    [answer] = channel.reconcile([sms(1)])
    assert (answer.status, answer.error_class) == (Status.FAILED, ErrorClass.TRANSIENT)


def test_receipts_of_accepted_sends_are_queried_by_biz_id(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel()
    batch = [sms(1), sms(2), sms(3)]
    sent = channel.send(batch)
    aliyun_fake.receipt_status["13800000002"] = (2, "MK:0001")
    aliyun_fake.receipt_status["13800000003"] = (1, "")
    asked = [
        dataclasses.replace(d, provider_id=r.provider_id) for d, r in zip(batch, sent, strict=True)
    ]
    answers = {r.key: r for r in channel.reconcile(asked)}
    assert answers[batch[0].key].status is Status.DELIVERED
    assert (answers[batch[1].key].status, answers[batch[1].key].error_class) == (
        Status.FAILED,
        ErrorClass.RECIPIENT,
    )
    assert answers[batch[2].key].status is Status.ACCEPTED
    queries = [r for r in aliyun_fake.requests if "QuerySendDetails" in r.text]
    assert len(queries) == 3 and all("BizId=000000000001" in q.text for q in queries)


def test_reconcile_asks_at_most_query_batch_numbers(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel(query_batch=2)
    assert channel.capabilities.reconcile_batch == 2
    assert len(channel.reconcile([sms(n) for n in range(1, 6)])) == 2


def push(channel: AliyunSmsChannel, body: bytes, token: str = "rt-1") -> Any:
    [route] = channel.routes()
    return route.handler(InboundRequest("POST", "/receipts", {"token": [token]}, {}, body))


def test_pushed_receipts_become_outcomes_by_biz_id_and_number(
    make_channel: MakeChannel, aliyun_fake: AliyunFake
) -> None:
    channel = make_channel(receipt_token={"env": "RECEIPT_TOKEN"})
    channel.send([sms(1), sms(2)])
    aliyun_fake.receipt_status["13800000002"] = (2, "MK:0005")
    reports = aliyun_fake.sms_reports()
    reply = push(channel, json.dumps(reports[::-1] + reports, ensure_ascii=False).encode())
    assert reply.status == 200 and json.loads(reply.body) == {"code": 0, "msg": "接收成功"}
    got = {(o.address, o.status, o.provider_id) for o in reply.outcomes}
    assert got == {
        ("+8613800000001", Status.DELIVERED, "000000000001^0"),
        ("+8613800000002", Status.FAILED, "000000000001^0"),
    }
    assert len(reply.outcomes) == 4  # duplicates go to the log, which matches each once


def test_a_push_without_the_token_or_with_garbage_is_refused(make_channel: MakeChannel) -> None:
    channel = make_channel(receipt_token={"env": "RECEIPT_TOKEN"})
    assert push(channel, b"[]", token="wrong").status == 401
    assert push(channel, b"\x00 not json").status == 400
    assert push(channel, b'{"a": 1}').status == 400
    assert push(channel, b'[{"phone_number": 1}]').status == 400


# -- validate


def message(text: str, params: dict[str, str] | None = None) -> Message:
    return Message(MessageKind.SMS, text, "sms/x.j2", "0" * 64, params=params or PARAMS)


def test_check_message_counts_the_signature_and_the_billed_parts(make_channel: MakeChannel) -> None:
    channel = make_channel(max_billed=1)
    assert channel.check_message(message("短" * 61)) == []  # 【平安县反诈中心】 is 9: 70 in all
    [problem] = channel.check_message(message("短" * 62))
    assert "71 字 chars → 2 条计费 billed" in problem and "max_billed 1" in problem
    [too_long] = make_channel(max_billed=8).check_message(message("长" * 492))
    assert "501 characters" in too_long


def test_check_message_names_a_missing_parameter_and_a_link(make_channel: MakeChannel) -> None:
    problems = make_channel().check_message(
        message("文本", {"topic.name": "见 http://x.cn", "x": "1"})
    )
    assert any("office.hotline" in p for p in problems)
    assert any("链接" in p for p in problems)
    assert any("emoji" in p for p in make_channel().check_message(message("提醒😀")))


ALIYUN_CODES = {
    "isv.BUSINESS_LIMIT_CONTROL": ErrorClass.THROTTLED,
    "isv.DAY_LIMIT_CONTROL": ErrorClass.CONFIG,
    "isv.MONTH_LIMIT_CONTROL": ErrorClass.CONFIG,
    "isv.OUT_OF_SERVICE": ErrorClass.CONFIG,
    "isv.AMOUNT_NOT_ENOUGH": ErrorClass.CONFIG,
    "isv.SMS_SIGN_ILLEGAL": ErrorClass.CONFIG,
    "isv.SIGN_STATE_ILLEGAL": ErrorClass.CONFIG,
    "isv.SMS_TEMPLATE_ILLEGAL": ErrorClass.CONFIG,
    "isv.DENY_IP_RANGE": ErrorClass.CONFIG,
    "isp.RAM_PERMISSION_DENY": ErrorClass.CONFIG,
    "isv.SMS_CONTENT_ILLEGAL": ErrorClass.CONTENT,
    "isv.TEMPLATE_MISSING_PARAMETERS": ErrorClass.CONTENT,
    "isv.PARAM_LENGTH_LIMIT": ErrorClass.CONTENT,
    "isv.PARAM_NOT_SUPPORT_URL": ErrorClass.CONTENT,
    "isv.MOBILE_NUMBER_ILLEGAL": ErrorClass.RECIPIENT,
    "isv.BLACK_KEY_CONTROL_LIMIT": ErrorClass.OPTOUT,
    "isp.SYSTEM_ERROR": ErrorClass.TRANSIENT,
    "isv.SOMETHING_NEW": ErrorClass.CONTENT,  # unknown codes: permanent for the message
}


@pytest.mark.parametrize(("code", "error_class"), sorted(ALIYUN_CODES.items()))
def test_each_documented_code_answered_with_http_200_is_a_classed_failure(
    make_channel: MakeChannel, aliyun_fake: AliyunFake, code: str, error_class: ErrorClass
) -> None:
    aliyun_fake.number_codes["13800000001"] = code
    [result] = make_channel().send([sms(1)])
    assert (result.status, result.error_class) == (Status.FAILED, error_class)
    assert code in result.reason and aliyun_fake.sent == []


def test_mainland_mobiles_in_every_written_form() -> None:
    from broadcaster.channels.aliyun_sms import mainland_mobile

    for written in ("13800000001", "+8613800000001", "008613800000001", "+86 138-0000-0001"):
        assert mainland_mobile(written) == "13800000001", written
    for wrong in ("12345", "+8657188886666", "12800000001", "1380000000", "+85213800000001"):
        assert mainland_mobile(wrong) is None, wrong
