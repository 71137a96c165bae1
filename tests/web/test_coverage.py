"""Per-send figures are read once and kept until an event touches that send."""

from __future__ import annotations

import datetime as dt
import hashlib

from broadcaster.log import DeliveryLog, DeliveryRecord, Event
from broadcaster.vocab import Status
from broadcaster.web import queries
from broadcaster.web.coverage import SendCache
from tests.conftest import TZ

T0 = dt.datetime(2026, 3, 3, 10, 0, tzinfo=TZ)


def record(key: str, occurrence: str, channel: str = "handoff") -> DeliveryRecord:
    text = "文字"
    return DeliveryRecord(
        key=key,
        campaign="c",
        occurrence_id=occurrence,
        rule_id=occurrence.split("@")[0],
        channel_id=channel,
        endpoint="e",
        target_id="g1",
        recipient_display="一组群",
        recipient_hash=f"h-{key}",
        kind="bot",
        template="bot/a.j2",
        template_sha="t",
        text_sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        scheduled_at=T0,
    )


def test_figures_are_kept_until_their_send_changes(log: DeliveryLog) -> None:
    log.add_deliveries([record("a1", "a@1"), record("a2", "a@1", "sms"), record("b1", "b@1")], T0)
    cache = SendCache()
    computed: list[list[str]] = []

    def counting(conn, ids):  # type: ignore[no-untyped-def]
        computed.append(sorted(ids))
        return {
            occ: [(r.channel_id, r.targeted, r.accepted)]
            for occ in ids
            for r in queries.coverage_for(conn, "c", [occ])
        }

    def look() -> dict[str, object]:
        return log.read(lambda conn: cache.per_send(conn, "k", "c", ["a@1", "b@1"], counting))

    first = look()
    assert computed == [["a@1", "b@1"]]
    assert look() == first and len(computed) == 1  # nothing changed: nothing read again
    log.append([Event("a1", Status.SENDING, T0), Event("a1", Status.ACCEPTED, T0)])
    second = look()
    assert computed[-1] == ["a@1"]  # only the send that changed is read again
    assert second["b@1"] == first["b@1"]
    assert look() == second and len(computed) == 2
    log.add_deliveries([record("b2", "b@1")], T0)  # a new delivery of a send changes it too
    look()
    assert computed[-1] == ["b@1"]


def test_coverage_filters_channels_and_targets_from_one_reading(log: DeliveryLog) -> None:
    log.add_deliveries([record("a1", "a@1"), record("a2", "a@1", "sms")], T0)
    log.append([Event("a2", Status.SENDING, T0), Event("a2", Status.DELIVERED, T0)])
    cache = SendCache()
    everything = log.read(lambda conn: cache.coverage(conn, "c", ["a@1"]))
    assert sorted(r.channel_id for r in everything) == ["handoff", "sms"]
    sms = log.read(lambda conn: cache.coverage(conn, "c", ["a@1"], channel="sms"))
    assert [(r.channel_id, r.targeted, r.delivered) for r in sms] == [("sms", 1, 1)]
    for channel in (None, "sms", "handoff"):
        for target in (None, "g1", "g2"):
            mine = log.read(
                lambda conn, c=channel, t=target: cache.coverage(
                    conn, "c", ["a@1"], channel=c, target=t
                )
            )
            plain = log.read(
                lambda conn, c=channel, t=target: queries.coverage_for(
                    conn, "c", ["a@1"], channel=c, target=t
                )
            )
            assert mine == plain, (channel, target)
