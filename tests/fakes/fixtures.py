"""Pytest fixtures for the fakes; import them into a conftest to use them.

* `http_server`: a started `FakeHTTPServer` (queue replies with `enqueue()`).
* `webhook_server`: a started `WebhookFake`, token `SECRET_CANARY`, mode OK.
* `wecom_fake`, `dingtalk_fake`, `feishu_fake`: started group-bot fakes whose clock
  reads the tests' fixed NOW (set `fake.clock` to follow a virtual clock), no bots yet.
* `http_session`: a `requests.Session` closed after the test.

Each server is stopped after its test (hung handlers are woken, connections closed),
and the test fails if the fake itself raised while answering.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import NOW, SECRET_CANARY

from .dingtalk import DingTalkFake
from .feishu import FeishuFake
from .http import FakeHTTPServer, serving
from .webhook_server import WebhookFake
from .wecom import WeComFake

__all__ = [
    "dingtalk_fake",
    "feishu_fake",
    "http_server",
    "http_session",
    "webhook_server",
    "wecom_fake",
]


@pytest.fixture
def http_server() -> Iterator[FakeHTTPServer]:
    yield from serving(FakeHTTPServer())


@pytest.fixture
def webhook_server() -> Iterator[WebhookFake]:
    yield from serving(WebhookFake(token=SECRET_CANARY))


def _fixed_now() -> float:
    return NOW.timestamp()


@pytest.fixture
def wecom_fake() -> Iterator[WeComFake]:
    yield from serving(WeComFake(_fixed_now))


@pytest.fixture
def dingtalk_fake() -> Iterator[DingTalkFake]:
    yield from serving(DingTalkFake(_fixed_now))


@pytest.fixture
def feishu_fake() -> Iterator[FeishuFake]:
    yield from serving(FeishuFake(_fixed_now))


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
