"""/metrics' deliveries by channel and status, moved along with the events, equal a count."""

from __future__ import annotations

from collections import Counter

from broadcaster.log import DeliveryLog, Event
from broadcaster.log.models import delivery_state
from broadcaster.vocab import Status
from broadcaster.web.tally import StatusTally
from tests.web.test_coverage import T0, record


def full_count(log: DeliveryLog) -> dict[tuple[str, str], int]:
    import sqlalchemy as sa

    s = delivery_state
    query = sa.select(s.c.channel_id, s.c.status, sa.func.count()).group_by(
        s.c.channel_id, s.c.status
    )
    return log.read(lambda conn: {(c, st): int(n) for c, st, n in conn.execute(query)})


def test_counts_follow_the_events(log: DeliveryLog) -> None:
    tally = StatusTally()
    assert log.read(tally.counts) == {}
    log.add_deliveries([record(f"k{i}", "a@1", "sms" if i % 2 else "bot") for i in range(6)], T0)
    assert (
        log.read(tally.counts) == full_count(log) == {("sms", "planned"): 3, ("bot", "planned"): 3}
    )
    log.append([Event(f"k{i}", Status.SENDING, T0) for i in range(4)])
    log.append([Event("k1", Status.ACCEPTED, T0), Event("k2", Status.FAILED, T0)])
    log.append([Event("k1", Status.DELIVERED, T0), Event("k5", Status.SKIPPED, T0)])
    log.add_deliveries([record("k9", "b@1", "sms")], T0)
    counted = log.read(tally.counts)
    assert counted == full_count(log)
    assert Counter(counted) == Counter(
        {
            ("sms", "delivered"): 1,
            ("bot", "failed"): 1,
            ("sms", "sending"): 1,
            ("bot", "sending"): 1,
            ("bot", "planned"): 1,
            ("sms", "skipped"): 1,
            ("sms", "planned"): 1,
        }
    )
    log.append([Event("k3", Status.UNKNOWN, T0)])  # a refused transition writes nothing
    log.append([Event("k1", Status.ACCEPTED, T0)])
    assert log.read(tally.counts) == full_count(log)
