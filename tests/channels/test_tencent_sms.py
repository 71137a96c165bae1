"""tencent-sms: real HTTP from `TencentSmsChannel` to the Tencent fake (`tests/fakes/tencent.py`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from broadcaster.channel import ChannelContext, Delivery, ErrorClass, InboundRequest, Status
from broadcaster.channels.tencent_sms import TencentSmsChannel, session_context
from tests.conftest import NOW, SECRET_CANARY
from tests.fakes.deliveries import delivery
from tests.fakes.fixtures import TENCENT_SECRET_ID
from tests.fakes.tencent import TcFault, TencentFake

ENVIRON = {"TC_ID": TENCENT_SECRET_ID, "TC_KEY": SECRET_CANARY}
PARAMS = {"topic.name": "刷单诈骗", "office.hotline": "96110"}
MakeChannel = Callable[..., TencentSmsChannel]


def sms(n: int, **kw: Any) -> Delivery:
    d = delivery(n, channel="tencent", **kw)
    return dataclasses.replace(
        d,
        message=dataclasses.replace(d.message, params=PARAMS),
        recipient=dataclasses.replace(d.recipient, address=f"+86{d.recipient.address}"),
    )


@pytest.fixture
def make_channel(
    tencent_fake: TencentFake, http_session: requests.Session, tmp_path: Path
) -> Iterator[MakeChannel]:
    made: list[TencentSmsChannel] = []

    def make(
        environ: dict[str, str] = ENVIRON,
        clock: Callable[[], dt.datetime] = lambda: NOW,
        **overrides: Any,
    ) -> TencentSmsChannel:
        data = {
            "secret_id": {"env": "TC_ID"},
            "secret_key": {"env": "TC_KEY"},
            "sdk_app_id": tencent_fake.app_id,
            "sign_name": "平安县反诈中心",
            "template_id": "1110",
            "template_params": ["topic.name", "office.hotline"],
            "endpoint": f"{tencent_fake.url}/",
            "timeout": [1, 1],
            **overrides,
        }
        settings = TencentSmsChannel.Settings.model_validate(data, context={"environ": environ})
        channel = TencentSmsChannel(
            settings, ChannelContext("tencent", http_session, clock, tmp_path)
        )
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def test_one_signed_call_per_batch_with_ordered_params_and_session_context(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    batch = [sms(n) for n in (1, 2, 3)]
    results = make_channel().send(batch)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert [r.provider_id for r in results] == [s.serial for s in tencent_fake.sent]
    [call] = tencent_fake.requests
    body = call.json()
    assert body["PhoneNumberSet"] == ["+8613800000001", "+8613800000002", "+8613800000003"]
    assert body["TemplateParamSet"] == ["刷单诈骗", "96110"]
    assert body["SessionContext"] == session_context(batch[0])
    assert call.headers["X-TC-Action"] == "SendSms"
    assert call.headers["Authorization"].startswith(
        f"TC3-HMAC-SHA256 Credential={TENCENT_SECRET_ID}/2026-03-02/sms/tc3_request"
    )
    assert SECRET_CANARY not in call.text and SECRET_CANARY not in str(call.headers)


def test_at_most_200_numbers_per_call() -> None:
    with pytest.raises(ValueError, match="less than or equal to 200"):
        TencentSmsChannel.Settings.model_validate(
            {
                "secret_id": {"env": "TC_ID"},
                "secret_key": {"env": "TC_KEY"},
                "sdk_app_id": "1400006666",
                "sign_name": "反诈中心",
                "template_id": "1",
                "batch_size": 201,
            },
            context={"environ": ENVIRON},
        )


def test_a_wrong_secret_is_config_and_nothing_is_sent(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    [result] = make_channel(environ={**ENVIRON, "TC_KEY": "wrong"}).send([sms(1)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert "AuthFailure.SignatureFailure" in result.reason and tencent_fake.sent == []


def test_an_expired_timestamp_is_refused_after_one_retry(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    [result] = make_channel(clock=lambda: NOW + dt.timedelta(minutes=6)).send([sms(1)])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert "时钟偏差 clock skew" in result.reason
    assert len(tencent_fake.requests) == 2 and tencent_fake.sent == []
    ok = make_channel(clock=lambda: NOW + dt.timedelta(minutes=4)).send([sms(2)])
    assert ok[0].status is Status.ACCEPTED


def test_a_tampered_body_fails_the_signature(
    tencent_fake: TencentFake, make_channel: MakeChannel
) -> None:
    channel = make_channel()
    body = json.dumps({"PhoneNumberSet": ["+8613800000001"]}).encode()
    headers = channel.client.headers("SendSms", body)
    response = requests.post(f"{tencent_fake.url}/", data=body + b" ", headers=headers, timeout=5)
    assert response.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_partial_success_is_read_per_number(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    tencent_fake.number_codes["+8613800000002"] = "InvalidParameterValue.IncorrectPhoneNumber"
    tencent_fake.number_codes["+8613800000003"] = "FailedOperation.PhoneNumberInBlacklist"
    tencent_fake.number_codes["+8613800000004"] = "LimitExceeded.PhoneNumberDailyLimit"
    batch = [sms(n) for n in (1, 2, 3, 4, 5)]
    r = make_channel().send(batch)
    assert [x.status for x in r] == [
        Status.ACCEPTED,
        Status.FAILED,
        Status.FAILED,
        Status.FAILED,
        Status.ACCEPTED,
    ]
    assert [x.error_class for x in r[1:4]] == [
        ErrorClass.RECIPIENT,
        ErrorClass.OPTOUT,
        ErrorClass.THROTTLED,
    ]
    assert r[3].per_recipient and r[3].retry_after == 15 * 3600 + 60  # until tomorrow
    assert not r[1].per_recipient
    assert sorted(tencent_fake.received) == ["+8613800000001", "+8613800000005"]


def test_the_same_content_within_30_seconds_is_deferred_30_seconds(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    channel = make_channel()
    assert channel.send([sms(1)])[0].status is Status.ACCEPTED
    [again] = channel.send([sms(1)])
    assert (again.error_class, again.retry_after, again.per_recipient) == (
        ErrorClass.THROTTLED,
        30.0,
        True,
    )
    assert tencent_fake.received["+8613800000001"] == 1


@pytest.mark.parametrize(
    ("fault", "status", "error_class"),
    [
        (TcFault.REQUEST_LIMIT, Status.FAILED, ErrorClass.THROTTLED),
        (TcFault.HTTP_429, Status.FAILED, ErrorClass.THROTTLED),
        (TcFault.INTERNAL, Status.FAILED, ErrorClass.TRANSIENT),
        (TcFault.HTTP_502, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (TcFault.HTTP_503, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (TcFault.TRUNCATED, Status.UNKNOWN, ErrorClass.UNKNOWN),
        (TcFault.ACCEPT_HANG, Status.UNKNOWN, ErrorClass.UNKNOWN),
    ],
)
def test_whole_call_faults_are_classed(
    make_channel: MakeChannel,
    tencent_fake: TencentFake,
    fault: TcFault,
    status: Status,
    error_class: ErrorClass,
) -> None:
    tencent_fake.fault(fault)
    results = make_channel().send([sms(1), sms(2)])
    assert {(r.status, r.error_class) for r in results} == {(status, error_class)}
    if fault is TcFault.HTTP_429:
        assert {r.retry_after for r in results} == {3.0}  # the fake's Retry-After


def test_pull_hands_each_receipt_out_once(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    channel = make_channel(pull_limit=2)
    tencent_fake.receipt_status["+8613800000002"] = ("FAIL", "MK:0001")
    channel.send([sms(n) for n in (1, 2, 3)])
    first = channel.pull_outcomes(None)
    assert first is not None and first.more and first.cursor == "2"
    second = channel.pull_outcomes(first.cursor)
    assert second is not None and not second.more and second.cursor == "3"
    empty = channel.pull_outcomes(second.cursor)
    assert empty is not None and list(empty.outcomes) == [] and not empty.more
    outcomes = [*first.outcomes, *second.outcomes]
    assert [(o.address, o.status) for o in outcomes] == [
        ("+8613800000001", Status.DELIVERED),
        ("+8613800000002", Status.FAILED),
        ("+8613800000003", Status.DELIVERED),
    ]
    assert set(tencent_fake.pulled.values()) == {1}


def test_a_timeout_after_sending_is_reconciled_per_number_never_resent(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    channel = make_channel()
    tencent_fake.fault(TcFault.ACCEPT_HANG)
    lost = [sms(1), sms(2)]
    assert {r.status for r in channel.send(lost)} == {Status.UNKNOWN}
    answers = channel.reconcile(lost)
    assert [(r.key, r.status) for r in answers] == [(d.key, Status.DELIVERED) for d in lost]
    assert dict(tencent_fake.received) == {"+8613800000001": 1, "+8613800000002": 1}
    query = [r for r in tencent_fake.requests if r.headers["X-TC-Action"].endswith("PhoneNumber")]
    assert query[0].json()["PhoneNumber"] == "+8613800000001"


def test_without_a_status_an_unknown_send_stays_unknown(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    channel = make_channel()
    tencent_fake.fault(TcFault.HTTP_502)
    assert channel.send([sms(1)])[0].status is Status.UNKNOWN
    assert channel.reconcile([sms(1)]) == []  # never "safe to resend" without proof


def test_reconcile_looks_back_at_most_7_days(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    old = dataclasses.replace(sms(1), scheduled_at=NOW - dt.timedelta(days=30))
    make_channel().reconcile([old])
    [query] = tencent_fake.requests
    assert NOW.timestamp() - query.json()["BeginTime"] < 7 * 86400


def test_callbacks_become_outcomes_duplicates_included(
    make_channel: MakeChannel, tencent_fake: TencentFake
) -> None:
    channel = make_channel()
    channel.send([sms(1), sms(2)])
    items = tencent_fake.sms_callbacks()
    [route] = channel.routes()
    body = json.dumps(items[::-1] + items[:1]).encode()
    reply = route.handler(InboundRequest("POST", "/receipts", {}, {}, body))
    assert json.loads(reply.body) == {"result": 0, "errmsg": "OK"}
    assert [(o.provider_id, o.address) for o in reply.outcomes] == [
        (items[1]["sid"], "+8613800000002"),
        (items[0]["sid"], "+8613800000001"),
        (items[0]["sid"], "+8613800000001"),
    ]
    garbage = route.handler(InboundRequest("POST", "/receipts", {}, {}, b"[1]"))
    assert garbage.status == 400 and not garbage.outcomes


def test_check_message_names_params_length_and_billing(make_channel: MakeChannel) -> None:
    from broadcaster.channel import Message, MessageKind

    def m(text: str, params: dict[str, str]) -> Message:
        return Message(MessageKind.SMS, text, "sms/x.j2", "0" * 64, params=params)

    channel = make_channel(max_billed=1)
    assert channel.check_message(m("短" * 61, PARAMS)) == []
    problems = channel.check_message(m("短" * 62, {"topic.name": "一" * 13}))
    assert any("office.hotline" in p for p in problems)
    assert any("13 characters, over 12" in p for p in problems)
    assert any("71 字 chars → 2 条计费 billed" in p for p in problems)


TENCENT_CODES = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": ErrorClass.THROTTLED,
    "LimitExceeded.PhoneNumberOneHourLimit": ErrorClass.THROTTLED,
    "LimitExceeded.PhoneNumberDailyLimit": ErrorClass.THROTTLED,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": ErrorClass.THROTTLED,
    "LimitExceeded.DeliveryFrequencyLimit": ErrorClass.THROTTLED,
    "LimitExceeded.AppDailyLimit": ErrorClass.THROTTLED,
    "FailedOperation.MarketingSendTimeConstraint": ErrorClass.THROTTLED,
    "FailedOperation.SignatureIncorrectOrUnapproved": ErrorClass.CONFIG,
    "FailedOperation.TemplateIncorrectOrUnapproved": ErrorClass.CONFIG,
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": ErrorClass.CONFIG,
    "FailedOperation.InsufficientBalanceInSmsPackage": ErrorClass.CONFIG,
    "UnauthorizedOperation.SerivceSuspendDueToArrears": ErrorClass.CONFIG,
    "FailedOperation.ContainSensitiveWord": ErrorClass.CONTENT,
    "InvalidParameterValue.ContentLengthLimit": ErrorClass.CONTENT,
    "InvalidParameterValue.TemplateParameterLengthLimit": ErrorClass.CONTENT,
    "InvalidParameterValue.TemplateParameterFormatError": ErrorClass.CONTENT,
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": ErrorClass.CONTENT,
    "InvalidParameterValue.IncorrectPhoneNumber": ErrorClass.RECIPIENT,
    "FailedOperation.PhoneNumberInBlacklist": ErrorClass.OPTOUT,
    "InternalError.SendAndRecvFail": ErrorClass.TRANSIENT,
    "FailedOperation.SomethingNew": ErrorClass.CONTENT,
}


@pytest.mark.parametrize(("code", "error_class"), sorted(TENCENT_CODES.items()))
def test_each_documented_code_for_a_number_is_classed(
    make_channel: MakeChannel, tencent_fake: TencentFake, code: str, error_class: ErrorClass
) -> None:
    tencent_fake.number_codes["+8613800000001"] = code
    first, second = make_channel().send([sms(1), sms(2)])
    assert (first.status, first.error_class) == (Status.FAILED, error_class)
    assert code in first.reason and second.status is Status.ACCEPTED
    assert first.per_recipient == code.startswith(
        ("LimitExceeded.PhoneNumber", "LimitExceeded.Del")
    )
