"""sms-http through the engine against the fake gateway, on virtual time: a partial batch
retries only what failed retryably, an unknown outcome is reconciled and never re-sent
blindly, receipts (twice, out of order) settle deliveries once, the night is quiet."""

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
from tests.engine.helpers import DAY, at, load
from tests.fakes.http import serving
from tests.fakes.sms_gateway import GATEWAY_PASSWORD, SmsGatewayFake

KEY = b"test-key"
DLR_TOKEN = "dlr-token-5b9a"
ENVIRON = {"GW_PASSWORD": GATEWAY_PASSWORD, "GW_DLR_TOKEN": DLR_TOKEN}


def numbers(n: int) -> list[str]:
    return [f"138{i:08d}" for i in range(1, n + 1)]


def write(
    folder: Path,
    url: str,
    *,
    people: int = 3,
    at_time: str = "10:00",
    settings: dict[str, Any] | None = None,
    channel: dict[str, Any] | None = None,
    template: str | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text(
        "姓名,手机\n" + "".join(f"P{i},{n}\n" for i, n in enumerate(numbers(people))),
        encoding="utf-8",
    )
    sms: dict[str, Any] = {
        "type": "sms-http",
        "kind": "sms",
        "settings": {
            "url": f"{url}/cgi-bin/sendsms",
            "method": "GET",
            "query": {
                "username": "office",
                "password": "{{ secrets.password }}",
                "to": "{{ to }}",
                "text": "{{ text }}",
                "ref": "{{ key }}",
            },
            "secrets": {"password": {"env": "GW_PASSWORD"}},
            "sign_name": "青山镇反诈",
            "max_billed_chars": 500,
            "batch_size": 3,
            "answers": "lines",
            "success": {"regex": r"^OK (?P<id>\S+)"},
            "error_regex": r"^ERR (?P<code>\S+)",
            "codes": {"retryable": ["BUSY"], "recipient": ["INVALID_NUMBER"]},
            "status_url": f"{url}/status?ref={{key}}",
            "receipts": {"token": {"env": "GW_DLR_TOKEN"}},
            "timeout": [1, 1],
            **(settings or {}),
        },
        **(channel or {}),
    }
    config: dict[str, Any] = {
        "campaign": {"id": "gw", "name": "网关", "office": "测试派出所"},
        "phases": [{"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}],
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": ["order_brushing", "loan"]}},
        "targets": [
            {
                "id": "town",
                "name": "青山镇",
                "children": [
                    {"id": "people", "name": "东村", "recipients": {"file": "people.csv"}}
                ],
            }
        ],
        "channels": {"sms": sms},
        "rules": [
            {
                "id": "blast",
                "channels": ["sms"],
                "targets": {"ids": ["people"]},
                "when": {"dates": [DAY.isoformat()], "at": at_time},
            }
        ],
    }
    if template is not None:  # the office's own templates, searched before the shipped ones
        config["templates"] = ["tpl"]
        for topic in ("order_brushing", "loan"):
            p = folder / "tpl" / "sms" / f"{topic}.j2"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(template, encoding="utf-8")
    path = folder / "schedules.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


class Engine:
    def __init__(self, path: Path, store: DeliveryLog, start: dt.datetime):
        self.app = load(path, environ=ENVIRON, now=start)
        self.clock = VirtualClock(start)
        self.store = store
        self.dispatcher = self.app.dispatcher(store, KEY, clock=self.clock, heartbeat=False)
        self.recovery = Recovery(self.dispatcher)

    def fire(self) -> None:
        spec = self.app.campaign.rule("blast")
        occurrence = next(
            Planner(self.app.campaign).rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4))
        )
        self.dispatcher.fire(occurrence).wait()

    def sweep(self, when: dt.datetime) -> None:
        self.clock.set(when)
        self.recovery.sweep().wait()

    def statuses(self) -> dict[str, Status]:
        return {s.recipient_display: s.status for s in self.store.deliveries(channel="sms")}

    def dlr(self, **query: str) -> int:
        [route] = self.dispatcher.channel("sms").routes()
        request = InboundRequest(
            "GET", "/dlr", {k: [v] for k, v in {"token": DLR_TOKEN, **query}.items()}, {}, b""
        )
        return self.recovery.inbound("sms", route, request).status


@pytest.fixture
def gateway() -> Iterator[SmsGatewayFake]:
    yield from serving(SmsGatewayFake())


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DeliveryLog]:
    store = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=KEY)
    yield store
    store.close()


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispatcher.close()


def engine(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog, **kw: Any
) -> Engine:
    start = kw.pop("start", at(2026, 3, 3, 10))
    made = Engine(write(tmp_path / "c", gateway.url, **kw), log, start)
    engines.append(made)
    return made


def test_a_partial_batch_failure_retries_only_the_failed_numbers(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog
) -> None:
    e = engine(engines, tmp_path, gateway, log, people=3)
    gateway.busy["13800000002"] = 1  # refused once, nothing sent
    gateway.bad_numbers.add("13800000003")  # refused for good
    e.fire()
    assert e.statuses() == {
        "138****0001": Status.ACCEPTED,
        "138****0002": Status.ACCEPTED,
        "138****0003": Status.FAILED,
    }
    assert [r["to"] for r in gateway.send_requests] == [
        "13800000001,13800000002,13800000003",
        "13800000002",  # the retry carries only the number that may be sent again
    ]
    assert gateway.duplicates() == {}
    [bad] = log.deliveries(status=Status.FAILED)
    assert bad.error_class is ErrorClass.RECIPIENT and "INVALID_NUMBER" in bad.reason


def test_a_timeout_is_unknown_then_reconciled_never_resent(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog
) -> None:
    e = engine(engines, tmp_path, gateway, log, people=3, settings={"timeout": [0.5, 0.3]})
    gateway.queue("hang")  # the gateway sends all three, and never answers
    e.fire()
    assert set(e.statuses().values()) == {Status.UNKNOWN}
    e.sweep(at(2026, 3, 3, 10, 0, 1))  # still settling (0.5 + 0.3 + 2 s): not asked
    assert [r.path for r in gateway.requests if r.path == "/status"] == []
    e.sweep(at(2026, 3, 3, 10, 0, 5))
    assert set(e.statuses().values()) == {Status.ACCEPTED}
    assert len(gateway.send_requests) == 1 and gateway.duplicates() == {}
    assert {s.provider_id for s in log.deliveries()} == {"m000001", "m000002", "m000003"}


def test_a_500_before_sending_is_looked_up_then_sent_once(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog
) -> None:
    e = engine(engines, tmp_path, gateway, log, people=2)
    gateway.queue("http_500")  # the gateway failed before sending: it has no record
    e.fire()
    assert set(e.statuses().values()) == {Status.UNKNOWN}
    e.sweep(at(2026, 3, 3, 10, 0, 5))  # not found at the gateway: safe to send again
    e.sweep(at(2026, 3, 3, 10, 5))
    assert set(e.statuses().values()) == {Status.ACCEPTED}
    assert sum(gateway.sent.values()) == 2 and gateway.duplicates() == {}


def test_receipts_twice_and_out_of_order_settle_each_delivery_once(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog
) -> None:
    e = engine(engines, tmp_path, gateway, log, people=2)
    e.fire()
    first, second = log.deliveries(channel="sms")
    assert e.dlr(ref=second.key, status="1") == 200  # the second number's receipt comes first
    assert e.dlr(ref=first.key, status="16") == 200
    assert e.dlr(ref=second.key, status="1") == 200  # a duplicate changes nothing
    assert e.dlr(ref=second.key, status="8") == 200  # a late "at the SMSC" report: no outcome
    assert e.dlr(ref="no-such-key", status="1") == 404
    states = {s.key: s for s in log.deliveries(channel="sms")}
    assert states[second.key].status is Status.DELIVERED
    assert (states[first.key].status, states[first.key].error_class) == (
        Status.FAILED,
        ErrorClass.RECIPIENT,
    )
    delivered = [ev for ev in log.events(second.key) if ev.status is Status.DELIVERED]
    assert len(delivered) == 1


def test_a_fan_out_running_into_the_night_resumes_in_the_morning(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog
) -> None:
    """sms-http is quiet 21:00-08:00 by default: 6 SMS at 20:58, 1 a minute, 1 each."""
    e = engine(
        engines,
        tmp_path,
        gateway,
        log,
        people=6,
        at_time="20:58",
        settings={"batch_size": 1},
        channel={"rate_limit": "1/60s", "concurrency": 1},
        start=at(2026, 3, 3, 20, 58),
    )
    e.fire()
    assert sorted(e.statuses().values()).count(Status.ACCEPTED) == 2  # 20:58, 20:59
    deferred = log.deliveries(status=Status.DEFERRED)
    assert len(deferred) == 4
    assert {(d.error_class, d.next_check) for d in deferred} == {
        (ErrorClass.QUIET, at(2026, 3, 4, 8))
    }
    assert all("deferred: quiet hours 21:00-08:00" in d.reason for d in deferred)
    e.sweep(at(2026, 3, 4, 8))
    assert set(e.statuses().values()) == {Status.ACCEPTED}
    assert sum(gateway.sent.values()) == 6 and gateway.duplicates() == {}


def validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["-c", str(path), "validate", "--now", "2026-03-02"], env=ENVIRON
    )
    return result.exit_code, result.output


def test_a_rule_inside_the_night_fails_validate(tmp_path: Path, gateway: SmsGatewayFake) -> None:
    path = write(tmp_path / "c", gateway.url, at_time="21:30")
    code, out = validate(path)
    assert code == 1
    assert (
        "schedules.yaml:103: rules[0].when.at[0]: 处于渠道免打扰时段 21:30 is inside channel"
        " 'sms' quiet hours 21:00-08:00" in out
    )


def test_a_text_over_the_providers_maximum_fails_validate(
    tmp_path: Path, gateway: SmsGatewayFake
) -> None:
    path = write(tmp_path / "c", gateway.url, template="诈" * 493)
    assert validate(path)[0] == 0  # 【青山镇反诈】 (7) + 493 = 500: at the maximum
    for topic in ("order_brushing", "loan"):
        (tmp_path / "c" / "tpl" / "sms" / f"{topic}.j2").write_text("诈" * 494, encoding="utf-8")
    code, out = validate(path)
    assert code == 1
    assert (
        "tpl/sms/order_brushing.j2:1: 短信计费长度超出上限 billed length 501 (signature"
        " included), over the provider's maximum 500 (rule 'blast', target 'people')" in out
    )


def test_plan_and_preview_show_the_billed_sms(tmp_path: Path, gateway: SmsGatewayFake) -> None:
    path = write(tmp_path / "c", gateway.url, template="诈" * 64)  # 7 + 64 = 71: two SMS
    result = CliRunner().invoke(
        cli,
        ["-c", str(path), "plan", "--from", "2026-03-03", "--to", "2026-03-03", "--format", "json"],
        env=ENVIRON,
    )
    assert result.exit_code == 0, result.output
    [item] = json.loads(result.output)
    assert (item["length"], item["billed"], item["recipients"]) == (64, 2, 3)
    result = CliRunner().invoke(
        cli,
        ["-c", str(path), "preview", "blast", "--date", "2026-03-03", "--now", "2026-03-02"],
        env=ENVIRON,
    )
    assert result.exit_code == 0, result.output
    assert "64 字 chars · 计费 71 字 chars with 【青山镇反诈】 → 2 条 billed SMS (mainland)" in (
        result.output.replace("\n", " ")
    )


def test_a_number_the_gateway_reports_unsubscribed_is_suppressed_from_then_on(
    engines: list[Engine], tmp_path: Path, gateway: SmsGatewayFake, log: DeliveryLog
) -> None:
    from broadcaster.recipients.store import RecipientStore

    e = engine(
        engines, tmp_path, gateway, log, people=2, settings={"codes": {"optout": ["BLACKLIST"]}}
    )
    gateway.optout_numbers.add("13800000002")
    e.fire()
    [out] = log.deliveries(status=Status.FAILED)
    assert (out.recipient_display, out.error_class) == ("138****0002", ErrorClass.OPTOUT)
    store = RecipientStore.in_folder(tmp_path / "c" / "var")
    assert store.optouts() == {"+8613800000002"}
    again = load(tmp_path / "c" / "schedules.yaml", environ=ENVIRON, now=at(2026, 3, 3, 11))
    flags = {c.display: c.optout for c in again.campaign.targets["people"].contacts}
    assert flags == {"138****0001": False, "138****0002": True}
