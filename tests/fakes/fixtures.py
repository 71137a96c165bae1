"""Pytest fixtures for the fakes; import them into a conftest to use them.

* `http_server`: a started `FakeHTTPServer` (queue replies with `enqueue()`).
* `webhook_server`: a started `WebhookFake`, token `SECRET_CANARY`, mode OK.
* `sms_gateway`: a started `SmsGatewayFake` (Kannel/playSMS-style generic SMS gateway).
* `http_session`: a `requests.Session` closed after the test.

Each server is stopped after its test (hung handlers are woken, connections closed),
and the test fails if the fake itself raised while answering.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import SECRET_CANARY

from .http import FakeHTTPServer, serving
from .sms_gateway import SmsGatewayFake
from .webhook_server import WebhookFake

__all__ = ["http_server", "http_session", "sms_gateway", "webhook_server"]


@pytest.fixture
def http_server() -> Iterator[FakeHTTPServer]:
    yield from serving(FakeHTTPServer())


@pytest.fixture
def webhook_server() -> Iterator[WebhookFake]:
    yield from serving(WebhookFake(token=SECRET_CANARY))


@pytest.fixture
def sms_gateway() -> Iterator[SmsGatewayFake]:
    """A generic SMS gateway in the Kannel/playSMS shape (tests/fakes/sms_gateway.py)."""
    yield from serving(SmsGatewayFake())


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
