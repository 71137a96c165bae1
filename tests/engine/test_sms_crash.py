"""aliyun-sms: a process killed with SIGKILL in the middle of 100,000 recipients, then
restarted: no number gets the message twice and none is lost, counted at the fake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import REPO, SECRET_CANARY
from tests.engine.helpers import write_engine_campaign
from tests.engine.sms_crash_worker import KEY
from tests.fakes.aliyun import AliyunFake
from tests.fakes.fixtures import ALIYUN_KEY_ID
from tests.fakes.http import serving

N = 100_000


@pytest.fixture
def fake() -> Iterator[AliyunFake]:
    yield from serving(AliyunFake(keys={ALIYUN_KEY_ID: SECRET_CANARY}))  # the real clock


def worker(path: Path, db: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.engine.sms_crash_worker", str(path), db, mode],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_sigkill_among_100000_recipients_then_restart_sends_each_number_once(
    tmp_path: Path, fake: AliyunFake
) -> None:
    path = write_engine_campaign(
        tmp_path,
        "http://unused",
        contacts=N,
        channel={
            "type": "aliyun-sms",
            "settings": {
                "access_key_id": {"env": "SMS_ALIYUN_ID"},
                "access_key_secret": {"env": "SMS_ALIYUN_SECRET"},
                "sign_name": "平安县反诈中心",
                "template_code": "SMS_71390007",
                "endpoint": f"{fake.url}/",
                "timeout": [1, 2],
                "settle_seconds": 2,
                "query_batch": 200,
                "calls_per_second": 200,
                "receipt_poll_seconds": 3600,  # receipts are not the subject here
            },
        },
    )
    db = f"sqlite:///{tmp_path}/log.sqlite3"
    first = worker(path, db, "fire")
    deadline = time.monotonic() + 600
    while len(fake.sms_received) < N // 3:
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the fan-out did not get going"
        time.sleep(0.05)  # polling the other process, not waiting for time to pass
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    received_before = len(fake.sms_received)
    assert received_before < N

    with DeliveryLog.open(db, hash_key=KEY) as store:
        states = store.deliveries(campaign="engine", channel="sms")
        left = N - sum(s.status is Status.ACCEPTED for s in states)
        cut_off = sum(s.status is Status.SENDING for s in states)
    assert left > 0, "the kill came too late to leave anything unfinished"

    second = worker(path, db, "resume")
    out, _ = second.communicate(timeout=1200)
    assert second.returncode == 0, out[-3000:]

    assert fake.duplicates() == {}  # no (number, OutId) acted on twice
    assert len(fake.sms_received) == N and set(fake.sms_received.values()) == {1}
    with DeliveryLog.open(db, hash_key=KEY) as store:
        states = store.deliveries(campaign="engine", channel="sms")
        assert len(states) == N
        assert {s.status for s in states} <= {Status.ACCEPTED, Status.DELIVERED}
    if cut_off:  # sends caught in flight were looked up, not blindly sent again
        assert any("QuerySendDetails" in r.text for r in fake.requests)
