"""webhook: real HTTP from `WebhookChannel` to the fake gateway (`tests/fakes/webhook_server.py`)."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from broadcaster.channel import ChannelContext, ErrorClass, Message, MessageKind, Result, Status
from broadcaster.channels.webhook import WebhookChannel
from tests.conftest import SECRET_CANARY
from tests.fakes.deliveries import delivery
from tests.fakes.webhook_server import HTML_PAGE, Mode, WebhookFake

TOKEN = SECRET_CANARY
ENVIRON = {"TOKEN_ENV": TOKEN}
MakeChannel = Callable[..., WebhookChannel]


def settings_data(server: WebhookFake, **overrides: Any) -> dict[str, Any]:
    """A gateway's settings block: bearer token from the environment, success from `code`."""
    return {
        "url": f"{server.url}/send",
        "headers": {"Authorization": "Bearer {token}"},
        "secrets": {"token": {"env": "TOKEN_ENV"}},
        "success": {"json_path": "code", "equals": "OK", "id_path": "biz_id"},
        "status_url": f"{server.url}/status/{{key}}",
        "timeout": [1, 5],
        **overrides,
    }


@pytest.fixture
def make_channel(
    webhook_server: WebhookFake,
    http_session: requests.Session,
    clock: Callable[[], dt.datetime],
    tmp_path: Path,
) -> Iterator[MakeChannel]:
    """`make_channel(environ=..., **settings overrides)` -> a channel aimed at the fake."""
    made: list[WebhookChannel] = []

    def make(environ: dict[str, str] = ENVIRON, **overrides: Any) -> WebhookChannel:
        settings = WebhookChannel.Settings.model_validate(
            settings_data(webhook_server, **overrides), context={"environ": environ}
        )
        channel = WebhookChannel(settings, ChannelContext("hook", http_session, clock, tmp_path))
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def send_one(channel: WebhookChannel, n: int = 1) -> Result:
    d = delivery(n)
    [result] = channel.send([d])
    assert result.key == d.key
    return result


# -- success and what is sent


def test_success_is_read_from_the_body(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    d = delivery(1)
    assert make_channel().send([d]) == [Result(d.key, Status.ACCEPTED, provider_id="biz-000001")]
    [request] = webhook_server.sends
    assert request.path == "/send"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["Idempotency-Key"] == d.key
    assert request.json() == {
        "id": d.key,
        "kind": "sms",
        "to": "13800000001",
        "title": "",
        "text": d.message.text,
    }


def test_each_delivery_carries_its_own_idempotency_key(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    channel = make_channel()
    batch = [delivery(n) for n in (1, 2, 3)]
    results = [r for d in batch for r in channel.send([d])]
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    assert [r.headers["Idempotency-Key"] for r in webhook_server.sends] == [d.key for d in batch]
    assert webhook_server.repeated_keys() == {}


def test_a_repeated_key_is_seen_by_the_receiver_and_deduplicated(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    channel = make_channel()
    first, again = send_one(channel), send_one(channel)
    assert first.provider_id == again.provider_id == "biz-000001"
    assert webhook_server.repeated_keys() == {delivery(1).key: 2}
    assert list(webhook_server.accepted) == [delivery(1).key]


def test_address_placeholder_in_the_url(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    channel = make_channel(url=f"{webhook_server.url}/bot/{{address}}/send")
    d = delivery(1, address="KEY-abc123", display="KEY-…123")
    assert channel.send([d])[0].status is Status.ACCEPTED
    assert webhook_server.sends[0].path == "/bot/KEY-abc123/send"
    assert channel.endpoint(d.recipient) == f"{webhook_server.url}/bot/KEY-abc123/send"


def test_without_id_path_the_provider_id_is_none(make_channel: MakeChannel) -> None:
    result = send_one(make_channel(success={"json_path": "code", "equals": "OK"}))
    assert (result.status, result.provider_id) == (Status.ACCEPTED, None)


# -- failures read from the answer


def test_http_200_with_an_error_code_is_a_content_failure(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.ERROR_CODE
    body = '{"code": "MOBILE_NUMBER_ILLEGAL", "message": "手机号码格式错误"}'
    assert send_one(make_channel()) == Result(
        delivery(1).key, Status.FAILED, ErrorClass.CONTENT, f"code='MOBILE_NUMBER_ILLEGAL': {body}"
    )
    assert webhook_server.accepted == {}


def test_429_is_throttled_with_retry_after(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.THROTTLED
    assert send_one(make_channel()) == Result(
        delivery(1).key,
        Status.FAILED,
        ErrorClass.THROTTLED,
        "HTTP 429 限流 throttled",
        retry_after=3.0,
    )


def test_429_retry_after_as_an_http_date(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.THROTTLED
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    webhook_server.retry_after = email.utils.format_datetime(later, usegmt=True)
    result = send_one(make_channel())
    assert result.error_class is ErrorClass.THROTTLED
    assert result.retry_after is not None and 27 <= result.retry_after <= 31


@pytest.mark.parametrize("value", ["soon", "1.5"])
def test_429_with_an_unreadable_retry_after_is_still_throttled(
    make_channel: MakeChannel, webhook_server: WebhookFake, value: str
) -> None:
    webhook_server.mode = Mode.THROTTLED
    webhook_server.retry_after = value
    result = send_one(make_channel())
    assert result.error_class is ErrorClass.THROTTLED


@pytest.mark.parametrize("mode", [Mode.HTTP_500, Mode.HTTP_502, Mode.HTTP_503])
def test_5xx_after_sending_is_unknown_by_default(
    make_channel: MakeChannel, webhook_server: WebhookFake, mode: Mode
) -> None:
    """Bot and SMS gateways do not drop a repeated Idempotency-Key: a 5xx may have sent."""
    webhook_server.mode = mode
    status = mode.value.removeprefix("http_")
    assert send_one(make_channel()) == Result(
        delivery(1).key,
        Status.UNKNOWN,
        ErrorClass.UNKNOWN,
        f"HTTP {status} 结果未知 outcome unknown: the receiver may have acted",
    )
    assert webhook_server.sends[0].headers["Idempotency-Key"] == delivery(1).key


@pytest.mark.parametrize("mode", [Mode.HTTP_500, Mode.HTTP_502, Mode.HTTP_503])
def test_5xx_is_retried_only_when_the_receiver_deduplicates(
    make_channel: MakeChannel, webhook_server: WebhookFake, mode: Mode
) -> None:
    webhook_server.mode = mode
    status = mode.value.removeprefix("http_")
    assert send_one(make_channel(receiver_deduplicates=True)) == Result(
        delivery(1).key,
        Status.FAILED,
        ErrorClass.TRANSIENT,
        f"HTTP {status} 服务端错误 server error",
    )
    # a receiver that deduplicates needs the key to do it
    assert send_one(make_channel(receiver_deduplicates=True, idempotency_header=None)).status is (
        Status.UNKNOWN
    )


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("THROTTLED", ErrorClass.THROTTLED),
        ("BUSY", ErrorClass.TRANSIENT),
        ("MOBILE_NUMBER_ILLEGAL", ErrorClass.RECIPIENT),
        ("BLACKLISTED", ErrorClass.OPTOUT),
        ("BAD_KEY", ErrorClass.CONFIG),
        ("SENSITIVE_WORD", ErrorClass.CONTENT),
    ],
)
def test_body_error_codes_are_classified_by_settings(
    make_channel: MakeChannel, webhook_server: WebhookFake, code: str, error_class: ErrorClass
) -> None:
    webhook_server.mode = Mode.ERROR_CODE
    webhook_server.error_code = code
    channel = make_channel(
        codes={
            "throttled": ["THROTTLED"],
            "retryable": ["BUSY"],
            "recipient": ["MOBILE_NUMBER_ILLEGAL"],
            "optout": ["BLACKLISTED"],
            "config": ["BAD_KEY"],
        },
        throttle_seconds=30,
    )
    result = send_one(channel)
    assert (result.status, result.error_class) == (Status.FAILED, error_class)
    assert result.retry_after == (30 if error_class is ErrorClass.THROTTLED else None)


def test_401_is_a_config_failure(make_channel: MakeChannel, webhook_server: WebhookFake) -> None:
    webhook_server.token = "another-token"
    assert send_one(make_channel()) == Result(
        delivery(1).key,
        Status.FAILED,
        ErrorClass.CONFIG,
        "HTTP 401 配置错误 check url and credentials",
    )


def test_only_the_second_send_fails(make_channel: MakeChannel, webhook_server: WebhookFake) -> None:
    webhook_server.on_request(2, Mode.HTTP_503)
    channel = make_channel()
    statuses = [send_one(channel, n).status for n in (1, 2, 3)]
    assert statuses == [Status.ACCEPTED, Status.UNKNOWN, Status.ACCEPTED]


OK_BODY = '{"code": "OK", "biz_id": "biz-000001", "message": "成功"}'
TRUNCATED_OK = OK_BODY[: len(OK_BODY) // 2]


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        (Mode.HTML, repr(HTML_PAGE[:60])),
        (Mode.TRUNCATED, repr(TRUNCATED_OK)),
    ],
)
def test_a_200_that_is_not_json_is_unknown(
    make_channel: MakeChannel, webhook_server: WebhookFake, mode: Mode, shown: str
) -> None:
    webhook_server.mode = mode
    assert send_one(make_channel()) == Result(
        delivery(1).key,
        Status.UNKNOWN,
        ErrorClass.UNKNOWN,
        f"应答不是 JSON response is not JSON: {shown}",
    )


def test_a_garbage_200_is_unknown(make_channel: MakeChannel, webhook_server: WebhookFake) -> None:
    webhook_server.mode = Mode.GARBAGE
    result = send_one(make_channel())
    assert (result.status, result.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)
    assert result.reason.startswith("应答不是 JSON response is not JSON: ")


def test_an_answer_cut_off_mid_body_is_unknown(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.CUT_OFF
    result = send_one(make_channel())
    assert (result.status, result.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)


# -- timeouts and connections


def test_read_timeout_is_unknown_and_reconcile_finds_the_send(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.HANG
    channel = make_channel(timeout=[1, 0.3])
    assert send_one(channel) == Result(
        delivery(1).key,
        Status.UNKNOWN,
        ErrorClass.UNKNOWN,
        "等待应答超时 no answer within 0.3s; outcome unknown",
    )
    webhook_server.wait_for(1)
    assert channel.reconcile([delivery(1)]) == [
        Result(delivery(1).key, Status.ACCEPTED, provider_id="biz-000001")
    ]


def test_slow_answer_beyond_the_read_timeout_is_unknown(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.SLOW
    webhook_server.delay = 0.5
    assert send_one(make_channel(timeout=[1, 0.2])).status is Status.UNKNOWN


def test_slow_answer_within_the_read_timeout_is_accepted(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.SLOW
    webhook_server.delay = 0.1
    assert send_one(make_channel(timeout=[1, 0.5])).status is Status.ACCEPTED


def test_connection_closed_without_answer_is_unknown(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.mode = Mode.CLOSE
    assert send_one(make_channel()) == Result(
        delivery(1).key,
        Status.UNKNOWN,
        ErrorClass.UNKNOWN,
        "连接中断 connection dropped after sending; outcome unknown",
    )


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connection_is_transient(make_channel: MakeChannel) -> None:
    channel = make_channel(url=f"http://127.0.0.1:{closed_port()}/send")
    assert send_one(channel) == Result(
        delivery(1).key, Status.FAILED, ErrorClass.TRANSIENT, "连接被拒绝 connection refused"
    )


# -- reconcile


def test_reconcile_accepts_received_keys_and_clears_unknown_ones(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    channel = make_channel()
    send_one(channel, 1)
    assert channel.reconcile([delivery(1), delivery(2)]) == [
        Result(delivery(1).key, Status.ACCEPTED, provider_id="biz-000001"),
        Result(
            delivery(2).key,
            Status.FAILED,
            ErrorClass.TRANSIENT,
            "对方无记录 receiver has no record; safe to send again",
        ),
    ]
    assert [r.path for r in webhook_server.requests if r.method == "GET"] == [
        f"/status/{delivery(1).key}",
        f"/status/{delivery(2).key}",
    ]


def test_reconcile_without_status_url_reports_nothing(make_channel: MakeChannel) -> None:
    assert make_channel(status_url=None).reconcile([delivery(1)]) == []


def test_reconcile_of_an_unreachable_status_url_leaves_the_delivery_pending(
    make_channel: MakeChannel,
) -> None:
    channel = make_channel(status_url=f"http://127.0.0.1:{closed_port()}/status/{{key}}")
    assert channel.reconcile([delivery(1)]) == []


def test_reconcile_authenticates_like_send(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.status_requires_auth = True
    channel = make_channel()
    send_one(channel, 1)
    assert channel.reconcile([delivery(1)]) == [
        Result(delivery(1).key, Status.ACCEPTED, provider_id="biz-000001")
    ]


# -- validation


def message(text: str) -> Message:
    return Message(MessageKind.BOT, text, "bot/alpha.j2", "0" * 64)


def test_check_message_rejects_a_body_that_is_not_json(make_channel: MakeChannel) -> None:
    channel = make_channel(body='{"text": {{ text }}}')  # forgot |tojson
    assert channel.check_message(message("反诈提醒")) == [
        "body 模板生成的不是 JSON the body template does not render to JSON: Expecting value"
    ]


def test_check_message_reports_a_failing_template(make_channel: MakeChannel) -> None:
    channel = make_channel(body='{"text": "{{ nope }}"}')
    assert channel.check_message(message("反诈提醒")) == [
        "body 模板错误 the body template fails: 'nope' is undefined"
    ]


def test_check_message_accepts_the_default_body(make_channel: MakeChannel) -> None:
    assert make_channel().check_message(message('引号 " 与换行\n都要转义')) == []


def test_check_reports_a_missing_secret(make_channel: MakeChannel) -> None:
    assert make_channel().check() is None
    assert make_channel(environ={}).check() == "缺少环境变量 environment variable TOKEN_ENV not set"


def test_inline_secret_is_refused(webhook_server: WebhookFake) -> None:
    data = settings_data(webhook_server, secrets={"token": "abc123"})
    with pytest.raises(ValueError, match="secrets come from environment variables"):
        WebhookChannel.Settings.model_validate(data, context={"environ": ENVIRON})


# -- secrets

LEAKY = "tok-7f3a9c21e5"


def test_the_secret_never_appears_in_settings_or_results(
    make_channel: MakeChannel, webhook_server: WebhookFake
) -> None:
    webhook_server.token = LEAKY
    channel = make_channel(environ={"TOKEN_ENV": LEAKY}, timeout=[1, 0.3])
    assert LEAKY not in repr(channel.settings)
    assert LEAKY not in str(channel.settings)
    assert LEAKY not in json.dumps(channel.settings.model_dump(mode="json"))
    reasons = []
    modes = list(Mode)
    for n, mode in enumerate(modes, start=1):
        webhook_server.mode = mode
        reasons.append(send_one(channel, n).reason)
    webhook_server.token = "another-token"
    reasons.append(send_one(channel, 99).reason)
    assert [r for r in reasons if LEAKY in r] == []
    assert webhook_server.sends[0].headers["Authorization"] == f"Bearer {LEAKY}"


def test_a_secret_with_a_trailing_newline_is_a_config_failure(make_channel: MakeChannel) -> None:
    channel = make_channel(environ={"TOKEN_ENV": f"{LEAKY}\n"})
    result = send_one(channel)
    assert result.error_class is ErrorClass.CONFIG
    assert LEAKY not in result.reason


def test_a_header_naming_an_undeclared_secret_is_refused(
    webhook_server: WebhookFake, make_channel: MakeChannel
) -> None:
    try:
        channel = make_channel(headers={"Authorization": "Bearer {tokn}"})
    except ValueError:
        return  # refused at validation: fine
    assert send_one(channel).error_class is ErrorClass.CONFIG
