"""aliyun-sms, tencent-sms and voice-call through the engine: log first, partial failures,
per-number caps, timeouts reconciled, receipts pulled and pushed (twice, out of order),
numbers a channel cannot call, and secrets that never show."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broadcaster.channel import InboundRequest
from broadcaster.cli import cli
from broadcaster.engine.clock import VirtualClock
from broadcaster.engine.recovery import Recovery
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import ErrorClass, Status
from tests.conftest import SECRET_CANARY
from tests.engine.helpers import at, load, numbers, write_engine_campaign
from tests.fakes.aliyun import AliyunFake, Fault
from tests.fakes.fixtures import ALIYUN_KEY_ID, TENCENT_SECRET_ID
from tests.fakes.tencent import TencentFake

KEY = b"sms-cloud-key"
ENVIRON = {
    "SMS_ALIYUN_ID": ALIYUN_KEY_ID,
    "SMS_ALIYUN_SECRET": SECRET_CANARY,
    "SMS_TENCENT_ID": TENCENT_SECRET_ID,
    "SMS_TENCENT_KEY": SECRET_CANARY,
}


def aliyun_channel(fake: AliyunFake, **settings: Any) -> dict[str, Any]:
    return {
        "type": "aliyun-sms",
        "settings": {
            "access_key_id": {"env": "SMS_ALIYUN_ID"},
            "access_key_secret": {"env": "SMS_ALIYUN_SECRET"},
            "sign_name": "平安县反诈中心",
            "template_code": "SMS_71390007",
            "endpoint": f"{fake.url}/",
            "timeout": [1, 1],
            **settings,
        },
    }


def tencent_channel(fake: TencentFake, **settings: Any) -> dict[str, Any]:
    return {
        "type": "tencent-sms",
        "settings": {
            "secret_id": {"env": "SMS_TENCENT_ID"},
            "secret_key": {"env": "SMS_TENCENT_KEY"},
            "sdk_app_id": fake.app_id,
            "sign_name": "平安县反诈中心",
            "template_id": "1110",
            "endpoint": f"{fake.url}/",
            "timeout": [1, 1],
            **settings,
        },
    }


class Engine:
    """One campaign whose `sms` channel is a cloud provider's fake, on a virtual clock."""

    def __init__(self, folder: Path, store: DeliveryLog, channel: dict[str, Any], contacts: int):
        self.path = write_engine_campaign(
            folder, "http://unused", contacts=contacts, channel=channel
        )
        self.clock = VirtualClock(at(2026, 3, 3, 10))
        self.app = load(self.path, environ=ENVIRON)
        self.store = store
        self.dispatcher = self.app.dispatcher(store, KEY, clock=self.clock, heartbeat=False)
        self.recovery = Recovery(self.dispatcher)

    def fire(self) -> dict[str, int]:
        campaign = self.app.campaign
        occurrence = next(
            Planner(campaign).rule_occurrences(
                campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        return self.dispatcher.fire(occurrence).wait().counts

    def sweep(self, when: dt.datetime) -> None:
        self.clock.set(when)
        self.recovery.sweep().wait()

    def states(self) -> dict[str, Any]:
        return {s.recipient_display[-4:]: s for s in self.store.deliveries(channel="sms")}

    def events(self, tail: str) -> list[Status]:
        return [e.status for e in self.store.events(self.states()[tail].key)]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeliveryLog]:
    log = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    yield log
    log.close()


@pytest.fixture
def engines(tmp_path: Path, store: DeliveryLog) -> Iterator[Any]:
    made: list[Engine] = []

    def make(channel: dict[str, Any], contacts: int = 3) -> Engine:
        engine = Engine(tmp_path / f"c{len(made)}", store, channel, contacts)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispatcher.close()


def follow(fake: AliyunFake | TencentFake, engine: Engine) -> None:
    fake.clock = engine.clock.now


def phone(n: int) -> str:
    return numbers(n)[-1]


# -- aliyun-sms


def test_a_partial_batch_failure_retries_only_the_failed_numbers(
    engines: Any, aliyun_fake: AliyunFake
) -> None:
    engine = engines(aliyun_channel(aliyun_fake, batch_size=5), contacts=12)
    follow(aliyun_fake, engine)
    aliyun_fake.number_codes[phone(3)] = "isv.MOBILE_NUMBER_ILLEGAL"
    aliyun_fake.number_codes[phone(7)] = "isv.BLACK_KEY_CONTROL_LIMIT"
    aliyun_fake.number_codes[phone(9)] = "isv.BUSINESS_LIMIT_CONTROL"
    aliyun_fake.fault(Fault.SYSTEM_ERROR)  # the first call is refused whole: nothing sent
    engine.fire()
    states = engine.states()
    assert [s.status for s in states.values()].count(Status.ACCEPTED) == 9
    assert (states["0003"].status, states["0003"].error_class) == (
        Status.FAILED,
        ErrorClass.RECIPIENT,
    )
    assert (states["0007"].status, states["0007"].error_class) == (Status.FAILED, ErrorClass.OPTOUT)
    capped = states["0009"]
    assert (capped.status, capped.error_class) == (Status.DEFERRED, ErrorClass.THROTTLED)
    # deferred to the next day, the rest of its batch and the other batches went on at once
    assert capped.next_check is not None and capped.next_check == at(2026, 3, 4, 0, 1)
    accepted_at = {
        e.at
        for s in states.values()
        for e in engine.store.events(s.key)
        if e.status is Status.ACCEPTED
    }
    assert max(accepted_at) - at(2026, 3, 3, 10) < dt.timedelta(minutes=5)
    assert set(aliyun_fake.sms_received.values()) == {1} and len(aliyun_fake.sms_received) == 9
    del aliyun_fake.number_codes[phone(9)]
    engine.sweep(capped.next_check)
    assert engine.states()["0009"].status is Status.ACCEPTED
    assert aliyun_fake.sms_received[phone(9)] == 1 and aliyun_fake.duplicates() == {}


def test_a_timeout_after_sending_is_reconciled_never_resent(
    engines: Any, aliyun_fake: AliyunFake
) -> None:
    engine = engines(aliyun_channel(aliyun_fake), contacts=3)
    follow(aliyun_fake, engine)
    aliyun_fake.fault(Fault.ACCEPT_HANG)
    assert engine.fire() == {"unknown": 3}
    engine.sweep(at(2026, 3, 3, 10, 0, 30))  # before it settles: not asked yet
    assert not [r for r in aliyun_fake.requests if "QuerySendDetails" in r.text]
    engine.sweep(at(2026, 3, 3, 10, 5))
    assert {s.status for s in engine.states().values()} == {Status.DELIVERED}
    assert engine.events("0001") == [
        Status.PLANNED,
        Status.SENDING,
        Status.UNKNOWN,
        Status.DELIVERED,
    ]
    assert set(aliyun_fake.sms_received.values()) == {1} and aliyun_fake.duplicates() == {}


def test_an_unknown_the_provider_never_got_is_sent_once_after_reconciling(
    engines: Any, aliyun_fake: AliyunFake
) -> None:
    engine = engines(aliyun_channel(aliyun_fake), contacts=2)
    follow(aliyun_fake, engine)
    aliyun_fake.fault(Fault.HTTP_503)
    assert engine.fire() == {"unknown": 2}
    engine.sweep(at(2026, 3, 3, 10, 5))
    assert {s.status for s in engine.states().values()} == {Status.ACCEPTED}
    assert set(aliyun_fake.sms_received.values()) == {1}


def test_receipts_pushed_twice_and_out_of_order_are_recorded_once(
    engines: Any, aliyun_fake: AliyunFake
) -> None:
    engine = engines(aliyun_channel(aliyun_fake), contacts=3)
    follow(aliyun_fake, engine)
    assert engine.fire() == {"accepted": 3}
    aliyun_fake.receipt_status[phone(2)] = (2, "MK:0001")
    reports = aliyun_fake.sms_reports()
    [route] = engine.dispatcher.channel("sms").routes()

    def push(items: list[dict[str, Any]]) -> Any:
        body = json.dumps(items, ensure_ascii=False).encode()
        return engine.recovery.inbound(
            "sms", route, InboundRequest("POST", "/receipts", {}, {}, body)
        )

    assert push(reports[::-1] + reports[1:2]).status == 200
    assert push(reports).status == 200  # Aliyun pushes again: nothing changes
    states = engine.states()
    assert [states[t].status for t in ("0001", "0002", "0003")] == [
        Status.DELIVERED,
        Status.FAILED,
        Status.DELIVERED,
    ]
    assert engine.events("0001") == [
        Status.PLANNED,
        Status.SENDING,
        Status.ACCEPTED,
        Status.DELIVERED,
    ]
    stranger = [{**reports[0], "biz_id": "999^0"}]
    assert push(stranger).status == 404


def test_receipts_are_polled_for_accepted_sends(engines: Any, aliyun_fake: AliyunFake) -> None:
    engine = engines(aliyun_channel(aliyun_fake, receipt_poll_seconds=300), contacts=2)
    follow(aliyun_fake, engine)
    aliyun_fake.receipt_status[phone(1)] = (1, "")  # still waiting
    engine.fire()
    engine.sweep(at(2026, 3, 3, 10, 6))
    assert engine.states()["0002"].status is Status.DELIVERED
    assert engine.states()["0001"].status is Status.ACCEPTED
    aliyun_fake.receipt_status[phone(1)] = (3, "DELIVERED")
    engine.sweep(at(2026, 3, 3, 10, 12))
    assert engine.states()["0001"].status is Status.DELIVERED


# -- tencent-sms


def test_tencent_per_number_statuses_and_pulled_receipts(
    engines: Any, tencent_fake: TencentFake
) -> None:
    engine = engines(tencent_channel(tencent_fake, pull_limit=2), contacts=4)
    follow(tencent_fake, engine)
    tencent_fake.number_codes[f"+86{phone(2)}"] = "FailedOperation.PhoneNumberInBlacklist"
    tencent_fake.number_codes[f"+86{phone(3)}"] = "LimitExceeded.PhoneNumberOneHourLimit"
    assert engine.fire() == {"accepted": 2, "failed": 1, "deferred": 1}
    assert engine.states()["0002"].error_class is ErrorClass.OPTOUT
    assert engine.recovery.pull_feeds() == 2
    assert engine.recovery.pull_feeds() == 0  # each receipt is handed out once
    assert {t: s.status for t, s in engine.states().items()} == {
        "0001": Status.DELIVERED,
        "0002": Status.FAILED,
        "0003": Status.DEFERRED,
        "0004": Status.DELIVERED,
    }
    del tencent_fake.number_codes[f"+86{phone(3)}"]
    engine.sweep(at(2026, 3, 3, 11, 1))
    assert engine.recovery.pull_feeds() == 1
    assert engine.states()["0003"].status is Status.DELIVERED
    assert set(tencent_fake.received.values()) == {1} and tencent_fake.duplicates() == {}


# -- voice-call


def test_validate_warns_that_landlines_need_another_channel(
    tmp_path: Path, tencent_fake: TencentFake
) -> None:
    path = write_engine_campaign(
        tmp_path,
        "http://unused",
        contacts=2,
        channel={
            "type": "voice-call",
            "kind": "loudspeaker",
            "addressing": "contacts",
            "max_length": 350,
            "settings": {
                "provider": "tencent",
                "key_id": {"env": "SMS_TENCENT_ID"},
                "key_secret": {"env": "SMS_TENCENT_KEY"},
                "template": "2001",
                "sdk_app_id": tencent_fake.voice_app_id,
                "endpoint": f"{tencent_fake.url}/",
            },
        },
    )
    people = path.parent / "people.csv"
    people.write_text(people.read_text() + "座机,057188886666\n", encoding="utf-8")
    app = load(path, environ=ENVIRON)
    [warning] = [w for w in app.warnings if "landline" in w.message]
    assert "1 numbers are landlines" in warning.message and "0571****6666" in warning.message
    assert "88886666" not in str(warning)


# -- secrets


def test_secrets_never_reach_the_log_the_cli_or_stored_answers(
    engines: Any, aliyun_fake: AliyunFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engines(aliyun_channel(aliyun_fake), contacts=4)
    follow(aliyun_fake, engine)
    aliyun_fake.number_codes[phone(2)] = "isv.MOBILE_NUMBER_ILLEGAL"
    aliyun_fake.fault(Fault.HTML)
    engine.fire()
    engine.sweep(at(2026, 3, 3, 10, 5))
    engine.dispatcher.close()
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BROADCASTER_LOG_KEY", KEY.decode())
    db = f"sqlite:///{tmp_path}/log.sqlite3"
    outputs = [
        CliRunner().invoke(cli, ["-c", str(engine.path), "validate"]).output,
        CliRunner()
        .invoke(cli, ["-c", str(engine.path), "log", "--db", db, "--format", "json"])
        .output,
        CliRunner().invoke(cli, ["-c", str(engine.path), "channels"]).output,
    ]
    assert "aliyun-sms" in outputs[2] and "138****0001" in outputs[1]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("log.sqlite3*"))
    raws = [e.detail or "" for s in engine.store.deliveries() for e in engine.store.events(s.key)]
    assert any("BizId" in r for r in raws)  # answers are kept...
    for secret in (SECRET_CANARY, ALIYUN_KEY_ID):  # ...but no secret, nor the key id
        assert secret.encode() not in stored
        assert not [o for o in outputs if secret in o]
        assert not [r for r in raws if secret in r]


def test_voice_calls_defer_a_number_called_a_minute_ago_then_record_the_answer(
    tmp_path: Path, store: DeliveryLog, aliyun_fake: AliyunFake
) -> None:
    rule = {
        "channels": ["sms"],
        "targets": {"tags": ["sms_list"]},
        "when": {"dates": ["2026-03-03"], "at": "10:00"},
    }
    path = write_engine_campaign(
        tmp_path,
        "http://unused",
        contacts=2,
        channel={
            "type": "voice-call",
            "kind": "loudspeaker",
            "addressing": "contacts",
            "max_length": 350,
            "settings": {
                "provider": "aliyun",
                "key_id": {"env": "SMS_ALIYUN_ID"},
                "key_secret": {"env": "SMS_ALIYUN_SECRET"},
                "template": "TTS_171680001",
                "endpoint": f"{aliyun_fake.url}/",
                "timeout": [1, 1],
                "result_poll_seconds": 120,
            },
        },
        rules=[{"id": "blast", **rule}, {"id": "again", **rule}],
    )
    clock = VirtualClock(at(2026, 3, 3, 10))
    aliyun_fake.clock = clock.now
    aliyun_fake.call_results[phone(2)] = (False, 0, "用户未接听")
    app = load(path, environ=ENVIRON)
    dispatcher = app.dispatcher(store, KEY, clock=clock, heartbeat=False)
    try:
        recovery = Recovery(dispatcher)
        for rule_id in ("blast", "again"):
            spec = app.campaign.rule(rule_id)
            [occurrence] = Planner(app.campaign).rule_occurrences(
                spec, at(2026, 3, 3), at(2026, 3, 4)
            )
            dispatcher.fire(occurrence).wait()
        states = store.deliveries(channel="sms")
        assert sorted(s.status for s in states) == [Status.ACCEPTED] * 2 + [Status.DEFERRED] * 2
        assert dict(aliyun_fake.calls_received) == {phone(1): 1, phone(2): 1}
        assert aliyun_fake.refused == {}  # deferred by the ledger, not refused by the provider
        waiting = [s for s in states if s.status is Status.DEFERRED]
        assert {s.next_check for s in waiting} == {at(2026, 3, 3, 10, 1)}
        clock.set(at(2026, 3, 3, 10, 1))
        recovery.sweep().wait()
        assert dict(aliyun_fake.calls_received) == {phone(1): 2, phone(2): 2}
        clock.set(at(2026, 3, 3, 10, 4))
        recovery.sweep().wait()
        done = {(s.recipient_display[-4:], s.status) for s in store.deliveries(channel="sms")}
        assert done == {("0001", Status.DELIVERED), ("0002", Status.FAILED)}
        reasons = {e.reason for s in store.deliveries(channel="sms") for e in store.events(s.key)}
        assert {"已接听 answered, 23 s", "未接听 not answered: 用户未接听"} <= reasons
    finally:
        dispatcher.close()
