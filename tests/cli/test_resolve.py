"""Deliveries nobody can find out about (待人工 unresolved): shown by `broadcaster log`, decided
by an operator with `broadcaster resolve`, the decision logged with who made it and why.
Coverage is rounded down: a shortfall never shows as 100%."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from broadcaster.cli import cli
from broadcaster.cli.log import coverage_rate
from broadcaster.engine.clock import VirtualClock
from broadcaster.engine.recovery import Recovery
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import ErrorClass, Status
from tests.conftest import MINI, write_campaign
from tests.engine.helpers import at, load, write_engine_campaign
from tests.fakes.webhook_server import Mode, WebhookFake
from tests.log.test_store import T0, record, walk

KEY = "resolve-test-key"


@pytest.fixture(autouse=True)
def log_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCASTER_LOG_KEY", KEY)


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args])


class Stuck:
    """A campaign on the fake gateway whose channel cannot look outcomes up: the first send's
    answer is lost (the connection closes), so after the sweep it waits for an operator."""

    def __init__(self, folder: Path, server: WebhookFake, url: str):
        self.config = write_engine_campaign(
            folder, server.url, contacts=3, settings={"status_url": None}
        )
        self.url = url
        self.store = DeliveryLog.open(url, hash_key=KEY.encode())
        self.app = load(self.config)
        self.clock = VirtualClock(at(2026, 3, 3, 10))
        self.dispatcher = self.app.dispatcher(
            self.store, KEY.encode(), clock=self.clock, heartbeat=False
        )
        spec = self.app.campaign.rule("blast")
        planner = Planner(self.app.campaign)
        self.occurrence = next(planner.rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4)))
        server.on_request(1, Mode.CLOSE)
        self.dispatcher.fire(self.occurrence).wait()
        self.sweep(at(2026, 3, 3, 10, 1))
        [self.stuck] = self.store.deliveries(status=Status.UNRESOLVED)

    def sweep(self, when: dt.datetime) -> None:
        self.clock.set(when)
        Recovery(self.dispatcher).sweep().wait()

    def cli(self, *args: str) -> Result:
        return invoke(self.config, *args, "--db", self.url, "--state-dir", str(self.config.parent))

    def close(self) -> None:
        self.dispatcher.close()
        self.store.close()


@pytest.fixture
def stuck(tmp_path: Path, webhook_server: WebhookFake, log_url: str) -> Iterator[Stuck]:
    made = Stuck(tmp_path / "campaign", webhook_server, log_url)
    yield made
    made.close()


def test_log_shows_what_waits_for_an_operator_and_resolve_records_the_decision(
    stuck: Stuck,
) -> None:
    key = stuck.stuck.key
    listed = stuck.cli("log", "--status", "unresolved")
    assert listed.exit_code == 0, listed.output
    assert "待人工 needs an operator: 1 — 查看 list them: broadcaster log --status unresolved" in (
        listed.output
    )
    deliveries = listed.output[listed.output.index("投递记录 deliveries") :]
    assert "│ 待人工 needs an" in deliveries, deliveries
    assert key[:12] in listed.output
    assert "共 1 条 1 deliveries" in listed.output

    done = stuck.cli(
        "resolve", key[:8], "--as", "delivered", "--note", "已电话确认收到", "--by", "王警官"
    )
    assert done.exit_code == 0, done.output
    assert (
        done.output == "已记录 recorded: 1 次投递 deliveries → 已送达 delivered (operator:王警官)\n"
    )
    last = stuck.store.events(key)[-1]
    assert (last.status, last.error_class, last.actor) == (
        Status.DELIVERED,
        ErrorClass.OPERATOR,
        "operator:王警官",
    )
    assert last.reason == "人工处理 decided by operator:王警官: 已电话确认收到"
    after = stuck.cli("log")
    assert "待人工 needs an operator: 0" in after.output
    assert stuck.store.deliveries(status=Status.UNRESOLVED) == []

    again = stuck.cli("resolve", key, "--as", "failed", "--note", "x", "--by", "王警官")
    assert again.exit_code == 2
    assert f"'{key}': 状态是 its status is 已送达 delivered, not 待人工 unresolved" in again.output


def test_resolve_as_failed(stuck: Stuck) -> None:
    key = stuck.stuck.key
    done = stuck.cli("resolve", key, "--as", "failed", "--note", "号码已停机", "--by", "李四")
    assert done.exit_code == 0, done.output
    state = stuck.store.latest([key])[key]
    assert (state.status, state.error_class) == (Status.FAILED, ErrorClass.OPERATOR)
    assert stuck.store.events(key)[-1].actor == "operator:李四"


def test_resolve_as_resend_logs_the_decision_and_makes_it_due(stuck: Stuck) -> None:
    key = stuck.stuck.key
    assert stuck.stuck.next_check is None
    done = stuck.cli("resolve", key[:10], "--as", "resend", "--note", "群里没收到", "--by", "王")
    assert done.exit_code == 0, done.output
    assert "已记录 recorded: 1 次投递 deliveries → 已安排重发 due again → " in done.output
    state = stuck.store.latest([key])[key]
    assert state.status is Status.DEFERRED and state.next_check is not None
    last = stuck.store.events(key)[-1]
    assert (last.status, last.error_class, last.actor) == (
        Status.DEFERRED,
        ErrorClass.OPERATOR,
        "operator:王",
    )
    assert "群里没收到" in (last.reason or "")


def test_a_resend_decision_is_sent_by_the_next_sweep_once(
    stuck: Stuck, webhook_server: WebhookFake
) -> None:
    key = stuck.stuck.key
    assert stuck.cli("resolve", key, "--as", "resend", "--note", "n", "--by", "王").exit_code == 0
    stuck.sweep(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    assert webhook_server.key_counts[key] == 2
    assert stuck.store.latest([key])[key].status is Status.ACCEPTED
    stuck.sweep(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    assert webhook_server.key_counts[key] == 2  # a decision is one resend, not a loop
    again = stuck.cli("resolve", key, "--as", "resend", "--note", "n", "--by", "王")
    assert again.exit_code == 2  # no longer unresolved


# -- refusals: nothing is written unless every KEY names one unresolved delivery ----------------------


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Path, str, DeliveryLog]]:
    config = write_campaign(tmp_path / "mini", MINI)
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        keys = {"deadbeef01": Status.UNRESOLVED, "deadbeef02": Status.UNRESOLVED}
        keys |= {"cafe0123456789": Status.UNRESOLVED, "f00d0000aa": Status.ACCEPTED}
        log.add_deliveries([record(log, k) for k in keys], T0)
        log.append([e for k, s in keys.items() for e in walk(k, s)])
    log = DeliveryLog.open(url, hash_key=KEY.encode())
    yield config, url, log
    log.close()


Seeded = tuple[Path, str, DeliveryLog]


def resolve(seeded: Seeded, *args: str) -> Result:
    config, url, _ = seeded
    return invoke(config, "resolve", *args, "--db", url, "--state-dir", str(config.parent))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("cafe01234", "dead", "--as", "failed", "--note", "n", "--by", "王"),
            "'dead': 太短 at least 8 characters of the key",
        ),
        (
            ("cafe01234", "deadbeef", "--as", "failed", "--note", "n", "--by", "王"),
            "'deadbeef': 不唯一 names 2 unresolved deliveries; give more characters",
        ),
        (
            ("cafe01234", "f00d0000aa", "--as", "failed", "--note", "n", "--by", "王"),
            "'f00d0000aa': 状态是 its status is 已受理 accepted, not 待人工 unresolved",
        ),
        (
            ("cafe01234", "0123456789", "--as", "failed", "--note", "n", "--by", "王"),
            "'0123456789': 没有这个待人工的投递 no unresolved delivery has this key in campaign 'mini'",
        ),
        (
            ("cafe01234", "--as", "failed", "--note", "  ", "--by", "王"),
            "无效的值 Invalid value for --note: 理由不能为空 a note is required",
        ),
        (
            ("cafe01234", "--as", "failed", "--note", "n", "--by", ""),
            "无效的值 Invalid value for --by: 处理人无效 expected a name of 1 to 64 printable",
        ),
    ],
)
def test_resolve_refuses_and_writes_nothing(
    seeded: Seeded, args: tuple[str, ...], message: str
) -> None:
    log = seeded[2]
    before = {k: log.events(k) for k in ("cafe0123456789", "deadbeef01", "deadbeef02")}
    result = resolve(seeded, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert {k: log.events(k) for k in before} == before


def test_resolve_several_keys_at_once(seeded: Seeded) -> None:
    log = seeded[2]
    result = resolve(
        seeded,
        "deadbeef01",
        "DEADBEEF02",
        "cafe0123",
        "--as",
        "failed",
        "--note",
        "n",
        "--by",
        "王",
    )
    assert result.exit_code == 0, result.output
    assert "已记录 recorded: 3 次投递 deliveries → 失败 failed (operator:王)" in result.output
    assert log.deliveries(status=Status.UNRESOLVED) == []


# -- coverage is rounded down -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "whole", "shown"),
    [
        (5_984, 6_000, "99.7%"),
        (5_999, 6_000, "99.9%"),
        (59_999, 60_000, "99.9%"),
        (6_000, 6_000, "100%"),
        (1, 3, "33.3%"),
        (0, 6_000, "0%"),
        (0, 0, "—"),
    ],
)
def test_coverage_rate_never_rounds_up(part: int, whole: int, shown: str) -> None:
    assert coverage_rate(part, whole) == shown


def test_log_shows_5984_of_6000_as_99_7_percent(tmp_path: Path) -> None:
    config = write_campaign(tmp_path / "mini", MINI)
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    keys = [f"k{i:05d}" for i in range(6_000)]
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        log.add_deliveries([record(log, k, address=f"138{i:08d}") for i, k in enumerate(keys)], T0)
        events: list[Any] = []
        for i, k in enumerate(keys):
            events += walk(k, Status.ACCEPTED if i < 5_984 else Status.FAILED)
        log.append(events)
    result = invoke(config, "log", "--db", url, "--state-dir", str(tmp_path), "--limit", "5")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "occ-1" in line or "rule-1" in line)
    assert row.rstrip().rstrip("│").rstrip().endswith("99.7%"), row
    assert re.search(r"│ +6000 │ +5984 │ +0 │ +16 │", row), row
    assert "100%" not in result.output
