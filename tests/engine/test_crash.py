"""A process killed with SIGKILL in the middle of a 5,000-delivery fan-out, then restarted:
no duplicate and no lost delivery, counted at the receiving end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import REPO
from tests.engine.crash_worker import KEY
from tests.engine.helpers import write_engine_campaign
from tests.fakes.webhook_server import WebhookFake

N = 5_000


def worker(path: Path, db: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.crash_worker", str(path), db, mode],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_mid_fan_out_then_restart_sends_each_delivery_exactly_once(
    tmp_path: Path, webhook_server: WebhookFake, log_url: str
) -> None:
    webhook_server.latency = 0.01
    path = write_engine_campaign(
        tmp_path, webhook_server.url, contacts=N, channel={"concurrency": 32}
    )
    first = worker(path, log_url, "fire")
    deadline = time.monotonic() + 120
    while len(webhook_server.accepted) < N // 3:
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the fan-out did not get going"
        time.sleep(0.05)  # polling the other process, not waiting for time to pass
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    received_before = len(webhook_server.accepted)
    assert received_before < N

    with DeliveryLog.open(log_url, hash_key=KEY) as store:
        states = store.deliveries(campaign="engine")
        # every delivery the gateway got was in the log before it was sent
        assert set(webhook_server.accepted) <= {s.key for s in states}
        left = N - sum(s.status is Status.ACCEPTED for s in states)
        assert left > 0, "the kill came too late to leave anything unfinished"

    second = worker(path, log_url, "resume")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out

    assert webhook_server.duplicate_sends() == {}  # nothing was sent twice
    # a key POSTed twice had its first POST cut off mid-body by the kill: refused as malformed,
    # found missing when reconciling, then sent once
    for key in webhook_server.repeated_keys():
        assert webhook_server.acted_counts[key] == 1
    assert len(webhook_server.accepted) == N  # nothing was lost
    with DeliveryLog.open(log_url, hash_key=KEY) as store:
        states = store.deliveries(campaign="engine", channel="sms")
        assert {s.status for s in states} == {Status.ACCEPTED}
        assert {s.key for s in states} == set(webhook_server.accepted)
        interrupted = [
            s for s in states if any(e.status is Status.INTERRUPTED for e in store.events(s.key))
        ]
    # deliveries caught in flight by the kill were reconciled, not blindly re-sent
    assert interrupted
