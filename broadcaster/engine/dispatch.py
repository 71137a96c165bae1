"""Dispatch: turn an occurrence into deliveries, log them, send them, log the outcomes.

Every delivery (occurrence, channel, recipient) gets an idempotency key and is
written to the delivery log before anything is sent; each attempt is logged as
`sending` before the call and again with its outcome. Nothing is re-sent blindly:
a delivery whose outcome is unknown is reconciled with the provider, and re-sent
only when the provider says it never arrived (or the channel declares a resend safe).

Planning and execution are separated: `Dispatcher.prepare` plans the deliveries of
an occurrence; `SendTask`s (plain data) go to an `Executor`; `Dispatcher.execute`
runs one task. The in-process thread pool can be replaced by a distributed worker
pool that calls `execute` without touching any channel.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from broadcaster.channel import (
    Addressing,
    Channel,
    ChannelContext,
    Delivery,
    ErrorClass,
    Message,
    MessageKind,
    Recipient,
    Result,
    Status,
)
from broadcaster.engine.clock import Clock
from broadcaster.engine.executor import Executor, SendTask, ThreadExecutor
from broadcaster.engine.http import SessionPerThread
from broadcaster.engine.ratelimit import Limiters
from broadcaster.errors import ChannelError, OutcomeUnknownError, PermanentError, RetryableError
from broadcaster.log import DeliveryLog, DeliveryRecord, DeliveryState, Event
from broadcaster.model.campaign import Campaign, ChannelSpec, RuleSpec
from broadcaster.model.plan import Occurrence, Planner

__all__ = ["Dispatcher", "FireReport", "delivery_key"]

log = logging.getLogger("broadcaster.engine.dispatch")
T = TypeVar("T")

FIRE_CHUNK = 5_000  # deliveries logged and handed to workers at a time


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def delivery_key(
    secret: bytes, campaign: str, occurrence_id: str, channel_id: str, address: str
) -> str:
    """The idempotency key: keyed, so it reveals nothing about the address it covers."""
    data = f"{campaign}\x1f{occurrence_id}\x1f{channel_id}\x1f{address}".encode()
    return hmac.new(secret, data, hashlib.sha256).hexdigest()[:32]


@dataclass
class FireReport:
    """What one occurrence produced: counts by channel and status."""

    occurrence_id: str
    first_time: bool
    counts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    errors: list[str] = field(default_factory=list)

    def add(self, channel_id: str, status: Status, n: int = 1) -> None:
        self.counts[(channel_id, status.value)] += n


class _RetryBatch(Exception):
    def __init__(self, pending: list[Delivery], retry_after: float | None):
        super().__init__(f"{len(pending)} deliveries to retry")
        self.pending = pending
        self.retry_after = retry_after


def _wait(retry_state: RetryCallState) -> float:
    """Exponential backoff with jitter, never shorter than the provider's Retry-After."""
    backoff = wait_exponential_jitter(initial=1, max=60)(retry_state)
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    after = getattr(exc, "retry_after", None) or 0.0
    return max(backoff, after)


class Dispatcher:
    """Sends occurrences through the campaign's channels and records everything in the log."""

    def __init__(
        self,
        campaign: Campaign,
        log_store: DeliveryLog,
        *,
        clock: Clock,
        hash_key: bytes,
        executor: Executor | None = None,
        limiters: Limiters | None = None,
        max_attempts: int = 4,
        on_result: Callable[[Delivery, Result], None] | None = None,
        state_dir: Path | None = None,
    ):
        self.campaign = campaign
        self.state_dir = state_dir or campaign.base_dir / "var"
        self.planner = Planner(campaign)
        self.log = log_store
        self.clock = clock
        self.hash_key = hash_key
        self.limiters = limiters or Limiters(clock)
        self.max_attempts = max_attempts
        self.on_result = on_result
        workers = sum(c.capabilities.concurrency for c in campaign.channels.values() if c.enabled)
        self._own_executor = executor is None
        self.executor: Executor = executor or ThreadExecutor(min(512, max(4, workers)))
        self._channels: dict[str, Channel] = {}
        self._sessions: dict[str, SessionPerThread] = {}
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self.stopping = threading.Event()

    def in_flight(self) -> list[str]:
        """Keys handed to a worker and not finished yet."""
        with self._lock:
            return sorted(self._in_flight)

    # -- channels

    def channel(self, channel_id: str) -> Channel:
        """The open plugin instance of a channel (opened once, shared by all threads)."""
        with self._lock:
            found = self._channels.get(channel_id)
            if found is None:
                spec = self.campaign.channels[channel_id]
                session = SessionPerThread(spec.capabilities.concurrency)
                context = ChannelContext(
                    channel_id,
                    session,  # type: ignore[arg-type]
                    self.clock.now,
                    self.state_dir / "channels" / channel_id,
                    self.campaign.base_dir,
                )
                found = spec.open(context)
                self._channels[channel_id] = found
                self._sessions[channel_id] = session
            return found

    def close(self) -> None:
        if self._own_executor:
            self.executor.shutdown(wait=True)
        if not self.log.closed:
            self.log.flush()  # outcomes queued without waiting are committed (or their error raised)
        for cid, channel in self._channels.items():
            try:
                channel.close()
            except Exception:  # a plugin failing to close must not hide other work
                log.exception("channel %s failed to close", cid)
            self._sessions[cid].close()
        self._channels.clear()

    # -- planning deliveries

    def recipients(self, spec: ChannelSpec, target_id: str) -> list[Recipient]:
        node = self.campaign.targets[target_id]
        if spec.capabilities.addressing is Addressing.CONTACTS:
            return [Recipient(target_id, c.number, c.display) for c in node.contacts]
        address = dict(node.address).get(spec.id, target_id)
        return [Recipient(target_id, address, node.name)]

    def prepare(
        self,
        occurrence: Occurrence,
        rule: RuleSpec | None = None,
        extra_vars: dict[str, Any] | None = None,
    ) -> list[tuple[Delivery, DeliveryRecord]]:
        """Every delivery of one occurrence, rendered, keyed and ready to log."""
        return list(self.iter_prepare(occurrence, rule, extra_vars))

    def iter_prepare(
        self,
        occurrence: Occurrence,
        rule: RuleSpec | None = None,
        extra_vars: dict[str, Any] | None = None,
    ) -> Iterator[tuple[Delivery, DeliveryRecord]]:
        """`prepare`, one delivery at a time: a fan-out to 100,000 numbers is never all in memory."""
        campaign = self.campaign
        renderer = campaign.renderer
        for item in self.planner.expand(occurrence, render=False, spec=rule):
            if item.template is None:
                continue  # validate refuses such a config; nothing to render
            spec = campaign.channels[item.channel_id]
            text = self.planner.text(
                item.template,
                occurrence,
                item.channel_id,
                item.target_id,
                item.theme,
                item.occasion,
                item.topic,
                extra_vars=extra_vars,
            )
            message = Message(
                kind=spec.kind,
                text=text,
                template=item.template,
                template_sha=renderer.sha(item.template),
                theme=item.theme,
                topic=item.topic,
                title=_title(spec.kind, text),
            )
            channel = self.channel(spec.id) if spec.enabled else None
            for recipient in self.recipients(spec, item.target_id):
                key = delivery_key(
                    self.hash_key, campaign.id, occurrence.id, spec.id, recipient.address
                )
                endpoint = channel.endpoint(recipient) if channel is not None else spec.id
                delivery = Delivery(
                    key,
                    occurrence.id,
                    occurrence.rule_id,
                    spec.id,
                    recipient,
                    message,
                    occurrence.at,
                )
                record = DeliveryRecord(
                    key=key,
                    campaign=campaign.id,
                    occurrence_id=occurrence.id,
                    rule_id=occurrence.rule_id,
                    channel_id=spec.id,
                    endpoint=hashlib.sha256(endpoint.encode()).hexdigest()[:16],
                    target_id=item.target_id,
                    recipient_display=recipient.display,
                    recipient_hash=self.log.recipient_hash(recipient.address),
                    kind=spec.kind.value,
                    template=item.template,
                    template_sha=message.template_sha,
                    text_sha256=message.text_sha256,
                    text=text,
                    scheduled_at=occurrence.at,
                )
                yield delivery, record

    # -- firing

    def fire(
        self,
        occurrence: Occurrence,
        *,
        rule: RuleSpec | None = None,
        extra_vars: dict[str, Any] | None = None,
        note: str = "",
        fired_note: str = "",
    ) -> FireReport:
        """Log and send one occurrence; on a restart, pick up where the last run stopped.

        `fired_note` is stored when it first fires (a one-off send's description), `note`
        when it is done (e.g. "caught up 1:30:00 late").
        """
        now = self.clock.now()
        first = self.log.begin_occurrence(
            occurrence.id, occurrence.rule_id, occurrence.at, now, fired_note
        )
        report = FireReport(occurrence.id, first)
        futures: list[Future[Any]] = []
        for chunk in _chunks(self.iter_prepare(occurrence, rule, extra_vars), FIRE_CHUNK):
            states = self.log.add_deliveries([r for _, r in chunk], now)
            if futures:  # the previous chunk finishes while this one was logged
                for f in futures:
                    f.result()
                futures = []
            futures += self.dispatch([d for d, _ in chunk], states, report)
        for f in futures:
            f.result()
        self.log.record_occurrence(
            occurrence.id, occurrence.rule_id, occurrence.at, "done", note, self.clock.now()
        )
        return report

    def dispatch(
        self,
        deliveries: Sequence[Delivery],
        states: dict[str, DeliveryState],
        report: FireReport | None = None,
    ) -> list[Future[Any]]:
        """Send what is due among `deliveries`, given their logged states; return the task futures."""
        report = report or FireReport("", False)
        now = self.clock.now()
        to_send: list[Delivery] = []
        to_recover: list[Delivery] = []
        skip_events: list[Event] = []
        for d in deliveries:
            state = states.get(d.key)
            status = state.status if state else Status.PLANNED
            with self._lock:
                busy = d.key in self._in_flight
            if busy:
                continue
            spec = self.campaign.channels[d.channel_id]
            quiet = spec.capabilities.quiet_hours
            if (
                status is Status.PLANNED
                and state is not None
                and state.error_class is ErrorClass.QUIET
                and quiet
                and quiet.contains(now.astimezone(self.campaign.tz).time())
            ):
                continue  # deferred to the end of quiet hours; already logged once
            if status is Status.PLANNED:
                if not spec.enabled:
                    skip_events.append(
                        Event(
                            d.key,
                            Status.SKIPPED,
                            now,
                            ErrorClass.DISABLED,
                            spec.disabled_reason or "disabled",
                        )
                    )
                    report.add(d.channel_id, Status.SKIPPED)
                    continue
                to_send.append(_logged_text(d, state, self.log))
            elif status in (Status.SENDING, Status.INTERRUPTED, Status.UNKNOWN) and spec.enabled:
                to_recover.append(_logged_text(d, state, self.log))
            else:
                report.add(d.channel_id, status)
        if skip_events:
            self.log.append(skip_events)
        if to_recover:
            to_send += self.recover(to_recover, report)
        return self._submit(to_send, report)

    def _submit(self, deliveries: Sequence[Delivery], report: FireReport) -> list[Future[Any]]:
        groups: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for d in deliveries:
            channel = self.channel(d.channel_id)
            groups[(d.channel_id, channel.endpoint(d.recipient))].append(d)
        futures = []
        for (channel_id, endpoint), items in groups.items():
            size = max(1, self.campaign.channels[channel_id].capabilities.batch_size)
            for i in range(0, len(items), size):
                task = SendTask(
                    items[i].occurrence_id, channel_id, endpoint, tuple(items[i : i + size])
                )
                with self._lock:
                    self._in_flight.update(d.key for d in task.deliveries)
                futures.append(
                    self.executor.submit(functools.partial(self._run_task, task, report))
                )
        return futures

    def _run_task(self, task: SendTask, report: FireReport) -> None:
        try:
            self.execute(task, report)
        except Exception as exc:  # never let one task take the engine down
            log.exception("send task failed")
            report.errors.append(f"{task.channel_id}: {exc!r}")
        finally:
            with self._lock:
                self._in_flight.difference_update(d.key for d in task.deliveries)

    # -- executing one task

    def execute(self, task: SendTask, report: FireReport | None = None) -> None:
        """Send one task with retries; every attempt and outcome goes to the log first."""
        report = report or FireReport(task.occurrence_id, False)
        spec = self.campaign.channels[task.channel_id]
        caps = spec.capabilities
        limiter = self.limiters.endpoint(task.channel_id, task.endpoint, caps.rate_limit)
        pending = list(task.deliveries)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_wait,
            retry=retry_if_exception_type(_RetryBatch),
            sleep=self.clock.sleep,
        )
        with self.limiters.slot(
            task.channel_id, caps.concurrency, task.endpoint, caps.endpoint_concurrency
        ):
            try:
                for attempt in retrying:
                    with attempt:
                        if self.stopping.is_set():
                            return  # still planned: picked up on the next start
                        pending = self._attempt(
                            spec, limiter, pending, attempt.retry_state.attempt_number, report
                        )
            except RetryError:
                pass  # the last outcomes (failed, transient) are already in the log

    def _attempt(
        self,
        spec: ChannelSpec,
        limiter: Any,
        pending: list[Delivery],
        number: int,
        report: FireReport,
    ) -> list[Delivery]:
        quiet = spec.capabilities.quiet_hours
        local_now = self.clock.now().astimezone(self.campaign.tz)
        if quiet is not None and quiet.contains(local_now.time()):
            self.log.append(
                [
                    Event(
                        d.key,
                        Status.PLANNED,
                        self.clock.now(),
                        ErrorClass.QUIET,
                        f"免打扰时段顺延 deferred: quiet hours {quiet}",
                    )
                    for d in pending
                ]
            )
            report.add(spec.id, Status.PLANNED, len(pending))
            return []
        limiter.wait()
        now = self.clock.now()
        # durable before the request leaves: a crash after this point is reconciled, not resent
        self.log.append([Event(d.key, Status.SENDING, now, attempt=number) for d in pending])
        results = self._send(spec, pending)
        # the outcome need not be waited for: if it is lost, `sending` above leads to reconciling
        self.log.append(
            [
                Event(
                    r.key,
                    r.status,
                    self.clock.now(),
                    r.error_class,
                    r.reason,
                    r.provider_id,
                    number,
                )
                for r in results
            ],
            wait=False,
        )
        retry, retry_after = [], None
        by_key = {d.key: d for d in pending}
        unknown = []
        for r in results:
            report.add(spec.id, r.status)
            if self.on_result:
                self.on_result(by_key[r.key], r)
            if r.status is Status.FAILED and r.error_class in (
                ErrorClass.TRANSIENT,
                ErrorClass.THROTTLED,
            ):
                retry.append(by_key[r.key])
                if r.retry_after:
                    retry_after = max(retry_after or 0.0, r.retry_after)
            elif r.status is Status.UNKNOWN:
                unknown.append(by_key[r.key])
        if retry_after:
            limiter.block(retry_after)
        if unknown:
            retry += self.recover(unknown, report, attempt=number)
        if retry:
            raise _RetryBatch(retry, retry_after)
        return []

    def _send(self, spec: ChannelSpec, batch: list[Delivery]) -> list[Result]:
        """Call the plugin; map whatever it raises to one result per delivery."""
        channel = self.channel(spec.id)
        try:
            results = list(channel.send(batch))
        except RetryableError as exc:
            cls = ErrorClass.THROTTLED if exc.error_class == "throttled" else ErrorClass.TRANSIENT
            return [
                Result(d.key, Status.FAILED, cls, exc.reason, retry_after=exc.retry_after)
                for d in batch
            ]
        except OutcomeUnknownError as exc:
            return [Result(d.key, Status.UNKNOWN, ErrorClass.UNKNOWN, exc.reason) for d in batch]
        except PermanentError as exc:
            cls = (
                ErrorClass(exc.error_class)
                if exc.error_class in ErrorClass._value2member_map_
                else ErrorClass.CONFIG
            )
            return [Result(d.key, Status.FAILED, cls, exc.reason) for d in batch]
        except ChannelError as exc:
            return [Result(d.key, Status.UNKNOWN, ErrorClass.UNKNOWN, exc.reason) for d in batch]
        except (
            Exception
        ) as exc:  # a plugin bug after it may have sent: unknown, never resent blindly
            log.exception("channel %s raised", spec.id)
            return [
                Result(
                    d.key,
                    Status.UNKNOWN,
                    ErrorClass.UNKNOWN,
                    f"插件异常 plugin raised {type(exc).__name__}: {exc}",
                )
                for d in batch
            ]
        by_key = {r.key: r for r in results if isinstance(r, Result)}
        return [
            by_key.get(d.key)
            or Result(
                d.key,
                Status.UNKNOWN,
                ErrorClass.UNKNOWN,
                "插件未返回结果 plugin returned no result for this delivery",
            )
            for d in batch
        ]

    # -- unknown outcomes

    def recover(
        self, deliveries: Sequence[Delivery], report: FireReport, *, attempt: int = 0
    ) -> list[Delivery]:
        """Reconcile deliveries whose outcome is unknown; return those safe to send again.

        An attempt cut off by a crash is left alone until its outcome has settled (the
        channel's `settle_seconds` after it started): a request already on its way may still
        reach the provider, and asking too early would call it lost and send it twice.
        """
        if not deliveries:
            return []
        now = self.clock.now()
        states = self.log.latest([d.key for d in deliveries])
        settled = []
        for d in deliveries:
            state = states.get(d.key)
            settle = dt.timedelta(
                seconds=self.campaign.channels[d.channel_id].capabilities.settle_seconds
            )
            if (
                attempt == 0
                and state is not None
                and state.status is Status.SENDING
                and now - state.status_at < settle
            ):
                report.add(d.channel_id, Status.SENDING)  # the next sweep looks again
                continue
            settled.append(d)
        deliveries = settled
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            by_channel[d.channel_id].append(d)
        interrupted = [
            Event(
                d.key,
                Status.INTERRUPTED,
                now,
                ErrorClass.UNKNOWN,
                "进程中断 the process stopped before the answer",
            )
            for d in deliveries
            if states.get(d.key) and states[d.key].status is Status.SENDING and attempt == 0
        ]
        if interrupted:
            self.log.append(interrupted)
        resend: list[Delivery] = []
        events: list[Event] = []
        for channel_id, items in by_channel.items():
            spec = self.campaign.channels[channel_id]
            try:
                answers = {r.key: r for r in self.channel(channel_id).reconcile(items)}
            except Exception as exc:
                log.warning("reconcile on %s failed: %r", channel_id, exc)
                answers = {}
            for d in items:
                r = answers.get(d.key)
                if r is not None and r.status in (Status.ACCEPTED, Status.DELIVERED):
                    events.append(
                        Event(
                            d.key,
                            r.status,
                            now,
                            None,
                            r.reason or "对账确认 confirmed by reconciling",
                            r.provider_id,
                            attempt,
                        )
                    )
                    report.add(channel_id, r.status)
                elif (
                    r is not None
                    and r.status is Status.FAILED
                    and r.error_class is ErrorClass.TRANSIENT
                ):
                    resend.append(d)  # the provider never got it: safe to send
                elif spec.capabilities.resend_on_unknown > self._unknown_resends(d.key):
                    resend.append(d)
                else:
                    state = states.get(d.key)
                    if state is None or state.status is not Status.UNKNOWN or attempt:
                        events.append(
                            Event(
                                d.key,
                                Status.UNKNOWN,
                                now,
                                ErrorClass.UNKNOWN,
                                "结果未知，待对账，不重发 outcome unknown: reconciled later, never re-sent blindly",
                                None,
                                attempt,
                            )
                        )
                    report.add(channel_id, Status.UNKNOWN)
        if events:
            self.log.append(events)
        return resend

    def settle(self, deliveries: Sequence[Delivery]) -> int:
        """Record the final outcomes a late-outcome channel reports for accepted deliveries."""
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            by_channel[d.channel_id].append(d)
        events = []
        for channel_id, items in by_channel.items():
            try:
                results = self.channel(channel_id).reconcile(items)
            except Exception as exc:
                log.warning("reconcile on %s failed: %r", channel_id, exc)
                continue
            now = self.clock.now()
            events += [
                Event(r.key, r.status, now, r.error_class, r.reason, r.provider_id)
                for r in results
                if r.status in (Status.DELIVERED, Status.FAILED)
            ]
        if events:
            self.log.append(events)
        return len(events)

    def _unknown_resends(self, key: str) -> int:
        return sum(1 for e in self.log.events(key) if e.status is Status.SENDING) - 1


def _title(kind: MessageKind, text: str) -> str:
    if kind is MessageKind.BOT and text.startswith("#"):
        return text.splitlines()[0].lstrip("#").strip()
    return ""


def _logged_text(d: Delivery, state: DeliveryState | None, store: DeliveryLog) -> Delivery:
    """Send what the log says was planned, even if templates changed since."""
    if state is None or state.text_sha256 == d.message.text_sha256:
        return d
    text = store.text(state.text_sha256)
    if text is None:
        return d
    message = dataclasses.replace(
        d.message, text=text, template=state.template, template_sha=state.template_sha
    )
    return dataclasses.replace(d, message=message)
