"""Plugin routes through the real server: the echo plugin's receipt route turns accepted
deliveries into delivered ones; every kind of bad request gets its status and JSON."""

from __future__ import annotations

import datetime as dt
import json
import socket

import requests

from broadcaster.vocab import Status
from tests.web.conftest import ECHO_TOKEN, TZ, Live, fire

SMS_AT = dt.datetime(2026, 3, 5, 9, 0, tzinfo=TZ)
HOOK = "/hooks/receipts/receipts"


def post(live: Live, body: object, token: str = ECHO_TOKEN, path: str = HOOK) -> requests.Response:
    return requests.post(
        live.url + path,
        data=json.dumps(body) if not isinstance(body, bytes) else body,
        headers={"X-Echo-Token": token, "Content-Type": "application/json"},
        timeout=10,
    )


def test_a_pushed_receipt_turns_accepted_into_delivered(live: Live) -> None:
    keys = fire(live, "sms-monthly", SMS_AT)
    states = live.service.log.latest(keys)
    assert {s.status for s in states.values()} == {Status.ACCEPTED}
    by_provider = {s.provider_id: k for k, s in states.items()}
    assert sorted(by_provider) == ["echo-1", "echo-2", "echo-3"]
    r = post(live, [{"provider_id": "echo-2", "status": "delivered"}])
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "received": 1}
    after = live.service.log.latest(keys)
    assert after[by_provider["echo-2"]].status is Status.DELIVERED
    assert after[by_provider["echo-1"]].status is Status.ACCEPTED
    # the same receipt again changes nothing and is not an error
    assert post(live, [{"provider_id": "echo-2", "status": "delivered"}]).status_code == 200
    assert [e.status for e in live.service.log.events(by_provider["echo-2"])].count(
        Status.DELIVERED
    ) == 1
    # a failure receipt
    assert post(live, [{"provider_id": "echo-3", "status": "failed"}]).status_code == 200
    assert live.service.log.latest(keys)[by_provider["echo-3"]].status is Status.FAILED
    metrics = requests.get(live.url + "/metrics", timeout=10).text
    assert (
        'broadcaster_inbound_requests_total{channel="receipts",code="200",scope="hooks"} 3.0'
        in metrics
    )


def test_bad_requests_get_their_status_and_json(live: Live) -> None:
    fire(live, "sms-monthly", SMS_AT)
    cases = [
        (post(live, [{"provider_id": "echo-1"}], token="wrong"), 401),
        (post(live, [{"provider_id": "echo-1"}], token=""), 401),
        (post(live, b"{not json"), 400),
        (post(live, b"\xff\xfe\x00garbage"), 400),
        (post(live, {"provider_id": "echo-1"}), 400),  # not a list
        (post(live, [{"provider_id": "echo-404"}]), 404),  # matches no delivery
        (post(live, [], path="/hooks/nochannel/receipts"), 404),
        (post(live, [], path="/hooks/receipts/nothing"), 404),
        (post(live, [], path="/hooks/handoff/receipts"), 404),  # outbox has no routes
        (post(live, [], path="/led/receipts/receipts"), 404),  # wrong scope
        (requests.get(live.url + HOOK, timeout=10), 405),
        (post(live, b"[" + b'{"provider_id": "echo-1"},' * 60_000 + b"{}]"), 413),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.text[:200])
        body = response.json()
        assert set(body) == {"error", "错误"} or "error" in body
        assert "Traceback" not in response.text
    assert cases[10][0].headers["allow"] == "POST"
    # the unmatched receipt was refused, nothing changed
    assert all(
        s.status is Status.ACCEPTED
        for s in live.service.log.deliveries(campaign="webtest", channel="receipts")
    )


def raw_request(live: Live, request_line: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request exactly as written (no client normalises the path)."""
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"{request_line}\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_path_tricks_are_refused(live: Live) -> None:
    for line in (
        "POST /hooks/receipts/../receipts HTTP/1.1",
        "POST /hooks/receipts/%2e%2e/receipts HTTP/1.1",
        "POST /hooks/../static/console.css HTTP/1.1",
        "GET /static/../service.py HTTP/1.1",
        "POST /hooks/receipts//receipts HTTP/1.1",
        "POST /hooks/receipts/receipts%00 HTTP/1.1",
        "POST /hooks/receipts/a%2F..%2Freceipts HTTP/1.1",
        "POST /hooks/rece%5Cipts/receipts HTTP/1.1",
    ):
        status, body = raw_request(live, line, b"[]")
        assert status in (400, 404), line
        assert b"Traceback" not in body
        if line.split()[1].startswith("/hooks"):
            assert "error" in json.loads(body), line


def test_a_declared_body_over_the_limit_is_refused_before_reading(live: Live) -> None:
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n"
            "Content-Type: application/json\r\n\r\n".encode()
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413")
