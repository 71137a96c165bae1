"""Receipts pushed over real HTTP to `broadcaster serve`: the Aliyun fake posts SmsReport
arrays (out of order, twice) to the aliyun-sms route, the Tencent fake's callback bodies
go to the tencent-sms route; each delivery gets one receipt event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.engine.app import App
from broadcaster.engine.clock import ManualClock
from broadcaster.engine.registry import Registry
from broadcaster.model.plan import Planner
from broadcaster.vocab import Status
from broadcaster.web.server import Server, bind, standalone
from broadcaster.web.service import WebService, create_app
from broadcaster.web.settings import WebOptions
from tests.conftest import SECRET_CANARY, TZ
from tests.engine.helpers import write_engine_campaign
from tests.fakes.aliyun import AliyunFake
from tests.fakes.fixtures import ALIYUN_KEY_ID

NOW = dt.datetime(2026, 3, 3, 9, 30, tzinfo=TZ)
ENV = {
    "SMS_ALIYUN_ID": ALIYUN_KEY_ID,
    "SMS_ALIYUN_SECRET": SECRET_CANARY,
    "SMS_RECEIPT_TOKEN": "receipt-token-1",
    "BROADCASTER_WEB_SECRET": "test-web-secret-0123456789abcdef",
}


@pytest.fixture
def served(tmp_path: Path, aliyun_fake: AliyunFake, log_url: str) -> Iterator[Any]:
    path = write_engine_campaign(
        tmp_path,
        "http://unused",
        contacts=3,
        channel={
            "type": "aliyun-sms",
            "settings": {
                "access_key_id": {"env": "SMS_ALIYUN_ID"},
                "access_key_secret": {"env": "SMS_ALIYUN_SECRET"},
                "sign_name": "平安县反诈中心",
                "template_code": "SMS_71390007",
                "endpoint": f"{aliyun_fake.url}/",
                "receipt_token": {"env": "SMS_RECEIPT_TOKEN"},
                "timeout": [1, 2],
            },
        },
    )
    clock = ManualClock(NOW)
    aliyun_fake.clock = clock.now
    app = App.load(path, now=NOW, environ=ENV, state_dir=tmp_path / "var", registry=Registry())
    store, key = app.open_log(log_url)
    options = WebOptions(port=0)
    service, source = standalone(app, store, key, log_url, options, clock=clock)
    server = Server(create_app(service), bind("127.0.0.1", 0), options).start()
    try:
        yield server.url, service, clock
    finally:
        server.stop()
        source.close()  # type: ignore[attr-defined]
        service.close()
        store.close()


def fire(service: WebService, clock: ManualClock) -> list[str]:
    app, dispatcher, _ = service.source.current()
    at = dt.datetime(2026, 3, 3, 10, 0, tzinfo=TZ)
    clock.set(at)
    spec = app.campaign.rule("blast")
    [occurrence] = list(
        Planner(app.campaign).rule_occurrences(spec, at, at + dt.timedelta(minutes=1))
    )
    handle = dispatcher.fire(occurrence)
    handle.wait()
    return handle.keys


def test_sms_reports_pushed_out_of_order_and_twice_are_recorded_once(
    served: Any, aliyun_fake: AliyunFake
) -> None:
    url, service, clock = served
    keys = fire(service, clock)
    assert {s.status for s in service.log.latest(keys).values()} == {Status.ACCEPTED}
    aliyun_fake.receipt_status["13800000002"] = (2, "MK:0001")
    reports = aliyun_fake.sms_reports()
    hook = f"{url}/hooks/sms/receipts?token=receipt-token-1"
    first = AliyunFake.push(hook, reports[::-1])
    assert first.status_code == 200 and first.json() == {"code": 0, "msg": "接收成功"}
    assert AliyunFake.push(hook, reports[:2]).status_code == 200  # pushed again
    states = service.log.latest(keys)
    by_status = sorted(s.status for s in states.values())
    assert by_status == [Status.DELIVERED, Status.DELIVERED, Status.FAILED]
    for k in keys:
        received = [e.status for e in service.log.events(k)][3:]
        assert len(received) == 1  # one receipt event, however often it was pushed
    assert AliyunFake.push(f"{url}/hooks/sms/receipts?token=wrong", reports).status_code == 401
    assert set(aliyun_fake.sms_received.values()) == {1}
