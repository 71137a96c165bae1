"""What happens after a send: the sweep, reconciling, late outcomes pulled or pushed.

The sweep claims deliveries whose next check is due and nobody holds (the log keeps
the time with each delivery, so this reads an index, not the whole log):

* planned or deferred: sent (a deferral's time has come; a dead process's work);
* sending, after the channel's settle time: the attempt was cut off: interrupted;
* interrupted or unknown: reconciled with the provider, batched and rate-limited
  like sends. Arrived: recorded. Never arrived: sent again. No answer: asked again
  until the channel's window ends, then an operator decides (unresolved); a channel
  that cannot look outcomes up re-sends only as often as it declares safe;
* accepted, on a channel with late outcomes: asked for its receipt until the window
  ends; after it, it stays accepted with "no receipt" and is not asked again.

A delivery whose rule, target or number left the config is still finished: skipped
if never sent, else reconciled without its address, or unresolved.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from broadcaster.channel import (
    BaseChannel,
    Delivery,
    InboundReply,
    InboundRequest,
    InboundRoute,
    Outcome,
    Result,
)
from broadcaster.engine.dispatch import Dispatcher, chunks
from broadcaster.engine.executor import TaskReport, gather
from broadcaster.engine.prepare import with_first_part
from broadcaster.log import DeliveryState, Event, OutcomeTally
from broadcaster.vocab import ErrorClass, Status

__all__ = ["Recovery", "SweepReport"]

log = logging.getLogger("broadcaster.dispatch")

SWEEP_BATCH = 500  # deliveries claimed per pass (one pass costs tens of ms at 1M deliveries)
SWEEP_PASSES = 40  # passes per sweep at most; the next sweep takes the rest
UNKNOWN_WINDOW = 86_400.0  # seconds an unknown outcome is looked up, for channels without a window
FEED_PAGES = 100  # pages pulled from one outcome feed per sweep at most
REMOVED = "对象或号码已从配置中移除 the rule, target or number left the config"


@dataclass
class SweepReport:
    """What one sweep did, by kind of work."""

    sent: int = 0
    reconciled: int = 0
    polled: int = 0
    settled: TaskReport = field(default_factory=TaskReport)
    futures: list[Future[TaskReport]] = field(default_factory=list)  # the sends it queued
    flush: Callable[[], None] = lambda: None

    def wait(self) -> TaskReport:
        """Block until the sends this sweep queued finished and their outcomes are written."""
        report = gather(self.futures)
        self.flush()
        return report

    @property
    def total(self) -> int:
        return self.sent + self.reconciled + self.polled


class Recovery:
    """The sweep, reconciliation and late outcomes of one dispatcher."""

    def __init__(self, dispatcher: Dispatcher):
        self.d = dispatcher

    # -- the sweep

    def sweep(self, now: dt.datetime | None = None, *, limit: int = SWEEP_BATCH) -> SweepReport:
        """Take what is due, a pass of `limit` deliveries at a time, until nothing is."""
        now = now or self.d.clock.now()
        report = SweepReport(flush=self.d.log.flush)
        for _ in range(SWEEP_PASSES):
            if self._pass(now, limit, report) < limit or self.d.stopping.is_set():
                break
        return report

    def _pass(self, now: dt.datetime, limit: int, report: SweepReport) -> int:
        """One pass of the sweep; how many deliveries it claimed."""
        d = self.d
        states = d.log.claim_due(
            d.campaign.id,
            owner=d.owner,
            now=now,
            lease_until=now + dt.timedelta(seconds=d.lease),
            limit=limit,
        )
        claimed = states
        with d._lock:
            d._unreleased.difference_update(s.key for s in states)  # claimed again: keep them
            mine = d._queued | d._sending
        states = [s for s in states if s.key not in mine]
        send: list[DeliveryState] = []
        reconcile: list[DeliveryState] = []
        poll: list[DeliveryState] = []
        events: list[Event] = []
        quiet_keys: list[str] = []
        for s in states:
            profile = d.profiles.get(s.channel_id)
            if profile is None or not profile.enabled:
                reason = REMOVED if profile is None else profile.disabled_reason or "disabled"
                cls = ErrorClass.REMOVED if profile is None else ErrorClass.DISABLED
                if s.status in (Status.PLANNED, Status.DEFERRED):
                    events.append(Event(s.key, Status.SKIPPED, now, cls, reason))
                elif s.status in (Status.SENDING, Status.UNKNOWN, Status.INTERRUPTED):
                    events.append(Event(s.key, Status.UNRESOLVED, now, cls, reason))
                else:
                    quiet_keys.append(s.key)
            elif s.status in (Status.PLANNED, Status.DEFERRED):
                send.append(s)
            elif s.status is Status.SENDING:
                events.append(
                    Event(
                        s.key,
                        Status.INTERRUPTED,
                        now,
                        ErrorClass.UNKNOWN,
                        "发送被中断 the attempt was cut off (the process stopped)",
                        keep_lease=True,
                    )
                )
                reconcile.append(s)
            elif s.status in (Status.UNKNOWN, Status.INTERRUPTED):
                reconcile.append(s)
            elif s.status is Status.ACCEPTED and profile.capabilities.late_outcomes:
                poll.append(s)
            else:
                quiet_keys.append(s.key)
        if events:
            d.log.append(events)
            for e in events:
                report.settled.add(e.status.value)
        if quiet_keys:
            d.log.set_next_check(quiet_keys, None)
        report.sent += self._send(send, now, report)
        report.reconciled += self._reconcile(reconcile, now, report)
        report.polled += self._poll(poll, now)
        return len(claimed)

    def _send(self, states: Sequence[DeliveryState], now: dt.datetime, report: SweepReport) -> int:
        d = self.d
        ready: list[Delivery] = []
        gone: list[Event] = []
        for s in states:
            delivery = d.resolver.delivery(s)
            if delivery is None:
                gone.append(Event(s.key, Status.SKIPPED, now, ErrorClass.REMOVED, REMOVED))
            else:
                ready.append(delivery)
        if gone:
            d.log.append(gone)
        report.futures += d._queue(ready)
        return len(ready)

    # -- reconciling unknown outcomes

    def _ask(self, channel_id: str, deliveries: list[Delivery]) -> dict[str, Result]:
        """The channel's answers about deliveries, one rate-limited call per batch."""
        d = self.d
        profile = d.profiles[channel_id]
        channel = d.channel(channel_id)
        answers: dict[str, Result] = {}
        for batch in chunks(deliveries, max(1, profile.capabilities.reconcile_batch)):
            endpoint = channel.endpoint(batch[0].recipient)
            d.clock.sleep(d.limiter.reserve(endpoint, profile.capabilities.rate_limit))
            if d.stopping.is_set():
                break
            try:
                answers.update((r.key, r) for r in channel.reconcile(batch))
            except Exception as exc:
                log.warning("reconcile on %s failed: %r", channel_id, exc)
        return answers

    def _reconcile(
        self, states: Sequence[DeliveryState], now: dt.datetime, report: SweepReport
    ) -> int:
        d = self.d
        by_channel: dict[str, list[DeliveryState]] = defaultdict(list)
        for s in states:
            by_channel[s.channel_id].append(s)
        for channel_id, items in by_channel.items():
            caps = d.profiles[channel_id].capabilities
            deliveries = {s.key: d.resolver.delivery(s) for s in items}
            asking = [deliveries[s.key] or d.resolver.unaddressed(s) for s in items]
            answers = self._ask(channel_id, asking) if caps.reconciles else {}
            events: list[Event] = []
            resend: list[Delivery] = []
            later: list[str] = []
            window = dt.timedelta(seconds=caps.outcome_window or UNKNOWN_WINDOW)
            for s in items:
                r = answers.get(s.key)
                known = deliveries[s.key]
                if r is not None and r.status in (Status.ACCEPTED, Status.DELIVERED):
                    check = None
                    if caps.late_outcomes and r.status is Status.ACCEPTED:
                        check = now + dt.timedelta(seconds=caps.outcome_poll)
                    events.append(
                        Event(
                            s.key,
                            r.status,
                            now,
                            None,
                            r.reason or "对账确认已到达 reconciled: it arrived",
                            r.provider_id,
                            detail=r.raw,
                            next_check=check,
                        )
                    )
                elif (
                    r is not None
                    and r.status is Status.FAILED
                    and r.error_class is ErrorClass.TRANSIENT
                ):
                    if known is None:
                        events.append(
                            Event(s.key, Status.UNRESOLVED, now, ErrorClass.REMOVED, REMOVED)
                        )
                    else:  # the provider never got it (from this part on): safe to send
                        resend.append(with_first_part(known, r.parts_done))
                elif r is not None and r.status is Status.FAILED:
                    events.append(
                        Event(
                            s.key,
                            Status.FAILED,
                            now,
                            r.error_class,
                            r.reason,
                            r.provider_id,
                            detail=r.raw,
                        )
                    )
                elif known is not None and s.resends < caps.resend_on_unknown:
                    resend.append(known)
                elif caps.reconciles and now - s.status_at < window:
                    later.append(s.key)
                else:
                    events.append(
                        Event(
                            s.key,
                            Status.UNRESOLVED,
                            now,
                            ErrorClass.UNKNOWN,
                            "结果无法查明，待人工处理 the outcome cannot be found out: an operator"
                            " decides (broadcaster resolve)",
                        )
                    )
            if events:
                d.log.append(events)
            if later:
                d.log.set_next_check(later, now + dt.timedelta(seconds=min(caps.outcome_poll, 600)))
            if resend:
                report.futures += d._queue(resend)
        return len(states)

    # -- late outcomes

    def _poll(self, states: Sequence[DeliveryState], now: dt.datetime) -> int:
        """Ask for the receipts of accepted deliveries, until the channel's window ends."""
        d = self.d
        by_channel: dict[str, list[DeliveryState]] = defaultdict(list)
        for s in states:
            by_channel[s.channel_id].append(s)
        for channel_id, items in by_channel.items():
            caps = d.profiles[channel_id].capabilities
            asking = [d.resolver.delivery(s) or d.resolver.unaddressed(s) for s in items]
            answers = self._ask(channel_id, asking)
            events: list[Event] = []
            again: list[str] = []
            done: list[str] = []
            window = dt.timedelta(seconds=caps.outcome_window or 0)
            for s in items:
                r = answers.get(s.key)
                if r is not None and r.status in (Status.DELIVERED, Status.FAILED):
                    events.append(
                        Event(
                            s.key,
                            r.status,
                            now,
                            r.error_class,
                            r.reason,
                            r.provider_id,
                            detail=r.raw,
                        )
                    )
                elif now - s.status_at < window:
                    again.append(s.key)
                else:
                    done.append(s.key)  # stays accepted, counted as "no receipt"
            if events:
                d.log.append(events)
            if again:
                d.log.set_next_check(again, now + dt.timedelta(seconds=caps.outcome_poll))
            if done:
                d.log.set_next_check(done, None)
        return len(states)

    def record(
        self,
        channel_id: str,
        outcomes: Sequence[Outcome],
        *,
        feed: str | None = None,
        cursor: str | None = None,
    ) -> OutcomeTally:
        """Write late outcomes of a channel (matched by key, provider id and number)."""
        d = self.d
        now = d.clock.now()
        items = []
        for o in outcomes:
            template = Event(
                "",
                o.status,
                o.at or now,
                o.error_class,
                o.reason or ("回执 receipt: " + o.status.label),
                o.provider_id,
                detail=o.raw,
            )
            rhash = d.log.recipient_hash(o.address) if o.address else None
            items.append((template, o.key, o.provider_id, rhash))
        return d.log.record_outcomes(channel_id, items, now, feed=feed, cursor=cursor)

    def pull_feeds(self) -> int:
        """Pull every outcome feed once through; each page written before the next is pulled."""
        d = self.d
        total = 0
        for cid, profile in d.profiles.items():
            if not profile.enabled:
                continue
            channel = d.channel(cid)
            if getattr(type(channel), "pull_outcomes", None) is BaseChannel.pull_outcomes:
                continue
            name = f"{d.campaign.id}:{cid}"
            cursor = d.log.feed_cursor(name)
            for _ in range(FEED_PAGES):
                if d.stopping.is_set():
                    return total
                d.clock.sleep(d.limiter.reserve(f"{cid}#feed", profile.capabilities.rate_limit))
                try:
                    page = channel.pull_outcomes(cursor)
                except Exception as exc:
                    log.warning("pulling outcomes of %s failed: %r", cid, exc)
                    break
                if page is None:
                    break
                tally = self.record(cid, page.outcomes, feed=name, cursor=page.cursor)
                total += tally.recorded
                cursor = page.cursor
                if not page.more:
                    break
        return total

    def inbound(
        self, channel_id: str, route: InboundRoute, request: InboundRequest
    ) -> InboundReply:
        """Answer a request to a plugin's route and record the outcomes it carried.

        Outcomes matching no delivery of the channel are refused; a request whose
        outcomes all match nothing is answered 404.
        """
        reply = route.handler(request)
        if reply.outcomes:
            tally = self.record(channel_id, reply.outcomes)
            if tally.unmatched == len(reply.outcomes):
                return InboundReply.json(
                    {"error": "no matching delivery", "错误": "没有匹配的投递"}, status=404
                )
        return reply
