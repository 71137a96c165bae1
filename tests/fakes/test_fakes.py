"""The fakes themselves: recording, hanging, closing, concurrency, the webhook gateway's modes."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import SECRET_CANARY
from tests.fakes.http import FakeHTTPServer, Reply
from tests.fakes.webhook_server import Mode, WebhookFake

AUTH = {"Authorization": f"Bearer {SECRET_CANARY}", "Content-Type": "application/json"}


def test_records_every_request_in_order(
    http_server: FakeHTTPServer, http_session: requests.Session
) -> None:
    http_session.post(f"{http_server.url}/a/b?x=1&x=2&y=", data=b'{"n": 1}', headers=AUTH)
    http_session.get(f"{http_server.url}/c")
    first, second = http_server.requests
    assert (first.seq, first.method, first.path, first.query) == (
        1,
        "POST",
        "/a/b",
        {"x": ["1", "2"], "y": [""]},
    )
    assert first.headers["authorization"] == f"Bearer {SECRET_CANARY}"
    assert (first.body, first.json()) == (b'{"n": 1}', {"n": 1})
    assert (second.seq, second.method, second.body) == (2, "GET", b"")
    assert first.received_at <= second.received_at


def test_chunked_bodies_are_read(
    http_server: FakeHTTPServer, http_session: requests.Session
) -> None:
    http_session.post(http_server.url, data=iter([b"ab", b"cd"]))
    assert http_server.requests[0].body == b"abcd"


def test_queued_replies_then_the_default(
    http_server: FakeHTTPServer, http_session: requests.Session
) -> None:
    http_server.enqueue(Reply.json({"n": 1}, 201, {"X-A": "1"}), Reply(503, "busy"))
    first = http_session.get(http_server.url)
    assert (first.status_code, first.json(), first.headers["X-A"]) == (201, {"n": 1}, "1")
    assert (http_session.get(http_server.url).status_code, http_server.default.status) == (503, 200)
    assert http_session.get(http_server.url).status_code == 200


def test_hang_records_then_never_answers(
    http_server: FakeHTTPServer, http_session: requests.Session
) -> None:
    http_server.enqueue(Reply.hang())
    with pytest.raises(requests.ReadTimeout):
        http_session.post(http_server.url, data=b"x", timeout=(1, 0.2))
    assert [r.body for r in http_server.wait_for(1)] == [b"x"]


def test_close_answers_nothing(http_server: FakeHTTPServer, http_session: requests.Session) -> None:
    http_server.enqueue(Reply.close())
    with pytest.raises(requests.ConnectionError, match="without response"):
        http_session.post(http_server.url, data=b"x")


def test_short_body_drops_mid_way(
    http_server: FakeHTTPServer, http_session: requests.Session
) -> None:
    http_server.enqueue(Reply(200, b"{}", short_by=10))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http_session.get(http_server.url)


def test_stop_ends_hung_and_idle_connections_at_once(http_session: requests.Session) -> None:
    server = FakeHTTPServer().start()
    http_session.get(server.url)  # leaves an idle keep-alive connection in the pool
    server.enqueue(Reply.hang())
    with pytest.raises(requests.ReadTimeout):
        http_session.get(server.url, timeout=(1, 0.1))
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0


def test_200_concurrent_connections_with_latency() -> None:
    """Benchmark support: 200 connections at once, each answered after 200 ms."""
    with WebhookFake(token=SECRET_CANARY) as server:
        server.latency = 0.2

        def post(n: int) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                body = json.dumps({"n": n})
                connection.request("POST", "/send", body, {**AUTH, "Idempotency-Key": f"k{n}"})
                return connection.getresponse().status
            finally:
                connection.close()

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=200) as pool:
            statuses = list(pool.map(post, range(200)))
        elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    assert 0.2 <= elapsed < 3.0, elapsed  # one latency, not 200 in a row
    assert len(server.accepted) == 200 and server.repeated_keys() == {}


# -- the webhook gateway


def post(
    session: requests.Session, server: WebhookFake, key: str = "k1", **headers: str
) -> requests.Response:
    return session.post(
        f"{server.url}/send",
        data=b'{"text": "hi"}',
        headers={**AUTH, "Idempotency-Key": key, **headers},
        timeout=(1, 2),
    )


def test_gateway_checks_token_content_type_and_json(
    webhook_server: WebhookFake, http_session: requests.Session
) -> None:
    assert post(http_session, webhook_server, Authorization="Bearer nope").status_code == 401
    assert post(http_session, webhook_server, **{"Content-Type": "text/plain"}).status_code == 415
    bad = http_session.post(f"{webhook_server.url}/send", data=b"{", headers=AUTH)
    assert (bad.status_code, bad.json()["code"]) == (400, "BAD_REQUEST")
    assert webhook_server.accepted == {}


def test_gateway_status_endpoint_and_dedupe(
    webhook_server: WebhookFake, http_session: requests.Session
) -> None:
    assert post(http_session, webhook_server).json() == {
        "code": "OK",
        "biz_id": "biz-000001",
        "message": "成功",
    }
    assert post(http_session, webhook_server).json()["biz_id"] == "biz-000001"
    known = http_session.get(f"{webhook_server.url}/status/k1")
    assert (known.status_code, known.json()) == (200, {"code": "OK", "biz_id": "biz-000001"})
    assert http_session.get(f"{webhook_server.url}/status/k2").status_code == 404
    assert webhook_server.repeated_keys() == {"k1": 2}


def test_gateway_status_may_require_the_token(
    webhook_server: WebhookFake, http_session: requests.Session
) -> None:
    webhook_server.status_requires_auth = True
    post(http_session, webhook_server)
    assert http_session.get(f"{webhook_server.url}/status/k1").status_code == 401
    assert http_session.get(f"{webhook_server.url}/status/k1", headers=AUTH).status_code == 200


def test_gateway_mode_precedence(
    webhook_server: WebhookFake, http_session: requests.Session
) -> None:
    webhook_server.mode = Mode.HTTP_500
    webhook_server.queue(Mode.OK, Mode.THROTTLED)
    webhook_server.on_request(2, Mode.ERROR_CODE)
    answers = [post(http_session, webhook_server, f"k{n}") for n in range(1, 5)]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (200, "OK"),  # the queue
        (200, "MOBILE_NUMBER_ILLEGAL"),  # on_request(2): the queue waits
        (429, "THROTTLED"),  # the queue
        (500, "SERVER_ERROR"),  # then the mode
    ]
    assert answers[2].headers["Retry-After"] == "3"


def test_gateway_acting_modes_are_remembered(
    webhook_server: WebhookFake, http_session: requests.Session
) -> None:
    webhook_server.mode = Mode.TRUNCATED
    text = post(http_session, webhook_server).text
    assert text.startswith('{"code": "OK"')
    with pytest.raises(ValueError):
        json.loads(text)
    webhook_server.mode = Mode.HTTP_503
    post(http_session, webhook_server, "k2")
    assert list(webhook_server.accepted) == ["k1"]
