"""Rate limits shared through the PostgreSQL log: several limiters (as in several worker
processes) give out slots that, together, never exceed any endpoint's limit."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from broadcaster.engine.clock import ManualClock
from broadcaster.engine.executor import SendTask
from broadcaster.engine.queue import bundles
from broadcaster.engine.shared_limits import SharedRateLimiter
from broadcaster.log import DeliveryLog
from broadcaster.vocab import RateLimit
from tests.log.fixtures import HASH_KEY, postgres_schema

T0 = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.UTC)
BOT = RateLimit(20, 60.0)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema() as url:
        DeliveryLog.open(url, hash_key=HASH_KEY).close()  # migrated: the limiter's tables
        yield url


def max_in_window(slots: list[dt.datetime], seconds: float) -> int:
    slots = sorted(slots)
    width = dt.timedelta(seconds=seconds)
    return max(sum(1 for t in slots[i:] if t < s + width) for i, s in enumerate(slots))


@pytest.mark.postgres
def test_eight_limiters_together_stay_within_one_bots_limit(pg_url: str) -> None:
    clock = ManualClock(T0)
    limiters = [SharedRateLimiter(pg_url, clock) for _ in range(8)]
    slots: list[dt.datetime] = []
    lock = threading.Lock()

    def take(limiter: SharedRateLimiter) -> None:
        for _ in range(10):
            wait = limiter.reserve("bot-1", BOT)
            with lock:
                slots.append(T0 + dt.timedelta(seconds=wait))

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 80
    assert max_in_window(slots, 60.0) == 20  # full windows, never more
    ordered = sorted(slots)  # paced: one every 3 s, whichever process asked
    assert {b - a for a, b in itertools.pairwise(ordered)} == {dt.timedelta(seconds=3)}
    assert max(slots) - T0 == dt.timedelta(seconds=237)
    # another endpoint has its own budget
    assert limiters[0].reserve("bot-2", BOT) == 0.0
    for limiter in limiters:
        limiter.close()


@pytest.mark.postgres
def test_a_block_and_a_stricter_limit_hold_in_every_process(pg_url: str) -> None:
    clock = ManualClock(T0)
    a, b = SharedRateLimiter(pg_url, clock), SharedRateLimiter(pg_url, clock)
    a.block("bot-1", 600, "130101 发送太快 sending too fast")
    assert b.reserve("bot-1", BOT) == 600.0  # DingTalk's ten minutes, seen by the other
    [state] = b.states()
    assert state.blocked_until == T0 + dt.timedelta(seconds=600)
    assert "130101" in state.blocked_reason
    # a second channel names a stricter limit for the same endpoint: both hold
    clock.set(T0 + dt.timedelta(seconds=601))
    waits = [a.reserve("bot-1", RateLimit(1, 10.0)) for _ in range(3)]
    assert waits == [9.0, 19.0, 29.0]  # 1 per 10 s, after the slot b took at the block's end
    a.close()
    b.close()


@pytest.mark.postgres
def test_a_channel_without_a_limit_still_meets_blocks_and_other_channels_limits(
    pg_url: str,
) -> None:
    clock = ManualClock(T0)
    a, b = SharedRateLimiter(pg_url, clock), SharedRateLimiter(pg_url, clock)
    assert [a.reserve("gw", None) for _ in range(3)] == [0.0, 0.0, 0.0]  # nothing to wait for
    b.block("gw", 30, "429")
    assert a.reserve("gw", None) == 30.0  # another process's block holds for it too
    clock.set(T0 + dt.timedelta(seconds=31))
    assert a.reserve("gw", None) == 0.0
    # once any channel names a limit for the endpoint, every send to it counts and waits
    assert b.reserve("gw", RateLimit(1, 10.0)) == 0.0
    assert a.reserve("gw", None) == 10.0
    assert b.reserve("gw", RateLimit(1, 10.0)) == 20.0
    a.close()
    b.close()


@pytest.mark.postgres
def test_the_kept_connection_cut_the_next_reserve_reconnects(pg_url: str) -> None:
    limiter = SharedRateLimiter(pg_url, ManualClock(T0))
    assert limiter.reserve("gw", None) == 0.0
    assert limiter._peek_conn is not None
    pid = limiter._peek_conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    admin = sa.create_engine(pg_url, poolclass=NullPool)
    with admin.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
    admin.dispose()
    assert limiter.reserve("gw", None) == 0.0  # a new connection, not an error for the send
    limiter.close()


def test_jobs_bundle_a_channels_tasks_without_cutting_one() -> None:
    def task(channel: str, n: int, i: int) -> SendTask:
        return SendTask("c", "o", channel, f"e{i}", tuple(f"{channel}{i}-{j}" for j in range(n)))

    tasks = [task("sms", 100, i) for i in range(5)] + [task("bot", 1, i) for i in range(450)]
    jobs = bundles(tasks, size=200)
    assert sorted(sum(len(t.keys) for t in job) for job in jobs) == [50, 100, 200, 200, 200, 200]
    assert all(len({t.channel_id for t in job}) == 1 for job in jobs)
    assert sorted(k for job in jobs for t in job for k in t.keys) == sorted(
        k for t in tasks for k in t.keys
    )
