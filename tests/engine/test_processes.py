"""Never twice, whatever runs at once: real `broadcaster` processes on one log, counted at the
fake gateway. Two `run` processes and a rate-limited `send-now`; a SIGKILL of the active
runner in the middle of a fan-out, finished by the standby. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import TZ
from tests.engine.helpers import TOKEN_ENV, write_engine_campaign
from tests.fakes.webhook_server import Mode, WebhookFake
from tests.processes import STARTED, Running

KEY = "processes-test-key"
LEASE = "3"  # seconds: a dead process's claims run out this fast here


TICK = {"id": "tick", "channels": ["sms"], "targets": {"tags": ["sms_list"]}}


def once_now(url: str, rule: dict[str, Any]) -> dict[str, Any]:
    """`rule` firing once, a minute ago, caught up by a starting `run` (the log has an
    earlier occurrence, so the scheduler starts catching up from there)."""
    at = dt.datetime.now(TZ).replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    before = at - dt.timedelta(minutes=1)
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        log.record_occurrence("engine", "seed@before", "seed", before, "done", "", before)
    return {**rule, "when": {"dates": [f"{at:%Y-%m-%d}"], "at": f"{at:%H:%M}"}}


def fired_at(rule: dict[str, Any]) -> dt.datetime:
    """When a rule made by `once_now` fires."""
    when = rule["when"]
    return dt.datetime.fromisoformat(f"{when['dates'][0]} {when['at']}").replace(tzinfo=TZ)


def wait_until(condition: object, what: str, timeout: float = 90.0) -> None:
    """Poll another process's progress (the fake's counters, the log) until `condition()`."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def unfinished(url: str, campaign: str) -> int:
    with DeliveryLog.open(url, hash_key=KEY.encode()) as log:
        return len(log.unfinished(campaign))


@pytest.fixture
def processes() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        process.close()


def env(url: str, state: Path) -> dict[str, str]:
    return {
        **TOKEN_ENV,
        "BROADCASTER_DB": url,
        "BROADCASTER_LOG_KEY": KEY,
        "BROADCASTER_LEASE_SECONDS": LEASE,
        "BROADCASTER_STATE_DIR": str(state),
    }


@pytest.mark.slow
def test_two_runs_and_a_send_now_on_one_log_send_nothing_twice(
    tmp_path: Path, webhook_server: WebhookFake, log_url: str, processes: list[Running]
) -> None:
    config = write_engine_campaign(
        tmp_path,
        webhook_server.url,
        contacts=6,
        channel={"rate_limit": "1/1s", "max_length": 200},
        rules=[once_now(log_url, TICK)],
        phases=False,
    )
    variables = env(log_url, tmp_path / "state")
    send_now = Running(
        config,
        "--template",
        "alert",
        "--channel",
        "sms",
        "--target",
        "people",
        "--var",
        "alert_text=冒充客服退款诈骗高发",
        "--yes",
        subcommand=("send-now",),
        env=variables,
    )
    processes.append(send_now)
    webhook_server.wait_for(1, timeout=60)  # the send-now is under way, at one a second
    first = Running(config, env=variables)
    second = Running(config, env=variables)
    processes += [first, second]
    first.wait_for(STARTED, timeout=60)
    second.wait_for(STARTED, timeout=60)
    assert send_now.proc.wait(timeout=120) == 0, send_now.output
    send_now.close()
    # the caught-up `tick` fires in whichever run leads: six more
    wait_until(lambda: len(webhook_server.accepted) >= 12, "both sends to arrive")
    wait_until(lambda: unfinished(log_url, "engine") == 0, "every delivery to finish")
    for process in (first, second):
        assert process.stop(signal.SIGTERM) == 0, process.output
    assert "待命 standing by" in first.output + second.output  # one of them stood by
    assert webhook_server.repeated_keys() == {}  # no key even reached the gateway twice
    assert webhook_server.duplicate_sends() == {}
    with DeliveryLog.open(log_url, hash_key=KEY.encode()) as log:
        rows = log.deliveries(campaign="engine")
        assert {r.status for r in rows} == {Status.ACCEPTED}
        assert {r.key for r in rows} == set(webhook_server.accepted)


@pytest.mark.slow
def test_sigkill_of_the_active_runner_the_standby_finishes_without_a_duplicate(
    tmp_path: Path, webhook_server: WebhookFake, log_url: str, processes: list[Running]
) -> None:
    n = 2_000
    webhook_server.latency = 0.01
    config = write_engine_campaign(
        tmp_path,
        webhook_server.url,
        contacts=n,
        channel={"concurrency": 8},
        rules=[once_now(log_url, TICK)],
        phases=False,
    )
    variables = env(log_url, tmp_path / "state")
    active = Running(config, "--grace", "30m", env=variables)
    processes.append(active)
    active.wait_for(STARTED, timeout=60)
    wait_until(lambda: len(webhook_server.accepted) >= n // 4, "the fan-out to get going")
    webhook_server.mode = Mode.HANG  # the active runner's next posts are acted on, unanswered
    standby = Running(config, "--grace", "30m", env=variables)
    processes.append(standby)
    standby.wait_for("待命 standing by", timeout=60)
    active.proc.kill()  # SIGKILL: no clean-up, claims and the scheduler lease left behind
    active.proc.wait(timeout=30)
    webhook_server.mode = Mode.OK  # before the standby's lease comes (LEASE seconds)
    assert len(webhook_server.accepted) < n, "the kill came too late to leave work behind"
    wait_until(lambda: len(webhook_server.accepted) >= n, "the standby to finish", timeout=180)
    wait_until(lambda: unfinished(log_url, "engine") == 0, "every delivery to finish")
    assert standby.stop(signal.SIGTERM) == 0, standby.output
    assert "已成为调度者 now the active scheduler" in standby.output
    assert webhook_server.duplicate_sends() == {}  # nothing was sent twice
    for key in webhook_server.repeated_keys():  # a POST cut off mid-body by the kill
        assert webhook_server.acted_counts[key] == 1
    with DeliveryLog.open(log_url, hash_key=KEY.encode()) as log:
        rows = log.deliveries(campaign="engine")
        assert len(rows) == n
        assert {r.status for r in rows} == {Status.ACCEPTED}
        assert {r.key for r in rows} == set(webhook_server.accepted)
