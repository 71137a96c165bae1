"""Scale-out on the worker engine: `run --workers external` and real `broadcaster worker`
processes on one PostgreSQL log, counted at the fake gateway. Workers killed with SIGKILL
mid fan-out, a poisoned job, and eight workers sharing five bots' rate limits."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import SECRET_CANARY
from tests.engine.helpers import write_engine_campaign
from tests.engine.test_processes import KEY, env, once_now, unfinished, wait_until
from tests.fakes.http import RecordedRequest, Reply
from tests.fakes.webhook_server import WebhookFake
from tests.log.fixtures import postgres_schema
from tests.processes import STARTED, Running

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.fixture
def processes() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        process.close()


def worker(config: Path, variables: dict[str, str], *args: str) -> Running:
    return Running(config, "--concurrency", "4", *args, subcommand=("worker",), env=variables)


def test_workers_killed_twice_mid_fan_out_send_every_recipient_exactly_once(
    tmp_path: Path, webhook_server: WebhookFake, pg_url: str, processes: list[Running]
) -> None:
    n = 20_000
    webhook_server.latency = 0.002
    rule = {"id": "fanout", "channels": ["sms"], "targets": {"tags": ["sms_list"]}}
    config = write_engine_campaign(
        tmp_path,
        webhook_server.url,
        contacts=n,
        channel={"concurrency": 16},
        rules=[once_now(pg_url, rule)],
        phases=False,
    )
    variables = env(pg_url, tmp_path / "state")
    workers = [worker(config, variables) for _ in range(3)]
    processes += workers
    for w in workers:
        w.wait_for("工作进程启动 worker starting", timeout=60)
    scheduler = Running(config, "--workers", "external", env=variables)
    processes.append(scheduler)
    scheduler.wait_for(STARTED, timeout=120)
    rng = random.Random()
    for kill in (1, 2):
        at = kill * n // 4 + rng.randrange(n // 10)  # somewhere in the first and second half
        wait_until(lambda at=at: len(webhook_server.accepted) >= at, f"kill {kill}", 240)
        victim = rng.choice([w for w in workers if w.proc.poll() is None])
        victim.proc.send_signal(signal.SIGKILL)  # mid-batch: claims and a job left behind
        victim.proc.wait(timeout=30)
        replacement = worker(config, variables)
        processes.append(replacement)
        workers = [w for w in workers if w is not victim] + [replacement]
    assert len(webhook_server.accepted) < n, "the kills came too late to leave work behind"
    wait_until(lambda: len(webhook_server.accepted) >= n, "every recipient", timeout=300)
    wait_until(lambda: unfinished(pg_url, "engine") == 0, "every delivery to finish", 120)
    assert webhook_server.duplicate_sends() == {}  # nobody got it twice
    for key in webhook_server.repeated_keys():  # a POST cut off mid-body by a kill
        assert webhook_server.acted_counts[key] == 1
    with DeliveryLog.open(pg_url, hash_key=KEY.encode()) as log:
        rows = log.deliveries(campaign="engine")
        assert len(rows) == n
        assert {r.status for r in rows} == {Status.ACCEPTED}
        assert {r.key for r in rows} == set(webhook_server.accepted)
    for process in [scheduler, *workers]:
        assert process.stop(signal.SIGTERM) == 0, process.output
    assert "sends go to external workers" in scheduler.output


class LimitedBots(WebhookFake):
    """The gateway as five bots (`/bot/<n>`), each refusing more than `count` posts in any
    `seconds` (429), the way WeCom and DingTalk do; every refusal is counted."""

    def __init__(self, count: int, seconds: float) -> None:
        super().__init__(token=SECRET_CANARY)
        self.count, self.seconds = count, seconds
        self.arrivals: dict[str, list[float]] = {}
        self.refused = 0
        self._window_lock = threading.Lock()

    def handle(self, request: RecordedRequest) -> Any:
        if request.method == "POST" and request.path.startswith("/bot/"):
            with self._window_lock:
                seen = self.arrivals.setdefault(request.path, [])
                recent = [t for t in seen if t > request.received_at - self.seconds]
                if len(recent) >= self.count:
                    self.refused += 1
                    return Reply.json({"errcode": 45009}, status=429, headers={"Retry-After": "6"})
                seen.append(request.received_at)
        return super().handle(request)


def test_eight_workers_share_five_bots_limits_without_a_single_refusal(
    tmp_path: Path, pg_url: str, processes: list[Running]
) -> None:
    bots = LimitedBots(20, 6.0)  # a minute scaled down to 6 s
    with bots:
        config_path = write_engine_campaign(tmp_path, bots.url, phases=False)
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["channels"]["bots"] = {
            "type": "webhook",
            "kind": "bot",
            "rate_limit": "15/6s",  # kept below the bot's 20: one post every 0.4 s
            "concurrency": 8,
            "settings": {
                **config["channels"]["sms"]["settings"],
                "url": f"{bots.url}/bot/{{address}}",
            },
        }
        config["targets"][0]["children"] += [
            {"id": f"bot{i}", "name": f"{i}号群", "tags": ["bot"], "address": {"bots": str(i)}}
            for i in range(1, 6)
        ]
        rule = once_now(pg_url, {"channels": ["bots"], "targets": {"tags": ["bot"]}})
        config["rules"] = [{**rule, "id": f"burst{i}"} for i in range(40)]  # 40 to each bot
        config_path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        variables = env(pg_url, tmp_path / "state")
        workers = [worker(config_path, variables) for _ in range(8)]
        processes += workers
        for w in workers:
            w.wait_for("工作进程启动 worker starting", timeout=120)
        scheduler = Running(config_path, "--workers", "external", env=variables)
        processes.append(scheduler)
        scheduler.wait_for(STARTED, timeout=120)
        wait_until(lambda: len(bots.accepted) >= 200, "every post", timeout=300)
        wait_until(lambda: unfinished(pg_url, "engine") == 0, "every delivery to finish", 120)
        assert bots.refused == 0  # not one 429 from any bot
        assert {path: len(t) for path, t in bots.arrivals.items()} == {
            f"/bot/{i}": 40 for i in range(1, 6)
        }
        # the limit really was what paced them: 40 posts, one every 0.4 s, span 15.6 s
        for times in bots.arrivals.values():
            assert max(times) - min(times) >= 15.0
        assert bots.duplicate_sends() == {}
        for process in [scheduler, *workers]:
            assert process.stop(signal.SIGTERM) == 0, process.output


def test_the_scheduler_killed_mid_fan_out_the_standby_hands_over_the_rest_once(
    tmp_path: Path, webhook_server: WebhookFake, pg_url: str, processes: list[Running]
) -> None:
    n = 12_000  # fired and handed over in chunks of 5,000: the kill comes between two
    webhook_server.latency = 0.002
    rule = {"id": "fanout", "channels": ["sms"], "targets": {"tags": ["sms_list"]}}
    config = write_engine_campaign(
        tmp_path,
        webhook_server.url,
        contacts=n,
        channel={"concurrency": 16},
        rules=[once_now(pg_url, rule)],
        phases=False,
    )
    variables = env(pg_url, tmp_path / "state")
    workers = [worker(config, variables) for _ in range(2)]
    processes += workers
    for w in workers:
        w.wait_for("工作进程启动 worker starting", timeout=60)
    active = Running(config, "--workers", "external", env=variables)
    processes.append(active)
    wait_until(lambda: len(webhook_server.accepted) >= 1, "the first sends", timeout=240)
    active.proc.kill()  # SIGKILL: the lease, claims and part of the fan-out left behind
    active.proc.wait(timeout=30)
    standby = Running(config, "--workers", "external", env=variables)
    processes.append(standby)
    try:
        wait_until(lambda: len(webhook_server.accepted) >= n, "every recipient", timeout=300)
    except AssertionError:
        import sqlalchemy as sa

        print("accepted", len(webhook_server.accepted), "unfinished", unfinished(pg_url, "engine"))
        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            for q in (
                "SELECT status, lease_owner IS NOT NULL, next_check > now(), count(*)"
                " FROM delivery_state GROUP BY 1, 2, 3",
                "SELECT status, attempts, count(*) FROM procrastinate_jobs GROUP BY 1, 2",
                "SELECT occurrence_id, status FROM occurrences",
            ):
                try:
                    print(q[:40], conn.exec_driver_sql(q).all())
                except Exception as exc:
                    print(q[:40], exc)
        engine.dispose()
        for name, proc in (("STANDBY", standby), ("WORKER", workers[0])):
            with contextlib.suppress(AssertionError):
                proc.wait_for("\x00", timeout=3)
            print(name, proc.output[-3000:])
        raise
    wait_until(lambda: unfinished(pg_url, "engine") == 0, "every delivery to finish", 120)
    assert webhook_server.duplicate_sends() == {}
    for key in webhook_server.repeated_keys():
        assert webhook_server.acted_counts[key] == 1
    with DeliveryLog.open(pg_url, hash_key=KEY.encode()) as log:
        rows = log.deliveries(campaign="engine")
        assert len(rows) == n
        assert {r.status for r in rows} == {Status.ACCEPTED}
    for process in [standby, *workers]:
        assert process.stop(signal.SIGTERM) == 0, process.output
    assert "已成为调度者 now the active scheduler" in standby.output or "启动" in standby.output


def drop_connections(url: str, application: str) -> int:
    """Cut every connection of the processes under test, as a failover does to its clients."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return len(
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND pid <> pg_backend_pid()",
                    (application,),
                ).all()
            )
    finally:
        engine.dispose()


def test_connections_cut_under_load_twice_every_recipient_once_and_the_work_resumes(
    tmp_path: Path, webhook_server: WebhookFake, pg_url: str, processes: list[Running]
) -> None:
    n = 8_000
    application = f"failover-{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}&application_name={application}"
    webhook_server.latency = 0.002
    rule = {"id": "fanout", "channels": ["sms"], "targets": {"tags": ["sms_list"]}}
    config = write_engine_campaign(
        tmp_path,
        webhook_server.url,
        contacts=n,
        channel={"concurrency": 16},
        rules=[once_now(pg_url, rule)],
        phases=False,
    )
    variables = env(url, tmp_path / "state")
    running = [worker(config, variables) for _ in range(2)]
    running.append(Running(config, "--workers", "external", env=variables))
    processes += running
    restarted = 0

    def supervise() -> None:
        """Restart what stopped, as systemd's Restart=always does."""
        nonlocal restarted
        for i, process in enumerate(running):
            if process.proc.poll() is not None:
                again = (
                    worker(config, variables)
                    if "worker" in process.proc.args
                    else Running(config, "--workers", "external", env=variables)
                )
                processes.append(again)
                running[i] = again
                restarted += 1

    def sent(count: int) -> bool:
        supervise()
        return len(webhook_server.accepted) >= count

    for cut in (1, 2):
        at = cut * n // 3
        wait_until(lambda at=at: sent(at), f"cut {cut}", 240)
        assert drop_connections(pg_url, application) > 0
    wait_until(lambda: sent(n), "every recipient", timeout=300)
    try:
        wait_until(
            lambda: supervise() or unfinished(pg_url, "engine") == 0,
            "every delivery to finish",
            120,
        )
    except AssertionError:
        import sqlalchemy as sa

        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            print(
                conn.exec_driver_sql(
                    "SELECT s.status, s.lease_owner, s.next_check, s.error_class, s.reason, count(*)"
                    " FROM delivery_state s GROUP BY 1, 2, 3, 4, 5"
                ).all()
            )
        engine.dispose()
        print("restarted", restarted)
        for process in running:
            with contextlib.suppress(AssertionError):
                process.wait_for("\x00", timeout=3)
            print(process.proc.args[-4:], process.output[-2500:])
        raise
    assert webhook_server.duplicate_sends() == {}
    for key in webhook_server.repeated_keys():
        assert webhook_server.acted_counts[key] == 1
    with DeliveryLog.open(pg_url, hash_key=KEY.encode()) as log:
        assert {r.status for r in log.deliveries(campaign="engine")} == {Status.ACCEPTED}
