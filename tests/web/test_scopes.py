"""Plugin routes in every scope (/hooks, /led, /confirm) with path parameters, and
concurrent duplicate receipts: each delivery is delivered exactly once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.registry import Registry
from broadcaster.vocab import Status
from broadcaster.web.server import Server, bind, standalone
from broadcaster.web.service import create_app
from broadcaster.web.settings import WebOptions
from tests.web.conftest import CAMPAIGN, ENV, NOW, Live, fire, write_web_campaign
from tests.web.test_hooks import SMS_AT, post


@pytest.fixture
def scoped(tmp_path: Path, log_url: str, example_plugin: None) -> Iterator[str]:
    path = write_web_campaign(tmp_path / "c")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["channels"]["screens"] = {"type": "scoped", "kind": "led"}
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    app = App.load(
        path,
        now=NOW,
        environ=ENV,
        state_dir=tmp_path / "var",
        registry=Registry(extra={"scoped": "tests.web.scoped_plugin:ScopedChannel"}),
    )
    store, key = app.open_log(log_url)
    service, source = standalone(app, store, key, log_url, WebOptions(port=0), ManualClock(NOW))
    server = Server(create_app(service), bind("127.0.0.1", 0), WebOptions(port=0)).start()
    try:
        yield server.url
    finally:
        server.stop()
        source.close()
        service.close()
        store.close()
    assert CAMPAIGN["channels"].get("screens") is None  # the shared config was not changed


def test_routes_in_every_scope(scoped: str) -> None:
    r = requests.get(scoped + "/led/screens/screen-1/playlist", timeout=10)
    assert r.status_code == 200 and r.json()["items"] == ["凡是刷单都是诈骗"]
    r = requests.get(scoped + "/led/screens/screen-9/playlist", timeout=10)
    assert r.status_code == 404 and r.json()["错误"] == "没有此屏幕"
    r = requests.get(scoped + "/led/nosuch/screen-1/playlist", timeout=10)
    assert r.status_code == 404 and r.json()["error"] == "unknown channel"
    ok = requests.get(scoped + "/confirm/screens/good", timeout=10)
    assert ok.status_code == 200 and "已确认" in ok.text
    bad = requests.post(scoped + "/confirm/screens/forged", timeout=10)
    assert bad.status_code == 403 and bad.headers["content-type"].startswith("text/html")
    assert "链接无效" in bad.text and "<html" in bad.text  # a page for people, not JSON
    gone = requests.get(scoped + "/confirm/nosuch/x", timeout=10)
    assert gone.status_code == 404 and "没有此渠道" in gone.text and "<html" in gone.text
    bug = requests.post(scoped + "/hooks/screens/ping", timeout=10)
    assert bug.status_code == 500
    assert bug.json() == {"error": "plugin error", "错误": "渠道插件出错 the channel plugin failed"}
    paths = set(requests.get(scoped + "/openapi.json", timeout=10).json()["paths"])
    assert {
        "/led/screens/{screen}/playlist",
        "/confirm/screens/{token}",
        "/hooks/screens/ping",
        "/hooks/receipts/receipts",
    } <= paths


def test_concurrent_duplicate_receipts_deliver_each_once(live: Live) -> None:
    keys = fire(live, "sms-monthly", SMS_AT)
    barrier = threading.Barrier(12)
    answers: list[int] = []

    def push() -> None:
        barrier.wait()
        body = [{"provider_id": f"echo-{i}", "status": "delivered"} for i in (1, 2, 3)]
        answers.append(post(live, body).status_code)

    threads = [threading.Thread(target=push) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [200] * 12
    for key in keys:
        events = [e.status for e in live.service.log.events(key)]
        assert events.count(Status.DELIVERED) == 1, events
        assert live.service.log.latest([key])[key].status is Status.DELIVERED
