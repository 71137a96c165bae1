"""`send-now` as a real process, killed in the middle of a rate-limited send and run again.

A one-off send is one occurrence at the minute it started: a second `send-now` in a later
minute would be a new occurrence with new keys, and everyone the first one reached would
get the message twice. So an unfinished send is resumed (at its own minute, saying how
many deliveries are left) unless `--new` asks for a new one. Counted at the fake gateway.

The process under test reads the real clock, so the test waits (with a deadline) for the
minute to turn before running it again: that is the case that matters.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import TZ
from tests.engine.helpers import write_engine_campaign
from tests.engine.test_processes import KEY, LEASE, env
from tests.fakes.webhook_server import WebhookFake
from tests.processes import Running

CONTACTS = 30
SEND = (
    *("--template", "alert", "--channel", "sms", "--target", "people"),
    *("--var", "alert_text=冒充客服退款诈骗高发", "--yes"),
)


@pytest.fixture
def processes() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        process.close()


def started_minute(output: str) -> dt.datetime:
    m = re.search(r"立即发送 send-now · alert · (\d{4}-\d\d-\d\d \d\d:\d\d)", output)
    assert m, output
    return dt.datetime.fromisoformat(m.group(1)).replace(tzinfo=TZ)


def finish(process: Running, timeout: float = 120) -> int:
    code = process.proc.wait(timeout=timeout)
    process.close()
    return code


@pytest.mark.slow
def test_a_killed_send_now_resumes_in_a_later_minute_and_new_starts_another(
    tmp_path: Path, webhook_server: WebhookFake, processes: list[Running]
) -> None:
    config = write_engine_campaign(
        tmp_path / "campaign",
        webhook_server.url,
        contacts=CONTACTS,
        channel={"rate_limit": "5/1s", "max_length": 200},
        phases=False,
    )
    url = f"sqlite:///{tmp_path}/log.sqlite3"
    variables = env(url, tmp_path / "state")
    first = Running(config, *SEND, subcommand=("send-now",), env=variables)
    processes.append(first)
    webhook_server.wait_for(6, timeout=60)
    first.proc.kill()  # SIGKILL: its claims stay until their lease (3 s here) runs out
    first.proc.wait(timeout=30)
    killed = time.monotonic()
    first.wait_for("立即发送 send-now · alert · ", timeout=10)
    minute = started_minute(first.output)
    reached = set(webhook_server.accepted)
    assert 0 < len(reached) < CONTACTS, "the kill came too late to leave anything unfinished"
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        [(occurrence, left)] = log.open_sends("engine", "now-alert")
        cut_off = {r.key for r in log.deliveries(campaign="engine", status=Status.SENDING)}
    assert occurrence == f"now-alert@{minute:%Y-%m-%dT%H:%M}"
    assert CONTACTS - len(reached) <= left < CONTACTS
    # requests out at the kill: answered or not, their outcome never reached the log
    assert 0 < len(cut_off) <= left

    # a later minute, and the dead process's claims expired (LEASE seconds)
    deadline = time.monotonic() + 70
    while (
        dt.datetime.now(TZ).replace(second=0, microsecond=0) <= minute
        or time.monotonic() < killed + float(LEASE) + 1
    ):
        assert time.monotonic() < deadline, "the minute never turned"
        time.sleep(0.2)

    second = Running(config, *SEND, subcommand=("send-now",), env=variables)
    processes.append(second)
    assert finish(second) == 0, second.output
    assert (
        f"续发 resuming the unfinished send of {minute:%m-%d %H:%M}: {left} 次投递未完成"
        f" {left} deliveries left"
    ) in second.output
    assert webhook_server.duplicate_sends() == {}  # nobody got it twice
    assert webhook_server.repeated_keys() == {}  # no key even reached the gateway twice
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        rows = log.deliveries(campaign="engine")
    assert len(rows) == CONTACTS and {r.occurrence_id for r in rows} == {occurrence}
    accepted = {r.key for r in rows if r.status is Status.ACCEPTED}
    assert accepted <= set(webhook_server.accepted)
    # everything was sent but what was cut off: that is reconciled by `run`, never re-sent
    assert {r.key for r in rows} - accepted == cut_off
    assert (
        f"{len(cut_off)} 次投递待续发或对账 deliveries wait (quiet hours, limits) or are being"
        " reconciled: `broadcaster run` finishes them"
    ) in second.output

    third = Running(config, *SEND, "--new", subcommand=("send-now",), env=variables)
    processes.append(third)
    assert finish(third) == 0, third.output
    assert "续发" not in third.output
    assert f"完成 done: {CONTACTS} 次投递 deliveries — 已受理 accepted×{CONTACTS}" in third.output
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        rows = log.deliveries(campaign="engine")
    new = [r for r in rows if r.occurrence_id != occurrence]
    assert len(new) == CONTACTS and len({r.occurrence_id for r in new}) == 1
    assert {r.key for r in new} <= set(webhook_server.accepted)
    assert webhook_server.duplicate_sends() == {}
