"""sms-http: real HTTP from `SmsHttpChannel` to the fake Kannel/playSMS-style gateway."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from broadcaster.channels.sms_http import SmsHttpChannel
from tests.fakes.deliveries import delivery
from tests.fakes.http import serving
from tests.fakes.sms_gateway import GATEWAY_PASSWORD, SmsGatewayFake

DLR_TOKEN = "dlr-token-5b9a"
ENVIRON = {"GW_PASSWORD": GATEWAY_PASSWORD, "GW_DLR_TOKEN": DLR_TOKEN}
MakeChannel = Callable[..., SmsHttpChannel]
BODY = "凡是刷单返利都是诈骗，请拨打96110咨询。"


def kannel_settings(base: str, **overrides: Any) -> dict[str, Any]:
    """Kannel's sendsms shape: credentials and numbers in the query, one answer line each."""
    url = base
    return {
        "url": f"{url}/cgi-bin/sendsms",
        "method": "GET",
        "query": {
            "username": "office",
            "password": "{{ secrets.password }}",
            "to": "{{ to }}",
            "text": "{{ text }}",
            "ref": "{{ key }}",
            "coding": "2",
            "charset": "UTF-8",
        },
        "secrets": {"password": {"env": "GW_PASSWORD"}},
        "sign_name": "青山镇反诈",
        "batch_size": 3,
        "answers": "lines",
        "success": {"regex": r"^OK (?P<id>\S+)"},
        "error_regex": r"^ERR (?P<code>\S+)",
        "codes": {
            "retryable": ["BUSY"],
            "recipient": ["INVALID_NUMBER"],
            "optout": ["BLACKLIST"],
        },
        "status_url": f"{url}/status?ref={{key}}",
        "receipts": {"token": {"env": "GW_DLR_TOKEN"}},
        "timeout": [1, 1],
        **overrides,
    }


@pytest.fixture
def gateway() -> Iterator[SmsGatewayFake]:
    yield from serving(SmsGatewayFake())


@pytest.fixture
def make_channel(
    gateway: SmsGatewayFake, clock: Callable[[], dt.datetime], tmp_path: Path
) -> Iterator[MakeChannel]:
    sessions: list[requests.Session] = []

    def make(environ: dict[str, str] = ENVIRON, **overrides: Any) -> SmsHttpChannel:
        settings = SmsHttpChannel.Settings.model_validate(
            kannel_settings(gateway.url, **overrides), context={"environ": environ}
        )
        session = requests.Session()
        sessions.append(session)
        return SmsHttpChannel(settings, ChannelContext("gw", session, clock, tmp_path))

    yield make
    for session in sessions:
        session.close()


def batch(*numbers: str) -> list[Delivery]:
    return [delivery(i, address=f"+86{n}", text=BODY) for i, n in enumerate(numbers, 1)]


def test_a_batch_goes_in_one_request_and_each_number_gets_its_id(
    make_channel: MakeChannel, gateway: SmsGatewayFake
) -> None:
    sent = batch("13800000001", "13900000002", "13700000003")
    results = make_channel().send(sent)
    assert [(r.status, r.provider_id) for r in results] == [
        (Status.ACCEPTED, "m000001"),
        (Status.ACCEPTED, "m000002"),
        (Status.ACCEPTED, "m000003"),
    ]
    [fields] = gateway.send_requests
    assert fields["to"] == "13800000001,13900000002,13700000003"  # national form
    assert fields["text"] == "【青山镇反诈】" + BODY
    assert fields["ref"] == ",".join(d.key for d in sent)


def test_wrong_credentials_are_a_config_failure(make_channel: MakeChannel) -> None:
    channel = make_channel(environ={**ENVIRON, "GW_PASSWORD": "wrong"})
    results = channel.send(batch("13800000001", "13900000002"))
    assert {(r.status, r.error_class) for r in results} == {(Status.FAILED, ErrorClass.CONFIG)}
    assert all("HTTP 403" in r.reason for r in results)


def test_each_number_is_judged_by_its_own_line(
    make_channel: MakeChannel, gateway: SmsGatewayFake
) -> None:
    gateway.bad_numbers.add("13900000002")
    gateway.optout_numbers.add("13700000003")
    gateway.busy["13600000004"] = 1
    results = make_channel(batch_size=4).send(
        batch("13800000001", "13900000002", "13700000003", "13600000004")
    )
    assert [(r.status, r.error_class) for r in results] == [
        (Status.ACCEPTED, None),
        (Status.FAILED, ErrorClass.RECIPIENT),
        (Status.FAILED, ErrorClass.OPTOUT),
        (Status.FAILED, ErrorClass.TRANSIENT),
    ]
    assert "INVALID_NUMBER" in results[1].reason


def test_an_unknown_error_code_is_a_permanent_content_failure(
    make_channel: MakeChannel, gateway: SmsGatewayFake
) -> None:
    results = make_channel(codes={}).send(batch("13800000001"))
    assert results[0].status is Status.ACCEPTED
    gateway.bad_numbers.add("13900000002")
    [result] = make_channel(codes={}).send(batch("13900000002"))
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONTENT)


def test_429_is_throttled_with_retry_after(
    make_channel: MakeChannel, gateway: SmsGatewayFake
) -> None:
    gateway.mode = "throttled"
    results = make_channel().send(batch("13800000001", "13900000002"))
    assert {(r.error_class, r.retry_after) for r in results} == {(ErrorClass.THROTTLED, 30.0)}
    assert gateway.sent == {}


@pytest.mark.parametrize("mode", ["http_500", "late_500", "garbage", "hang"])
def test_after_sending_anything_but_an_answer_is_unknown(
    make_channel: MakeChannel, gateway: SmsGatewayFake, mode: str
) -> None:
    gateway.mode = mode
    channel = make_channel(timeout=[0.5, 0.3]) if mode == "hang" else make_channel()
    results = channel.send(batch("13800000001", "13900000002"))
    assert {(r.status, r.error_class) for r in results} == {(Status.UNKNOWN, ErrorClass.UNKNOWN)}


def test_http_200_alone_is_never_success(
    make_channel: MakeChannel, gateway: SmsGatewayFake, http_server: Any
) -> None:
    """A gateway (or a proxy in front of it) answering an empty 200."""
    settings = kannel_settings(http_server.url)
    channel = make_channel(url=settings["url"])
    [result] = channel.send(batch("13800000001"))
    assert result.status is Status.UNKNOWN


def test_reconcile_finds_what_was_sent_and_clears_what_was_not(
    make_channel: MakeChannel, gateway: SmsGatewayFake
) -> None:
    channel = make_channel(timeout=[0.5, 0.3])
    gateway.queue("hang", "http_500")
    hung = batch("13800000001")
    never = [delivery(2, address="+8613900000002", text=BODY)]
    assert channel.send(hung)[0].status is Status.UNKNOWN
    assert channel.send(never)[0].status is Status.UNKNOWN
    found = {r.key: r for r in channel.reconcile(hung + never)}
    assert (found[hung[0].key].status, found[hung[0].key].provider_id) == (
        Status.ACCEPTED,
        "m000001",
    )
    assert found[never[0].key].error_class is ErrorClass.TRANSIENT  # safe to send again
    gateway.delivered.add(hung[0].key)
    [again] = channel.reconcile(hung)
    assert again.status is Status.DELIVERED


def dlr(channel: SmsHttpChannel, **query: str) -> Any:
    [route] = channel.routes()
    assert route.path == "/dlr" and "GET" in route.methods
    request = InboundRequest("GET", "/dlr", {k: [v] for k, v in query.items()}, {}, b"")
    return route.handler(request)


def test_receipts_need_the_token_and_carry_the_outcome(make_channel: MakeChannel) -> None:
    channel = make_channel()
    assert dlr(channel, token="nope", ref="k1", status="1").status == 403
    assert dlr(channel, ref="k1", status="1").status == 403
    delivered = dlr(channel, token=DLR_TOKEN, ref="k1", status="1", to="13800000001")
    [outcome] = delivered.outcomes
    assert (outcome.status, outcome.key, outcome.address) == (
        Status.DELIVERED,
        "k1",
        "+8613800000001",
    )
    [failed] = dlr(channel, token=DLR_TOKEN, ref="k2", status="16").outcomes
    assert (failed.status, failed.error_class) == (Status.FAILED, ErrorClass.RECIPIENT)
    queued = dlr(channel, token=DLR_TOKEN, ref="k3", status="8")  # at the SMSC: no outcome
    assert queued.status == 200 and queued.outcomes == ()


def sms(text: str) -> Message:
    return Message(MessageKind.SMS, text, "sms/alpha.j2", "0" * 64)


def test_check_message_counts_the_signature_and_the_budget(make_channel: MakeChannel) -> None:
    channel = make_channel(max_parts=1)
    assert channel.check_message(sms("诈" * 63)) == []  # 7 + 63 = 70
    [problem] = channel.check_message(sms("诈" * 64))
    assert problem.startswith("短信计费条数超出预算 2 billed SMS (71 chars")


def test_check_message_reports_a_broken_template(make_channel: MakeChannel) -> None:
    channel = make_channel(query={"to": "{{ to }}", "text": "{{ txet }}"})
    [problem] = channel.check_message(sms("你好"))
    assert "请求模板错误" in problem and "txet" in problem


def test_settings_are_checked_once(gateway: SmsGatewayFake) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="status_url must contain"):
        SmsHttpChannel.Settings.model_validate(
            kannel_settings(gateway.url, status_url=f"{gateway.url}/status"),
            context={"environ": ENVIRON},
        )
    with pytest.raises(ValidationError, match="a GET has no body"):
        SmsHttpChannel.Settings.model_validate(
            kannel_settings(gateway.url, form={"to": "{{ to }}"}), context={"environ": ENVIRON}
        )
    with pytest.raises(ValidationError, match="secrets come from environment variables"):
        SmsHttpChannel.Settings.model_validate(
            kannel_settings(gateway.url, secrets={"password": GATEWAY_PASSWORD}),
            context={"environ": ENVIRON},
        )


def test_the_secrets_never_appear_in_results_or_settings(
    make_channel: MakeChannel, gateway: SmsGatewayFake
) -> None:
    channel = make_channel()
    shown = repr(channel.settings) + str(channel.settings.model_dump())
    for mode in ("ok", "throttled", "garbage", "http_500"):
        gateway.mode = mode
        shown += "".join(repr(r) + r.reason + r.raw for r in channel.send(batch("13800000001")))
    assert GATEWAY_PASSWORD not in shown and DLR_TOKEN not in shown


def test_a_form_post_with_json_items_matched_by_number(
    make_channel: MakeChannel, http_server: Any
) -> None:
    from tests.fakes.http import Reply

    http_server.enqueue(
        Reply.json(
            {
                "results": [
                    {"mobile": "13900000002", "code": 17, "id": None},
                    {"mobile": "13800000001", "code": 0, "id": "x1"},
                ]
            }
        )
    )
    channel = make_channel(
        url=f"{http_server.url}/send",
        method="POST",
        query={},
        form={"user": "office", "pass": "{{ secrets.password }}", "mobiles": "{{ to }}"},
        answers="items",
        items_path="results",
        number_path="mobile",
        success={"json_path": "code", "equals": 0, "id_path": "id"},
        error_regex=None,
        codes={"recipient": [17]},
    )
    results = channel.send(batch("13800000001", "13900000002"))
    assert [(r.status, r.provider_id, r.error_class) for r in results] == [
        (Status.ACCEPTED, "x1", None),
        (Status.FAILED, None, ErrorClass.RECIPIENT),
    ]
    [request] = http_server.requests
    assert request.method == "POST" and "mobiles=13800000001%2C13900000002" in request.text


def test_basic_auth_from_the_environment(make_channel: MakeChannel, http_server: Any) -> None:
    import base64

    from tests.fakes.http import Reply

    http_server.enqueue(Reply(200, "OK 42\n"))
    channel = make_channel(
        url=f"{http_server.url}/send",
        query={"to": "{{ to }}", "text": "{{ text }}"},
        secrets={},
        basic_auth={"user": "office", "password": {"env": "GW_PASSWORD"}},
    )
    [result] = channel.send(batch("13800000001"))
    assert (result.status, result.provider_id) == (Status.ACCEPTED, "42")
    [request] = http_server.requests
    expected = base64.b64encode(f"office:{GATEWAY_PASSWORD}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert GATEWAY_PASSWORD not in repr(channel.settings)
