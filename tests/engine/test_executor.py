"""Send tasks are plain data: the same tasks run in other processes, resolving everything
from the log and the config by key, and nothing is sent twice."""

from __future__ import annotations

import pickle
from pathlib import Path

from broadcaster.engine.clock import SystemClock
from broadcaster.engine.executor import ProcessExecutor, SendTask
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.vocab import Status
from tests.engine.helpers import TOKEN_ENV, at, load, write_engine_campaign
from tests.fakes.webhook_server import WebhookFake

KEY = "process-pool-key"


def test_a_send_task_carries_no_number_no_text_and_no_live_object() -> None:
    task = SendTask("county", "blast@2026-03-03T10:00", "sms", "0f1e2d3c4b5a6978", ("k1", "k2"))
    data = pickle.dumps(task)
    assert pickle.loads(data) == task
    assert b"138" not in data and b"+86" not in data  # references, not numbers


def test_tasks_run_through_a_process_pool_send_each_delivery_once(
    tmp_path: Path, webhook_server: WebhookFake, log_url: str
) -> None:
    path = write_engine_campaign(tmp_path, webhook_server.url, contacts=40)
    environ = {**TOKEN_ENV, "BROADCASTER_LOG_KEY": KEY}
    # this process holds a token the gateway refuses: only the pool's processes can send
    app = load(path, environ={**environ, "TEST_SECRET_TOKEN": "not-the-gateway-token"})
    store = DeliveryLog.open(log_url, hash_key=KEY.encode())
    pool = ProcessExecutor(
        2, config=str(path), db=log_url, state_dir=str(tmp_path / "var"), environ=environ
    )
    dispatcher = app.dispatcher(store, KEY.encode(), clock=SystemClock(), executor=pool)
    try:
        occurrence = next(
            Planner(app.campaign).rule_occurrences(
                app.campaign.rule("blast"), at(2026, 3, 3), at(2026, 3, 4)
            )
        )
        report = dispatcher.fire(occurrence).wait()
    finally:
        pool.shutdown(wait=True)
        dispatcher.close()
    assert report.counts == {"accepted": 40}, report
    rows = store.deliveries(campaign="engine", channel="sms")
    store.close()
    assert {r.status for r in rows} == {Status.ACCEPTED}
    assert webhook_server.duplicate_sends() == {} and len(webhook_server.accepted) == 40
    assert len(webhook_server.sends) == 40  # none with this process's token
