"""A township campaign with a relay (township → village → grid group) through a hand-off
channel whose links are sent by a webhook notify channel; the real service on a port
known before the config is written (the links carry the public address)."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.channel import Delivery
from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.registry import Registry
from broadcaster.web.server import Server, bind, standalone
from broadcaster.web.service import create_app
from broadcaster.web.settings import WebOptions
from tests.conftest import TZ, write_campaign
from tests.fakes.webhook_server import WebhookFake
from tests.web.conftest import Live

__all__ = [
    "AT",
    "ENV",
    "NOTIFY_TOKEN",
    "confirm_by_link",
    "handoff_live",
    "link_of",
    "relay_live",
    "relay_yaml",
    "start_relay_service",
]

AT = dt.datetime(2026, 3, 3, 9, 0, tzinfo=TZ)  # the daily push
NOTIFY_TOKEN = "notify-token-5d1c"
ENV = {"NOTIFY_TOKEN": NOTIFY_TOKEN, "BROADCASTER_WEB_SECRET": "relay-web-secret-0123456789abcdef"}


def relay_yaml(public_url: str, notify_url: str, *, relay: str | None = None) -> str:
    relay = (
        relay
        or """
    relay:
      via: wx
      levels:
        - {to: village, within: 2h}
        - {to: grid, within: 2h}
"""
    )
    return f"""
campaign: {{id: relay, name: 转发测试活动, office: 东风镇派出所}}
phases:
  - {{id: main, name: 集中宣传, start: 2026-01-01, end: 2026-12-31}}
default_theme: routine
themes:
  routine: {{name: 日常, topics: [alpha]}}
templates: [tpl]
targets:
  - id: town
    name: 东风镇
    audience: villagers
    tags: [township]
    children:
      - id: v1
        name: 李家村
        tags: [village]
        address:
          wx: {{key: li-cadre, name: 李村干}}
          sms: li-cadre
        children:
          - id: g1
            name: 李家村一网格群
            tags: [grid]
            address: {{wx: {{key: wang-grid, name: 王网格员}}, sms: wang-grid}}
          - id: g2
            name: 李家村二网格群
            tags: [grid]
            address: {{wx: {{key: zhang-grid, name: 张网格员}}, sms: zhang-grid}}
      - id: v2
        name: 王家村
        tags: [village]
        address: {{wx: {{key: wu-cadre, name: 吴村干}}, sms: wu-cadre}}
        children:
          - id: g3
            name: 王家村一网格群
            tags: [grid]
            address: {{wx: {{key: zhou-grid, name: 周网格员}}, sms: zhou-grid}}
channels:
  town-bot: {{type: outbox, kind: bot}}
  wx:
    type: handoff
    kind: bot
    settings: {{public_url: "{public_url}", link_hours: 24, notify: sms}}
  sms:
    type: webhook
    kind: sms
    addressing: target
    settings:
      url: "{notify_url}/sms/{{address}}"
      headers: {{Authorization: "Bearer {{token}}"}}
      secrets: {{token: {{env: NOTIFY_TOKEN}}}}
      success: {{json_path: code, equals: OK, id_path: biz_id}}
rules:
  - id: grid-weekly
    channels: [wx]
    targets: {{tags: [grid]}}
    when: {{weekdays: [fri], at: "10:00"}}
  - id: case-push
    channels: [town-bot]
    targets: {{tags: [township]}}
    when: {{daily: true, at: "09:00"}}
{relay}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_relay_service(folder: Path, log_url: str, notify: WebhookFake) -> Iterator[Live]:
    """The real service (its own dispatcher) on a free port, on the relay campaign."""
    port = free_port()
    notify.token = NOTIFY_TOKEN
    path = write_campaign(folder, relay_yaml(f"http://127.0.0.1:{port}", notify.url))
    clock = ManualClock(AT - dt.timedelta(minutes=1))
    app = App.load(path, now=AT, environ=ENV, state_dir=folder / "var", registry=Registry())
    store, key = app.open_log(log_url)
    options = WebOptions(port=port)
    service, source = standalone(app, store, key, log_url, options, clock=clock)
    server = Server(create_app(service), bind("127.0.0.1", port), options).start()
    try:
        yield Live(server.url, service, clock, app)
    finally:
        server.stop()
        source.close()
        service.close()
        store.close()


def link_of(live: Live, key: str) -> str:
    """The person's link for a hand-off delivery, as the channel makes it."""
    _, dispatcher, _ = live.service.source.current()
    state = live.service.log.latest([key])[key]
    delivery: Delivery | None = dispatcher.resolver.delivery(state)
    assert delivery is not None
    return str(dispatcher.channel("wx").link_for(delivery))  # type: ignore[attr-defined]


@pytest.fixture
def relay_live(tmp_path: Path, log_url: str, webhook_server: WebhookFake) -> Iterator[Live]:
    """The service on SQLite and on PostgreSQL."""
    yield from start_relay_service(tmp_path / "campaign", log_url, webhook_server)


@pytest.fixture
def handoff_live(tmp_path: Path, webhook_server: WebhookFake) -> Iterator[Live]:
    """The service on SQLite only: for the page tests, which do not exercise the log."""
    from broadcaster.log import default_url

    url = default_url(tmp_path / "state")
    yield from start_relay_service(tmp_path / "campaign", url, webhook_server)


def confirm_by_link(live: Live, key: str) -> None:
    """What the person does: open the link, press "已转发 forwarded"."""
    import re

    import requests

    link = link_of(live, key)
    with requests.Session() as s:
        page = s.get(link, timeout=10)
        assert page.status_code == 200, page.text[:300]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        done = s.post(link, data={"csrf": csrf.group(1)}, timeout=10)
        assert done.status_code == 200, done.text[:300]
