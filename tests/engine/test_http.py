"""The channel session: the fast path sends the same request, and cookies still work."""

from __future__ import annotations

import gzip
import http.client
import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from broadcaster.channels._http import before_sending
from broadcaster.engine.http import ChannelSession, _Connection, parse_header_lines
from tests.fakes.http import FakeHTTPServer, Reply


def test_a_cookie_the_provider_sets_is_sent_back_and_plain_answers_store_none() -> None:
    with FakeHTTPServer() as server, ChannelSession() as session:
        server.enqueue(
            Reply.json({"ok": True}),
            Reply.json({"ok": True}, headers={"Set-Cookie": "sid=abc; Path=/"}),
            Reply.json({"ok": True}),
        )
        url = f"http://127.0.0.1:{server.port}/send"
        session.request("POST", url, data=b"1", headers={"X-A": "1"})
        assert not session.cookies
        session.request("POST", url, data=b"2")
        assert session.cookies.get("sid") == "abc"
        session.request("POST", url, data=b"3")
        first, _, third = server.requests
        assert "cookie" not in first.headers
        assert first.headers["X-A"] == "1" and first.body == b"1"
        assert third.headers["cookie"] == "sid=abc"


class _Recording:
    """A real socket that notes every write."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.writes = sock, list[bytes]()

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _sent(body: Any, **kw: Any) -> tuple[list[bytes], bytes]:
    """The writes of one request on a connected socket pair, and what the peer read."""
    ours, peer = socket.socketpair()
    with ours, peer:
        conn = _Connection("127.0.0.1", 9)  # the socket is given: never connects
        conn.sock = recording = _Recording(ours)  # type: ignore[assignment]
        conn.request("POST", "/send", body=body, headers={"X-A": "1"}, **kw)
        peer.settimeout(2)
        return recording.writes, peer.recv(65536)


def test_a_request_leaves_in_one_write_header_block_and_body() -> None:
    writes, wire = _sent(b'{"mobile": "13800000001"}')
    assert len(writes) == 1 and writes[0] == wire
    head, body = wire.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /send HTTP/1.1\r\n") and b"\r\nContent-Length: 25" in head
    assert b"\r\nX-A: 1" in head and body == b'{"mobile": "13800000001"}'
    writes, wire = _sent("content=警惕刷单")  # text (a form body): encoded, still one write
    assert len(writes) == 1 and wire.endswith("\r\n\r\ncontent=警惕刷单".encode())


def test_a_body_in_pieces_and_no_body_are_written_as_urllib3_writes_them() -> None:
    def pieces() -> Iterator[bytes]:
        yield b"ab"
        yield b"cd"

    writes, wire = _sent(pieces(), chunked=True)
    assert writes[1:] == [b"2\r\nab\r\n", b"2\r\ncd\r\n", b"0\r\n\r\n"]
    assert writes[0].endswith(b"\r\n\r\n") and b"".join(writes) == wire
    writes, wire = _sent(None)
    assert writes == [wire] and wire.endswith(b"\r\nX-A: 1\r\n\r\n")


# -- the direct path (no redirect to follow): requests' own errors and answers ---------------


def _direct(session: ChannelSession, url: str, **kw: Any) -> requests.Response:
    return session.request("POST", url, data=b"x", allow_redirects=False, **kw)


def test_a_direct_send_answers_as_requests_would() -> None:
    body = gzip.compress(b'{"code": "OK"}')
    with FakeHTTPServer() as server, ChannelSession() as session:
        server.enqueue(
            Reply(200, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
            Reply(302, b"", {"Location": "/elsewhere"}),
            Reply.json({"code": "OK"}),
        )
        url = f"http://127.0.0.1:{server.port}/send"
        first = _direct(session, url, timeout=(2, 2))
        assert first.status_code == 200 and first.json() == {"code": "OK"}  # decoded
        assert first.headers["content-type"] == "application/json"
        assert first.url == url and first.request.method == "POST"
        moved = _direct(session, url)
        assert moved.status_code == 302 and moved.is_redirect  # returned, not followed
        assert _direct(session, url).json() == {"code": "OK"}
        assert [r.path for r in server.requests] == ["/send"] * 3  # never /elsewhere
        assert len({r.headers.get("user-agent") for r in server.requests}) == 1
        assert server.requests[0].headers["content-length"] == "1"


def test_a_direct_send_raises_the_errors_requests_raises() -> None:
    with FakeHTTPServer() as server, ChannelSession() as session:
        url = f"http://127.0.0.1:{server.port}/send"
        server.enqueue(Reply.hang())
        with pytest.raises(requests.ReadTimeout):
            _direct(session, url, timeout=(2, 0.2))
        server.enqueue(Reply.close())
        with pytest.raises(requests.ConnectionError) as dropped:
            _direct(session, url, timeout=(2, 2))
        assert not before_sending(dropped.value)  # the request had left: outcome unknown
        server.enqueue(Reply(200, b'{"code": "O', {"Content-Type": "application/json"}, short_by=9))
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            _direct(session, url, timeout=(2, 2))
    with ChannelSession() as session, pytest.raises(requests.ConnectionError) as refused:
        _direct(session, url, timeout=(2, 2))  # the server is gone: nothing listens
    assert before_sending(refused.value)  # safe to try again


def test_a_direct_send_through_a_configured_proxy_takes_requests_own_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeHTTPServer() as proxy, ChannelSession() as session:
        proxy.enqueue(Reply.json({"via": "proxy"}))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        answer = _direct(session, "http://gateway.invalid/send", timeout=(2, 2))
        assert answer.json() == {"via": "proxy"}
        assert proxy.requests[0].headers["host"] == "gateway.invalid"


@pytest.mark.parametrize(
    "block",
    [
        b"Server: x\r\nDate: Sat\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: 36\r\n\r\n",
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Trailing: v  \r\nX-Empty:\r\nX-Tab:\tt\r\n\r\n",
        b"X-Folded: a\r\n b\r\nContent-Length: 3\r\n\r\n",  # folded: the email package's
        b"Not a header line\r\nContent-Length: 3\r\n\r\n",  # malformed: the email package's
        b"X-Latin: caf\xe9\r\n\r\n",
        b"X-Bare-LF: v\n\n",
        b"Content-Length: 3\r\n",  # cut off before the blank line
    ],
)
def test_answer_headers_read_as_http_client_reads_them(block: bytes) -> None:
    expected = http.client.parse_headers(io.BytesIO(block))
    lines = http.client._read_headers(io.BytesIO(block))  # type: ignore[attr-defined]
    found = parse_header_lines(lines)
    assert found.items() == expected.items()
    assert found.get_all("set-cookie") == expected.get_all("set-cookie")
    assert len(found.defects) == len(expected.defects)
    assert (found.get_payload() or "") == (expected.get_payload() or "")
