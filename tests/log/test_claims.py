"""Log v2: the state machine, claims and leases, due deliveries, late outcomes, scrubbing,
a dead writer. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from broadcaster.errors import LogStoreError, LogWriterDeadError
from broadcaster.log import DeliveryLog, Event
from broadcaster.log.writer import Job
from broadcaster.vocab import TRANSITIONS, ErrorClass, Status, can_follow

from .fixtures import HASH_KEY
from .test_store import CAMPAIGN, T0, ev, record, walk

LEASE = dt.timedelta(seconds=30)


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


# --- the state machine --------------------------------------------------------------------------


def test_every_status_can_be_reached_and_finals_are_final() -> None:
    reachable = {Status.PLANNED}
    frontier = [Status.PLANNED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(Status) - {Status.MISSED}
    for final in (Status.DELIVERED, Status.FAILED, Status.SKIPPED):
        assert TRANSITIONS[final] == frozenset()
    assert not can_follow(Status.ACCEPTED, Status.INTERRUPTED)  # no regression at stop
    assert not can_follow(Status.SENDING, Status.SENDING)  # one event per change


def test_the_log_refuses_regressions_and_repeats(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1")], T0)
    outcome = log.append(
        [
            ev("k1", Status.SENDING, 1),
            ev("k1", Status.ACCEPTED, 2),
            ev("k1", Status.INTERRUPTED, 3),  # the regression of the first engine at stop
            ev("k1", Status.ACCEPTED, 4),  # the same status again
            ev("k1", Status.DELIVERED, 5),
            ev("k1", Status.FAILED, 6),  # a late receipt after a final one
        ]
    )
    assert outcome == [
        None,
        None,
        "accepted → interrupted",
        "accepted → accepted",
        None,
        "delivered → failed",
    ]
    assert [e.status for e in log.events("k1")] == [
        Status.PLANNED,
        Status.SENDING,
        Status.ACCEPTED,
        Status.DELIVERED,
    ]
    assert log.latest(["k1"])["k1"].status is Status.DELIVERED


def test_resends_count_only_sends_after_an_unknown_outcome(log: DeliveryLog) -> None:
    """A 503 then a lost answer is one unknown re-send, not two (the first engine's count)."""
    log.add_deliveries([record(log, "k1")], T0)
    log.append(
        [
            ev("k1", Status.SENDING, 1),
            ev("k1", Status.DEFERRED, 2, error_class=ErrorClass.TRANSIENT, reason="HTTP 503"),
            ev("k1", Status.SENDING, 3),
            ev("k1", Status.UNKNOWN, 4),
        ]
    )
    state = log.latest(["k1"])["k1"]
    assert (state.attempt, state.resends) == (2, 0)
    log.append([ev("k1", Status.SENDING, 5), ev("k1", Status.UNKNOWN, 6)])
    state = log.latest(["k1"])["k1"]
    assert (state.attempt, state.resends) == (3, 1)
    assert [e.status for e in log.events("k1")].count(Status.UNKNOWN) == 2  # once per change


# --- claims -------------------------------------------------------------------------------------


def test_new_deliveries_are_claimed_by_who_adds_them(log: DeliveryLog) -> None:
    mine = log.add_deliveries(
        [record(log, "k1"), record(log, "k2")], T0, owner="A", lease_until=T0 + LEASE
    )
    assert set(mine.held) == {"k1", "k2"}
    assert {s.lease_owner for s in mine.held.values()} == {"A"}
    theirs = log.add_deliveries(
        [record(log, "k1"), record(log, "k3")], T0, owner="B", lease_until=T0 + LEASE
    )
    assert set(theirs.held) == {"k3"} and set(theirs.others) == {"k1"}
    assert theirs.others["k1"].lease_owner == "A"


def test_an_expired_lease_can_be_taken_over(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1")], T0, owner="A", lease_until=T0 + LEASE)
    early = log.claim(["k1"], owner="B", now=T0 + LEASE / 2, lease_until=T0 + 2 * LEASE)
    assert early.held == {}
    late = log.claim(["k1"], owner="B", now=T0 + 2 * LEASE, lease_until=T0 + 3 * LEASE)
    assert set(late.held) == {"k1"}
    # A, back from a pause, cannot start an attempt on what B took over
    assert (
        log.start_attempt([ev("k1", Status.SENDING)], owner="A", lease_until=T0 + 4 * LEASE) == {}
    )
    assert log.start_attempt([ev("k1", Status.SENDING)], owner="B", lease_until=T0 + 4 * LEASE) == {
        "k1": 1
    }
    assert log.latest(["k1"])["k1"].status is Status.SENDING


def test_a_second_sending_is_refused_even_to_the_holder(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1")], T0, owner="A", lease_until=T0 + LEASE)
    assert log.start_attempt([ev("k1", Status.SENDING)], owner="A", lease_until=T0 + LEASE) == {
        "k1": 1
    }
    assert log.start_attempt([ev("k1", Status.SENDING, 2)], owner="A", lease_until=T0 + LEASE) == {}


def test_racing_claimers_get_disjoint_sets(log_url: str) -> None:
    keys = [f"k{i:03d}" for i in range(300)]
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as setup:
        setup.add_deliveries([record(setup, k) for k in keys], T0)
    logs = [DeliveryLog.open(log_url, hash_key=HASH_KEY) for _ in range(3)]
    got: dict[str, set[str]] = {}
    barrier = threading.Barrier(len(logs))

    def claim(i: int) -> None:
        barrier.wait()
        held: set[str] = set()
        for k in keys:  # one by one, interleaved with the others
            held |= set(logs[i].claim([k], owner=f"P{i}", now=T0, lease_until=T0 + LEASE).held)
        got[f"P{i}"] = held

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(logs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for log in logs:
        log.close()
    claimed = [k for held in got.values() for k in held]
    assert sorted(claimed) == keys  # every key once, by exactly one claimer


def test_renew_and_release(log: DeliveryLog) -> None:
    log.add_deliveries(
        [record(log, "k1"), record(log, "k2")], T0, owner="A", lease_until=T0 + LEASE
    )
    assert log.renew_leases("A", T0 + 3 * LEASE) == 2
    assert log.claim(["k1"], owner="B", now=T0 + 2 * LEASE, lease_until=T0 + 4 * LEASE).held == {}
    log.release_leases("A", ["k1"])
    assert set(log.claim(["k1", "k2"], owner="B", now=T0, lease_until=T0 + LEASE).held) == {"k1"}
    log.release_leases("A")
    assert set(log.claim(["k2"], owner="B", now=T0, lease_until=T0 + LEASE).held) == {"k2"}


# --- due deliveries -----------------------------------------------------------------------------


def test_claim_due_takes_only_due_free_deliveries_of_its_campaign(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, f"k{i}") for i in range(5)], T0)
    log.add_deliveries([record(log, "other", campaign="township")], T0)
    log.append(
        [
            ev("k0", Status.DEFERRED, 1, next_check=minutes(60)),  # not yet
            *walk("k1", Status.ACCEPTED),  # accepted, no next check: done
            ev("k2", Status.SENDING, 1, next_check=minutes(5)),  # settles at +5
        ]
    )
    log.claim(["k3"], owner="A", now=T0, lease_until=minutes(30))  # held by A
    due = log.claim_due(CAMPAIGN, owner="B", now=minutes(10), lease_until=minutes(11))
    assert [s.key for s in due] == ["k4", "k2"]  # by next check: k4 at T0, k2 at +5
    assert {s.lease_owner for s in due} == {"B"}
    assert log.claim_due(CAMPAIGN, owner="C", now=minutes(10), lease_until=minutes(11)) == []
    later = log.claim_due(CAMPAIGN, owner="C", now=minutes(61), lease_until=minutes(62))
    assert [s.key for s in later] == ["k3", "k4", "k2", "k0"]  # leases of A and B ran out


def test_set_next_check_stops_or_moves_the_checks(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "k1")], T0)
    log.append(walk("k1", Status.ACCEPTED))
    log.set_next_check(["k1"], minutes(5))
    assert [
        s.key for s in log.claim_due(CAMPAIGN, owner="A", now=minutes(6), lease_until=minutes(7))
    ] == ["k1"]
    log.set_next_check(["k1"], None)
    assert log.claim_due(CAMPAIGN, owner="A", now=minutes(600), lease_until=minutes(601)) == []
    assert log.latest(["k1"])["k1"].status is Status.ACCEPTED  # no event: only the check moved


# --- late outcomes ------------------------------------------------------------------------------


def outcome(status: Status, **kw: object) -> Event:
    return Event("", status, minutes(30), reason="回执 receipt", **kw)  # type: ignore[arg-type]


def test_outcomes_match_by_key_then_provider_id_and_number(log: DeliveryLog) -> None:
    a, b, c = (record(log, k, address=f"1390000000{i}") for i, k in enumerate("abc"))
    log.add_deliveries([a, b, c], T0)
    batch_id = "BizId-1"  # one provider call carried a and b
    log.append(
        [
            *walk("a", Status.SENDING),
            ev("a", Status.ACCEPTED, 2, provider_id=batch_id),
            *walk("b", Status.SENDING),
            ev("b", Status.ACCEPTED, 2, provider_id=batch_id),
            *walk("c", Status.SENDING),
            ev("c", Status.ACCEPTED, 2, provider_id="BizId-2"),
        ]
    )
    tally = log.record_outcomes(
        "sms",
        [
            (outcome(Status.DELIVERED), "a", None, None),  # our key echoed back
            (
                outcome(Status.FAILED, error_class=ErrorClass.RECIPIENT),
                None,
                batch_id,
                b.recipient_hash,
            ),
            (outcome(Status.DELIVERED), None, "BizId-2", None),  # unique provider id
            (outcome(Status.DELIVERED), None, batch_id, None),  # ambiguous: refused
            (outcome(Status.DELIVERED), None, "BizId-9", None),  # nothing like it: refused
            (outcome(Status.DELIVERED), "a", None, None),  # a repeated receipt
        ],
        minutes(31),
    )
    assert (tally.recorded, tally.repeated, tally.unmatched) == (3, 1, 2)
    latest = log.latest("abc")
    assert [latest[k].status for k in "abc"] == [Status.DELIVERED, Status.FAILED, Status.DELIVERED]
    assert latest["b"].error_class is ErrorClass.RECIPIENT


def test_a_feed_cursor_is_stored_with_its_outcomes(log: DeliveryLog) -> None:
    log.add_deliveries([record(log, "a")], T0)
    log.append(walk("a", Status.ACCEPTED))
    assert log.feed_cursor("mini:sms") is None
    log.record_outcomes(
        "sms",
        [(outcome(Status.DELIVERED), "a", None, None)],
        minutes(31),
        feed="mini:sms",
        cursor="100",
    )
    assert log.feed_cursor("mini:sms") == "100"
    log.record_outcomes("sms", [], minutes(32), feed="mini:sms", cursor="200")
    assert log.feed_cursor("mini:sms") == "200"


# --- leadership ---------------------------------------------------------------------------------


def test_one_scheduler_lease_at_a_time(log: DeliveryLog) -> None:
    a = log.acquire_lease("scheduler:mini", "A", now=T0, until=T0 + LEASE, info='{"pid": 1}')
    b = log.acquire_lease("scheduler:mini", "B", now=T0, until=T0 + LEASE, info='{"pid": 2}')
    assert (a.acquired, b.acquired) == (True, False)
    assert b.owner == "A" and b.info == '{"pid": 1}'
    assert log.acquire_lease(
        "scheduler:mini", "A", now=T0 + LEASE / 2, until=T0 + 2 * LEASE, info="{}"
    ).acquired
    assert not log.acquire_lease(
        "scheduler:mini", "B", now=T0 + LEASE, until=T0 + 3 * LEASE, info="{}"
    ).acquired
    # A dies: its lease runs out, B takes over
    assert log.acquire_lease(
        "scheduler:mini", "B", now=T0 + 3 * LEASE, until=T0 + 4 * LEASE, info="{}"
    ).acquired
    assert log.acquire_lease(
        "scheduler:township", "A", now=T0, until=T0 + LEASE, info="{}"
    ).acquired
    log.release_lease("scheduler:mini", "B")
    assert log.acquire_lease(
        "scheduler:mini", "A", now=T0 + 3 * LEASE, until=T0 + 5 * LEASE, info="{}"
    ).acquired


# --- what is stored -----------------------------------------------------------------------------


def test_provider_answers_are_scrubbed_before_they_are_stored(log: DeliveryLog) -> None:
    log.redact(["tok-Canary-7Qx9"])
    log.add_deliveries([record(log, "k1")], T0)
    answer = (
        '{"errmsg": "invalid key tok-Canary-7Qx9 for https://qyapi.example/send?key=abc123&x=1",'
        ' "to": "13812345678", "token": "zz9-secret", "sig": "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"}'
    )
    log.append(
        [
            ev("k1", Status.SENDING),
            ev("k1", Status.FAILED, 2, error_class=ErrorClass.CONFIG, reason=answer, detail=answer),
        ]
    )
    failed = log.events("k1")[-1]
    for stored in (failed.reason, failed.detail):
        for secret in (
            "tok-Canary-7Qx9",
            "abc123",
            "13812345678",
            "zz9-secret",
            "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6",
        ):
            assert secret not in stored
        assert "138****5678" in stored


def test_a_dead_writer_fails_every_caller_at_once(log_url: str) -> None:
    log = DeliveryLog.open(log_url, hash_key=HASH_KEY)
    log.add_deliveries([record(log, "k1")], T0)

    class Boom(BaseException):
        pass

    writer = log._writer
    real = writer._commit

    def commit(group: list[Job]) -> None:
        if any(j.events is None and j.work is crash for j in group):
            raise Boom("writer thread crashed")
        real(group)

    def crash(conn: object, scratch: object) -> None:  # pragma: no cover - never reached
        return None

    writer._commit = commit  # type: ignore[method-assign]
    with pytest.raises(LogWriterDeadError, match="writer stopped"):
        writer.submit(Job(work=crash))
    assert not log.alive
    with pytest.raises(LogWriterDeadError):
        log.append([ev("k1", Status.SENDING)])
    with pytest.raises(LogStoreError):
        log.close()
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as again:  # nothing acknowledged was lost
        assert again.latest(["k1"])["k1"].status is Status.PLANNED
