"""Pytest fixtures for the fakes; import them into a conftest to use them.

* `http_server`: a started `FakeHTTPServer` (queue replies with `enqueue()`).
* `webhook_server`: a started `WebhookFake`, token `SECRET_CANARY`, mode OK.
* `sms_gateway`: a started `SmsGatewayFake` (Kannel/playSMS-style generic SMS gateway).
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

from .aliyun import AliyunFake
from .dingtalk import DingTalkFake
from .feishu import FeishuFake
from .http import FakeHTTPServer, serving
from .sms_gateway import SmsGatewayFake
from .tencent import TencentFake
from .webhook_server import WebhookFake
from .wecom import WeComFake

__all__ = [
    "aliyun_fake",
    "dingtalk_fake",
    "feishu_fake",
    "http_server",
    "http_session",
    "sms_gateway",
    "tencent_fake",
    "webhook_server",
    "wecom_fake",
]

ALIYUN_KEY_ID = "LTAI-test-key-id"
TENCENT_SECRET_ID = "AKID-test-secret-id"


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
def sms_gateway() -> Iterator[SmsGatewayFake]:
    """A generic SMS gateway in the Kannel/playSMS shape (tests/fakes/sms_gateway.py)."""
    yield from serving(SmsGatewayFake())


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def aliyun_fake() -> Iterator[AliyunFake]:
    """Aliyun's RPC endpoint: key `ALIYUN_KEY_ID` with secret `SECRET_CANARY`, clock at NOW."""
    from tests.conftest import NOW

    yield from serving(AliyunFake(keys={ALIYUN_KEY_ID: SECRET_CANARY}, clock=lambda: NOW))


@pytest.fixture
def tencent_fake() -> Iterator[TencentFake]:
    """Tencent's API 3.0 endpoint: `TENCENT_SECRET_ID` with key `SECRET_CANARY`, clock at NOW."""
    from tests.conftest import NOW

    yield from serving(TencentFake(keys={TENCENT_SECRET_ID: SECRET_CANARY}, clock=lambda: NOW))
