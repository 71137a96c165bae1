"""Fixtures for channel tests: the fake servers, a fixed clock, a delivery factory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from broadcaster.channel import Delivery
from tests.conftest import NOW
from tests.fakes.deliveries import delivery
from tests.fakes.fixtures import (  # noqa: F401
    dingtalk_fake,
    feishu_fake,
    http_server,
    http_session,
    sms_gateway,
    webhook_server,
    wecom_fake,
)

MakeDelivery = Callable[..., Delivery]


@pytest.fixture
def clock() -> Callable[[], dt.datetime]:
    """A fixed aware "now" (Monday 2026-03-02 09:00 Asia/Shanghai)."""
    return lambda: NOW


@pytest.fixture
def make_delivery() -> MakeDelivery:
    """`make_delivery(n, **kw)`: see `delivery()`."""
    return delivery
