"""Screens fetch their playlists from the real server on 127.0.0.1: JSON and text in the
screen's charset, ETag/304, per-screen tokens, JSON errors; each new version recorded
in the log (SQLite and PostgreSQL) and the deliveries it carried marked delivered."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from playwright.sync_api import Browser

from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.registry import Registry
from broadcaster.led.playlist import Entry, gaps
from broadcaster.log.models import led_fetches
from broadcaster.vocab import Status
from broadcaster.web.server import Server, bind, standalone
from broadcaster.web.settings import WebOptions
from tests.conftest import TZ
from tests.led.conftest import write_screens
from tests.web.conftest import PASSWORD, Live, fire
from tests.web.test_console import (  # noqa: F401  (the browser fixture)
    DESKTOP,
    PHONE,
    browser,
    check_not_blank,
    open_console,
)

NOW = dt.datetime(2026, 3, 3, 7, 0, tzinfo=TZ)
TOKEN = "tok-7f3a9c21e5"
ENV = {"TEST_SECRET_DOOR": TOKEN, "BROADCASTER_WEB_SECRET": "test-web-secret-0123456789abcdef"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def screens_live(tmp_path: Path, log_url: str) -> Iterator[Live]:
    path = write_screens(tmp_path / "campaign")
    clock = ManualClock(NOW)
    app = App.load(path, now=NOW, environ=ENV, state_dir=tmp_path / "var", registry=Registry())
    store, key = app.open_log(log_url)
    opts = WebOptions(port=0)
    service, source = standalone(app, store, key, log_url, opts, clock=clock)
    from broadcaster.web.service import create_app

    server = Server(create_app(service), bind("127.0.0.1", 0), opts).start()
    yield Live(server.url, service, clock, app)
    server.stop()
    source.close()
    service.close()
    store.close()


def get(live: Live, screen: str, **kw: object) -> requests.Response:
    headers = dict(AUTH) if screen == "door" else {}
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return requests.get(
        f"{live.url}/led/{screen}/playlist",
        headers=headers,
        timeout=10,
        **kw,  # type: ignore[arg-type]
    )


def fetch_rows(live: Live) -> list[tuple[str, str, str]]:
    query = sa.select(led_fetches.c.screen_id, led_fetches.c.version, led_fetches.c.via)
    rows = live.service.log.read(lambda c: c.execute(query.order_by(led_fetches.c.id)).all())
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_json_playlist_with_warning_slogan_hotline_and_own_content(screens_live: Live) -> None:
    live = screens_live
    keys = fire(live, "led-rotation", NOW.replace(hour=8))
    live.clock.set(NOW.replace(hour=8, minute=1))
    r = get(live, "door")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert r.headers["etag"] == f'"{data["version"]}"'
    assert data["screen"] == {
        "id": "door",
        "name": "便民服务中心门口屏",
        "path": ["测试镇", "便民服务中心门口屏"],
        "encoding": "gb2312",
        "width": 12,
        "lines": 2,
    }
    roles = [i["role"] for i in data["items"]]
    assert roles == ["warning", "own", "own", "own", "slogan", "hotline"]
    warning = data["items"][0]
    assert warning["id"] in keys and warning["text"].endswith("可疑请拨96110")
    # 26 h (warning_hours) unless the next send replaces it first
    assert warning["valid_until"] == "2026-03-04T10:00:00+08:00"
    assert data["items"][4]["text"] == "全民反诈，共创平安"  # routine theme: default slogan
    entries = [Entry(i["id"], i["role"], i["text"], (), i["seconds"]) for i in data["items"]]
    assert max(g.seconds for g in gaps(entries)) <= data["max_gap_seconds"] == 60
    # the fetch is a delivery: recorded with its version, the warning delivered
    assert fetch_rows(live) == [("door", data["version"], "fetch")]
    door_key = warning["id"]
    assert live.service.log.latest([door_key])[door_key].status is Status.DELIVERED
    gate_key = next(k for k in keys if k != door_key)
    assert live.service.log.latest([gate_key])[gate_key].status is Status.ACCEPTED  # not fetched


def test_etag_304_and_text_in_the_screen_charset(screens_live: Live) -> None:
    live = screens_live
    fire(live, "led-rotation", NOW.replace(hour=8))
    first = get(live, "door")
    etag = first.headers["etag"]
    again = get(live, "door", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    text = get(live, "door", params={"format": "text"})
    assert text.headers["content-type"] == "text/plain; charset=gb2312"
    assert text.headers["etag"] != etag  # another representation, another tag
    lines = text.content.decode("gbk").split("\r\n")
    assert lines[1] == "20\t办事大厅周六照常办公"
    assert text.content.decode("gbk").encode("gbk") == text.content
    by_accept = get(live, "door", headers={"Accept": "text/plain"})
    assert by_accept.content == text.content
    assert get(live, "door", headers={"If-None-Match": text.headers["etag"]}).status_code == 200
    gate = get(live, "gate", params={"format": "text"})  # no token on this screen
    assert gate.headers["content-type"] == "text/plain; charset=gbk"
    # fetching the same version again records nothing new
    assert [r[0] for r in fetch_rows(live)] == ["door", "gate"]


def test_a_new_version_after_the_next_send_is_recorded(screens_live: Live) -> None:
    live = screens_live
    fire(live, "led-rotation", NOW.replace(hour=8))
    v1 = get(live, "door").json()["version"]
    fire(live, "led-rotation", NOW.replace(hour=10))
    live.clock.set(NOW.replace(hour=10, minute=1))
    r = get(live, "door", headers={"If-None-Match": f'"{v1}"'})
    assert r.status_code == 200
    v2 = r.json()["version"]
    assert v2 != v1
    assert fetch_rows(live) == [("door", v1, "fetch"), ("door", v2, "fetch")]


ERRORS = [
    ("nowhere", {}, {}, 404, "unknown screen 'nowhere'"),
    ("door", {"Authorization": ""}, {}, 401, "token required"),
    ("door", {"Authorization": "Bearer wrong"}, {}, 403, "token refused"),
    ("door", {"Authorization": ""}, {"token": "wrong"}, 403, "token refused"),
    ("door", {}, {"format": "xml"}, 400, "unknown format 'xml'"),
]


def test_errors_are_json_with_the_right_status(screens_live: Live) -> None:
    for screen, headers, params, status, english in ERRORS:
        r = get(screens_live, screen, headers=headers, params=params)
        assert (r.status_code, r.json()["error"]) == (status, english)
        assert r.headers["content-type"] == "application/json"
        assert TOKEN not in r.text
    assert (
        get(screens_live, "door", headers={"Authorization": ""}).headers["www-authenticate"]
        == "Bearer"
    )
    assert fetch_rows(screens_live) == []


def test_token_in_the_query_and_openapi(screens_live: Live) -> None:
    r = requests.get(f"{screens_live.url}/led/door/playlist", params={"token": TOKEN}, timeout=10)
    assert r.status_code == 200
    head = requests.head(f"{screens_live.url}/led/door/playlist", headers=AUTH, timeout=10)
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", r.headers["etag"])
    spec = requests.get(f"{screens_live.url}/openapi.json", timeout=10).json()
    assert "/led/{screen}/playlist" in spec["paths"]
    assert json.dumps(spec).count(TOKEN) == 0


def test_the_screens_page_in_chromium_shows_stale_screens_first(
    browser: Browser,  # noqa: F811
    screens_live: Live,
    tmp_path: Path,
) -> None:
    live = screens_live
    live.service.accounts.add("vera", "viewer", PASSWORD)
    fire(live, "led-rotation", NOW.replace(hour=8))
    assert get(live, "door").status_code == 200
    live.clock.set(NOW.replace(hour=8, minute=10))
    for viewport in (DESKTOP, PHONE):
        if True:
            page = open_console(browser, live, "vera", viewport)
            page.goto(live.url + "/screens")
            check_not_blank(page, "#screens tr[data-screen]", tmp_path / f"{viewport['width']}.png")
            rows = page.locator("#screens tr[data-screen]")
            assert [rows.nth(i).get_attribute("data-screen") for i in range(2)] == ["gate", "door"]
            assert rows.nth(0).get_attribute("data-stale") == "yes"
            assert "从未 never" in rows.nth(0).inner_text()
            assert rows.nth(1).get_attribute("data-stale") == "no"
            assert "60 / 60 s" in rows.nth(1).inner_text()
            assert "失联 stale 1" in page.inner_text("#stale-count")
            page.context.close()
