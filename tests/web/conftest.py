"""Fixtures for the web service: a campaign with the echo plugin's receipt route, the real
server on 127.0.0.1 (port 0) in a thread, accounts, and logged-in HTTP sessions."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.registry import Registry
from broadcaster.web.server import Server, bind, standalone
from broadcaster.web.service import WebService, create_app
from broadcaster.web.settings import WebOptions
from tests.conftest import SECRET_CANARY, TZ, write_campaign
from tests.fakes.plugins import example_plugin, example_plugin_site  # noqa: F401

NOW = dt.datetime(2026, 3, 3, 9, 30, tzinfo=TZ)  # a Tuesday: twice-weekly fires at 10:00
ECHO_TOKEN = SECRET_CANARY
PASSWORD = "correct horse battery"
ENV = {"ECHO_TOKEN": ECHO_TOKEN, "BROADCASTER_WEB_SECRET": "test-web-secret-0123456789abcdef"}

CAMPAIGN = {
    "campaign": {"id": "webtest", "name": "网页测试活动", "office": "测试派出所"},
    "phases": [{"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}],
    "default_theme": "routine",
    "themes": {"routine": {"name": "日常", "topics": ["alpha", "beta", "gamma"]}},
    "templates": ["tpl"],
    "targets": [
        {
            "id": "town",
            "name": "测试镇",
            "audience": "villagers",
            "tags": ["township"],
            "children": [
                {"id": "g1", "name": "一组群", "tags": ["group"]},
                {"id": "g2", "name": "二组群", "tags": ["group"]},
                {
                    "id": "sms1",
                    "name": "短信名单",
                    "tags": ["sms_list"],
                    "contacts_file": "people.csv",
                },
            ],
        }
    ],
    "channels": {
        "handoff": {"type": "outbox", "kind": "bot"},
        "receipts": {
            "type": "echo",
            "kind": "sms",
            "addressing": "contacts",
            "settings": {"token": {"env": "ECHO_TOKEN"}},
        },
    },
    "rules": [
        {
            "id": "twice-weekly",
            "channels": ["handoff"],
            "targets": {"tags": ["group"]},
            "when": {"weekdays": ["tue", "fri"], "at": "10:00"},
        },
        {
            "id": "sms-monthly",
            "channels": ["receipts"],
            "targets": {"tags": ["sms_list"]},
            "when": {"monthdays": [5], "at": "09:00", "on_holiday": "next_working_day"},
        },
    ],
    "duties": [
        {
            "id": "groups-weekly",
            "name": "群每周三次",
            "targets": {"tags": ["group"]},
            "per": "week",
            "at_least": 3,
        }
    ],
}
PEOPLE = "name,phone\n张三,13800000001\n李四,13900000002\n王五,13700000003\n"


def write_web_campaign(folder: Path) -> Path:
    path = write_campaign(folder, "{}", extra={"people.csv": PEOPLE})
    path.write_text(json.dumps(CAMPAIGN, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@dataclass
class Live:
    """A running service: its URL, the service object, its clock."""

    url: str
    service: WebService
    clock: ManualClock
    app: App

    def session(self, name: str | None = None, password: str = PASSWORD) -> requests.Session:
        """A requests session, logged in as `name` when given."""
        s = requests.Session()
        if name is not None:
            login(s, self.url, name, password)
        return s


def csrf_of(s: requests.Session) -> str:
    return s.cookies.get("bc_csrf") or ""


def login(s: requests.Session, url: str, name: str, password: str = PASSWORD) -> requests.Response:
    s.get(f"{url}/login", timeout=10)
    r = s.post(
        f"{url}/login",
        data={"name": name, "password": password, "csrf": csrf_of(s), "next": "/"},
        timeout=30,
        allow_redirects=False,
    )
    return r


@pytest.fixture
def web_campaign(tmp_path: Path, example_plugin: None) -> Path:  # noqa: F811
    return write_web_campaign(tmp_path / "campaign")


@pytest.fixture
def live_factory(web_campaign: Path, log_url: str) -> Iterator[Callable[..., Live]]:
    """Start the real server (one per call) on the campaign and the `log_url` database."""
    started: list[tuple[Server, WebService, object, object]] = []

    def start(options: WebOptions | None = None, now: dt.datetime = NOW) -> Live:
        clock = ManualClock(now)
        app = App.load(
            web_campaign,
            now=now,
            environ=ENV,
            state_dir=web_campaign.parent / "var",
            registry=Registry(),
        )
        store, key = app.open_log(log_url)
        opts = options or WebOptions(port=0)
        service, source = standalone(app, store, key, log_url, opts, clock=clock)
        for name, role in (("olga", "operator"), ("vera", "viewer"), ("alan", "auditor")):
            if service.store.user(name) is None:
                service.accounts.add(name, role, PASSWORD)
        server = Server(create_app(service), bind("127.0.0.1", 0), opts).start()
        started.append((server, service, source, store))
        return Live(server.url, service, clock, app)

    yield start
    for server, service, source, store in reversed(started):
        server.stop()
        source.close()  # type: ignore[attr-defined]
        service.close()
        store.close()  # type: ignore[attr-defined]


@pytest.fixture
def live(live_factory: Callable[..., Live]) -> Live:
    return live_factory()


def fire(live: Live, rule_id: str, at: dt.datetime) -> list[str]:
    """Fire the rule's occurrence at `at` through the service's dispatcher; its delivery keys."""
    from broadcaster.model.plan import Planner

    app, dispatcher, _ = live.service.source.current()
    live.clock.set(at)
    spec = app.campaign.rule(rule_id)
    [occurrence] = [
        o for o in Planner(app.campaign).rule_occurrences(spec, at, at + dt.timedelta(minutes=1))
    ]
    handle = dispatcher.fire(occurrence)
    handle.wait()
    live.service.log.record_occurrence(
        app.campaign.id, occurrence.id, occurrence.rule_id, occurrence.at, "done", "", at
    )
    return handle.keys
