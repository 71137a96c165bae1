"""The channel session: the fast path sends the same request, and cookies still work."""

from __future__ import annotations

from broadcaster.engine.http import ChannelSession
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
