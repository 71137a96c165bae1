"""Dispatch: log an occurrence's deliveries, claim them, send them, log every outcome.

Never twice: every delivery (occurrence, channel, target, recipient) has a keyed
idempotency key, is written to the log before anything is sent, and is sent only by
the process holding its lease in the log; each attempt is written as `sending` (the
lease checked in the same transaction) before the request leaves. The log's state
machine refuses a second `sending` for a delivery already sending or answered. When
sends are fast, a run of tasks to one endpoint has its attempts written in one
transaction and is then sent call by call (`_send_calls`); what a run did not send
(throttled, stopping, quiet hours) is logged deferred and tried again. A batch that
half fails is retried only for the deliveries whose own result was a
retryable failure; an unknown outcome is never re-sent blindly but reconciled after
the channel's settle time (`recovery.py`).

Never late: `fire()` logs and claims the deliveries and hands send tasks to the
executor, and returns at once; each channel sends in its own lane, waiting on its
endpoints' rate limits, and checks quiet hours at the moment of sending (what cannot
leave before they start waits for the morning, logged deferred).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

from broadcaster.channel import Capabilities, Channel, Delivery, LinkSigner, Result
from broadcaster.engine.artefacts import FileArtefactStore
from broadcaster.engine.channels import ChannelProfile
from broadcaster.engine.clock import Clock
from broadcaster.engine.executor import (
    Executor,
    Lane,
    SendTask,
    TaskReport,
    ThreadExecutor,
    gather,
)
from broadcaster.engine.http import channel_context
from broadcaster.engine.prepare import Prepared, Preparer, Resolver, with_first_part
from broadcaster.engine.ratelimit import ConcurrencySlots, LocalRateLimiter, RateLimiter
from broadcaster.errors import ChannelError, OutcomeUnknownError, PermanentError, RetryableError
from broadcaster.log import DeliveryLog, Event
from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.plan import Occurrence
from broadcaster.recipients.store import RecipientStore
from broadcaster.vocab import Addressing, ErrorClass, QuietHours, Status

__all__ = ["DEFAULT_LEASE", "Dispatcher", "FireHandle"]

log = logging.getLogger("broadcaster.dispatch")
T = TypeVar("T")

DEFAULT_LEASE = 60.0  # seconds a claim lasts unless renewed; a dead process's work waits this long
FIRE_CHUNK = 5_000  # deliveries logged and handed to workers at a time
TASK_ATTEMPTS = 4  # tries within one task before a retryable failure waits for the sweep
MAX_ATTEMPTS = 12  # tries in all before a retryable failure is given up as failed
RETRYABLE = (ErrorClass.TRANSIENT, ErrorClass.THROTTLED)
RUN_SECONDS = 0.05  # a run of sends (one `sending` commit, sends in turn) lasts about this long


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def new_owner() -> str:
    """A name for this process's claims: host, pid and a random part (never reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class FireHandle:
    """One occurrence fired: its deliveries logged, its tasks running or queued."""

    occurrence: Occurrence
    first_time: bool
    futures: list[Future[TaskReport]] = field(default_factory=list)
    logged: TaskReport = field(default_factory=TaskReport)  # settled without sending
    keys: list[str] = field(default_factory=list)
    flush: Callable[[], None] = lambda: None  # commits outcomes queued without waiting

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def wait(self) -> TaskReport:
        """Block until every task of this occurrence finished; what they came to."""
        report = gather(self.futures)
        self.flush()
        for status, n in self.logged.counts.items():
            report.add(status, n)
        report.errors += self.logged.errors
        return report


class _Retry(Exception):
    """Some deliveries of a batch failed retryably: only those are tried again."""

    def __init__(self, pending: list[Delivery], retry_after: float | None):
        super().__init__(f"{len(pending)} to retry")
        self.pending = pending
        self.retry_after = retry_after


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: exponential (1 s, 2 s, 4 s … 60 s), at least Retry-After."""
    return max(min(60.0, 2.0 ** max(0, attempt - 1)), retry_after or 0.0)


def _wait(retry_state: RetryCallState) -> float:
    """Exponential backoff with jitter, never shorter than the provider's Retry-After."""
    base = wait_exponential_jitter(initial=1, max=60)(retry_state)
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    return max(base, getattr(exc, "retry_after", None) or 0.0)


class Dispatcher:
    """Sends occurrences through a campaign's channels; records everything in the log."""

    def __init__(
        self,
        campaign: Campaign,
        profiles: Mapping[str, ChannelProfile],
        log_store: DeliveryLog,
        *,
        clock: Clock,
        hash_key: bytes,
        state_dir: Path,
        environ: Mapping[str, str] | None = None,
        executor: Executor | None = None,
        limiter: RateLimiter | None = None,
        lease: float = DEFAULT_LEASE,
        owner: str | None = None,
        on_result: Callable[[Delivery, Result], None] | None = None,
        heartbeat: bool = True,
        links: LinkSigner | None = None,
        content_gate: Callable[[str, str], tuple[ErrorClass, str] | None] | None = None,
    ):
        self.campaign = campaign
        self.links = links  # signs hand-off links (checked by `serve`)
        # (template, template_sha) -> None to send, or why it is held back (unapproved content)
        self.content_gate = content_gate
        self.profiles = dict(profiles)
        self.log = log_store
        self.clock = clock
        self.state_dir = state_dir
        self.lease = lease
        self.owner = owner or new_owner()
        self.limiter: RateLimiter = limiter or LocalRateLimiter(clock)
        self.slots = ConcurrencySlots()
        self.on_result = on_result
        self.artefacts = FileArtefactStore(state_dir / "artefacts")
        self.preparer = Preparer(
            campaign,
            self.profiles,
            log_store,
            hash_key=hash_key,
            environ=os.environ if environ is None else environ,
            artefacts=self.artefacts,
            channel=self.channel,
        )
        self.resolver = Resolver(campaign, self.preparer, log_store, self.artefacts.folder)
        lanes = {cid: p.capabilities.concurrency for cid, p in self.profiles.items()}
        self._own_executor = executor is None
        self.executor: Executor = executor or ThreadExecutor(
            self.execute, lanes, run_many=self.execute_run, run_cap=self.run_cap
        )
        self._channels: dict[str, Channel] = {}
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._ready: dict[str, Delivery] = {}  # prepared here, waiting for their task
        self._sending: set[str] = set()  # between `sending` and its outcome
        self._queued: set[str] = set()  # handed to the executor, not finished
        self._unreleased: set[str] = set()  # claims a failed task could not give back yet
        self._call_seconds: dict[str, float] = {}  # per channel: seconds a send() call takes
        self.stopping = threading.Event()
        self._closed = False
        for profile in self.profiles.values():
            log_store.redact(profile.secrets())
        log_store.redact(self.preparer.address_secrets())  # bot keys and signing secrets
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if heartbeat:
            self._heartbeat = threading.Thread(
                target=self._renew_loop, name="lease-heartbeat", daemon=True
            )
            self._heartbeat.start()

    # -- channels

    def channel(self, channel_id: str) -> Channel:
        """The open plugin instance of a channel (opened once, shared by its threads)."""
        with self._lock:
            found = self._channels.get(channel_id)
            if found is None:
                profile = self.profiles[channel_id]
                context = channel_context(
                    channel_id,
                    concurrency=profile.capabilities.concurrency,
                    clock=self.clock.now,
                    data_dir=self.state_dir / "channels" / channel_id,
                    base_dir=self.campaign.base_dir,
                    pace=self._pacer(profile),
                    links=self.links,
                )
                found = profile.open(context)
                self._channels[channel_id] = found
                self._sessions[channel_id] = context.http
            return found

    def _pacer(self, profile: ChannelProfile) -> Callable[[str], bool]:
        """`ChannelContext.pace` for one channel: each further request of a send (a split
        message's next part) waits for its own slot under the endpoint's limit."""
        limit = profile.capabilities.rate_limit

        def pace(endpoint: str) -> bool:
            if self.stopping.is_set():
                return False
            self.clock.sleep(self.limiter.reserve(endpoint, limit))
            return not self.stopping.is_set()

        return pace

    @property
    def owns_executor(self) -> bool:
        """False when the executor was handed in (worker processes): its owner shuts it down."""
        return self._own_executor

    def in_flight(self) -> list[str]:
        """Keys whose request is out and whose answer has not been logged yet."""
        with self._lock:
            return sorted(self._sending)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._queued or self._sending)

    # -- firing

    def fire(
        self,
        occurrence: Occurrence,
        *,
        rule: RuleSpec | None = None,
        extra_vars: dict[str, Any] | None = None,
        fired_note: str = "",
    ) -> FireHandle:
        """Log, claim and queue every delivery of one occurrence; return without waiting.

        On a restart (the occurrence fired before), deliveries already logged are picked up
        where they stopped: planned ones are sent if no other live process holds them,
        those cut off mid-attempt are left to the sweep, which reconciles them.
        `fired_note` is stored when it first fires (a one-off send's description).
        """
        now = self.clock.now()
        first = self.log.begin_occurrence(
            self.campaign.id, occurrence.id, occurrence.rule_id, occurrence.at, now, fired_note
        )
        handle = FireHandle(occurrence, first, flush=self.log.flush)
        for chunk in chunks(self.preparer.prepare(occurrence, rule, extra_vars), FIRE_CHUNK):
            handle.futures += self._log_and_queue(chunk, handle, now)
        return handle

    def _log_and_queue(
        self, chunk: list[Prepared], handle: FireHandle, now: dt.datetime
    ) -> list[Future[TaskReport]]:
        skip = {
            p.record.key: (
                ErrorClass.DISABLED,
                self.profiles[p.delivery.channel_id].disabled_reason or "disabled",
            )
            for p in chunk
            if not self.profiles[p.delivery.channel_id].enabled
        }
        skip.update((p.record.key, p.suppress) for p in chunk if p.suppress is not None)
        if self.content_gate is not None:
            verdicts: dict[tuple[str, str], tuple[ErrorClass, str] | None] = {}
            for p in chunk:
                version = (p.record.template, p.record.template_sha)
                if version not in verdicts:
                    verdicts[version] = self.content_gate(*version)
                held = verdicts[version]
                if held is not None and p.record.key not in skip:
                    skip[p.record.key] = held
        claim = self.log.add_deliveries(
            [p.record for p in chunk],
            now,
            owner=self.owner,
            lease_until=now + dt.timedelta(seconds=self.lease),
            skip=skip,
        )
        handle.keys += [p.record.key for p in chunk]
        with self._lock:
            self._unreleased.difference_update(claim.held)
        hops = [p.hop for p in chunk if p.hop is not None]
        if hops:  # before anything is sent: a hop's deadline is known from the start
            self.log.add_relay_hops(hops)
        failed = [
            Event(p.record.key, Status.FAILED, now, ErrorClass.CONTENT, p.problem)
            for p in chunk
            if p.problem and p.record.key in claim.held
        ]
        if failed:
            self.log.append(failed)
            handle.logged.add(Status.FAILED.value, len(failed))
        ready: list[Prepared] = []
        leave: list[str] = []
        for p in chunk:
            key = p.record.key
            state = claim.held.get(key)
            if state is None:
                other = claim.others.get(key)
                if other is not None:
                    handle.logged.add(other.status.value)
                continue
            if key in skip:
                handle.logged.add(Status.SKIPPED.value)
            elif p.problem:
                continue
            elif state.status in (Status.PLANNED, Status.DEFERRED) and (
                state.next_check is None or state.next_check <= now
            ):
                ready.append(p)
            else:
                leave.append(key)  # waiting for a time, or cut off: the sweep takes it
                handle.logged.add(state.status.value)
        if leave:
            self.log.release_leases(self.owner, leave)
        return self._queue([p.delivery for p in ready], {p.record.key: p for p in ready})

    def _queue(
        self, deliveries: Sequence[Delivery], prepared: Mapping[str, Prepared] | None = None
    ) -> list[Future[TaskReport]]:
        """Group deliveries into tasks (per channel, endpoint and, where the provider needs it,
        message; at most `batch_size` each) and hand them to the executor."""
        groups: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for d in deliveries:
            p = prepared.get(d.key) if prepared else None
            endpoint = p.record.endpoint if p else self._endpoint_hash(d)
            groups[(d.channel_id, endpoint)].append(d)
        tasks: list[SendTask] = []
        for (channel_id, endpoint), items in groups.items():
            for batch in _calls(self.profiles[channel_id].capabilities, items):
                keys = tuple(d.key for d in batch)
                tasks.append(
                    SendTask(self.campaign.id, batch[0].occurrence_id, channel_id, endpoint, keys)
                )
        hand_over = getattr(self.executor, "hand_over", None)
        if hand_over is not None:  # a job queue in the log's database: one transaction
            if not tasks:
                return []
            try:
                queued: list[Future[TaskReport]] = hand_over(tasks, self.log, self.clock.now())
            except RuntimeError:  # the executor is shut down: we are stopping
                return []
            return queued
        local = self.executor.local
        if local:
            with self._lock:
                self._ready.update((d.key, d) for d in deliveries)
                self._queued.update(d.key for d in deliveries)
        else:  # another process runs them, and claims their deliveries itself
            self.log.release_leases(self.owner, [d.key for d in deliveries])
        futures = []
        for i, task in enumerate(tasks):
            try:
                futures.append(self.executor.submit(task))
            except RuntimeError:  # the executor is shut down: we are stopping
                left = [k for t in tasks[i:] for k in t.keys]
                self._forget(left)
                if local:
                    self.log.release_leases(self.owner, left)
                break
        return futures

    def _endpoint_hash(self, d: Delivery) -> str:
        from broadcaster.engine.prepare import endpoint_hash

        return endpoint_hash(self.channel(d.channel_id).endpoint(d.recipient))

    def _forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for k in keys:
                self._ready.pop(k, None)
                self._queued.discard(k)

    # -- executing one task (any process)

    def execute(self, task: SendTask) -> TaskReport:
        """Send one task with retries; every attempt and outcome goes to the log first."""
        report = TaskReport()
        held: list[str] = list(task.keys)
        try:
            deliveries = self._resolve(task, report)
            held = [d.key for d in self._execute(task.channel_id, deliveries, report)]
        except Exception as exc:  # never let one task take the engine down
            if not self.stopping.is_set():
                log.exception("send task failed")
            report.errors.append(f"{task.channel_id}: {exc!r}")
        finally:
            self._forget(task.keys)
            if held and not self._closed:
                try:  # what this task still holds goes back, for the sweep or another process
                    self.log.release_leases(self.owner, held)
                except Exception:  # the log is unreachable: the heartbeat gives them back later,
                    log.debug("releasing leases after a task", exc_info=True)  # never renews them
                    with self._lock:
                        self._unreleased.update(held)
        return report

    def execute_run(self, tasks: Sequence[SendTask]) -> TaskReport:
        """Send a run of tasks to one endpoint as one: their attempts written in one
        transaction, then each task's send() call in turn (`_send_calls`)."""
        first = tasks[0]
        keys = tuple(k for t in tasks for k in t.keys)
        return self.execute(
            SendTask(first.campaign, first.occurrence_id, first.channel_id, first.endpoint, keys)
        )

    def run_cap(self, task: SendTask) -> int:
        """How many tasks one run may hold: as many as leave within `RUN_SECONDS`, judged
        from how long the channel's recent send() calls took and what the endpoint's
        rate limit lets through (a run never holds `sending` rows long). One until the
        channel's calls were timed; one for a gateway taking `RUN_SECONDS` a call."""
        seconds = self._call_seconds.get(task.channel_id)
        if seconds is None:
            return 1
        cap = int(RUN_SECONDS / max(seconds, 1e-6))
        limit = self.profiles[task.channel_id].capabilities.rate_limit
        if limit is not None:
            cap = min(cap, int(limit.count / limit.per_seconds * RUN_SECONDS))
        return max(1, min(Lane.MAX_RUN, cap))

    def _resolve(self, task: SendTask, report: TaskReport) -> list[Delivery]:
        with self._lock:
            found = [self._ready.pop(k) for k in task.keys if k in self._ready]
        if len(found) == len(task.keys):
            return found
        have = {d.key for d in found}
        missing = [k for k in task.keys if k not in have]
        return found + self._claim_and_resolve(missing, report)

    def _claim_and_resolve(self, keys: Sequence[str], report: TaskReport) -> list[Delivery]:
        """Claim logged deliveries (one write) and build them from the log and the config;
        those whose target or number left the config are logged skipped."""
        now = self.clock.now()
        claim = self.log.claim(
            keys,
            owner=self.owner,
            now=now,
            lease_until=now + dt.timedelta(seconds=self.lease),
            statuses=(Status.PLANNED, Status.DEFERRED, Status.UNKNOWN, Status.INTERRUPTED),
        )
        with self._lock:
            self._unreleased.difference_update(claim.held)
        found: list[Delivery] = []
        gone: list[Event] = []
        for state in claim.held.values():
            d = self.resolver.delivery(state)
            if d is None:
                gone.append(
                    Event(
                        state.key,
                        Status.SKIPPED if state.status is Status.PLANNED else Status.UNRESOLVED,
                        now,
                        ErrorClass.REMOVED,
                        "对象或号码已从配置中移除 the target or number left the config",
                    )
                )
                report.add(Status.SKIPPED.value)
                continue
            found.append(d)
        if gone:
            self.log.append(gone)
        return found

    def adopt(self, keys: Sequence[str]) -> TaskReport:
        """Claim, in one write, the deliveries of tasks queued by another process and hold
        them ready, so that their tasks send at once (a worker does this per job)."""
        report = TaskReport()
        ready = self._claim_and_resolve(keys, report)
        with self._lock:
            self._ready.update((d.key, d) for d in ready)
            self._queued.update(d.key for d in ready)
        return report

    def _execute(
        self, channel_id: str, deliveries: list[Delivery], report: TaskReport
    ) -> list[Delivery]:
        """Send with retries; return the deliveries still held (deferred, or not started)."""
        if not deliveries:
            return []
        profile = self.profiles[channel_id]
        caps = profile.capabilities
        channel = self.channel(channel_id)
        endpoint = channel.endpoint(deliveries[0].recipient)
        pending = deliveries
        with self.slots.slot(channel_id, caps.concurrency, endpoint, caps.endpoint_concurrency):
            try:  # the first try needs no retry machinery: most sends go through at once
                return self._attempt(profile, channel, endpoint, pending, report)
            except _Retry as retry:
                pending = retry.pending  # only these go again, never the batch
                first = retry
            retrying = Retrying(
                stop=stop_after_attempt(TASK_ATTEMPTS - 1),
                wait=_wait,
                retry=retry_if_exception_type(_Retry),
                sleep=self.clock.sleep,
                reraise=False,
            )
            self.clock.sleep(backoff(1, first.retry_after))
            try:
                for attempt in retrying:
                    with attempt:
                        try:
                            pending = self._attempt(profile, channel, endpoint, pending, report)
                        except _Retry as retry:
                            pending = retry.pending
                            raise
            except RetryError:
                pass  # still deferred, with a next check: the sweep tries again later
        return pending

    def _remember_optouts(self, channel_id: str, numbers: list[str], now: dt.datetime) -> None:
        """Numbers the provider reports unsubscribed (a blacklist code) go on the office's
        opt-out list: the next load suppresses them on every channel."""
        if not numbers:
            return
        try:
            RecipientStore.in_folder(self.state_dir).add_optouts(
                numbers, reason="provider reported opt-out", source=f"channel {channel_id}", at=now
            )
        except Exception:  # the log has the failure; the list is only a later safeguard
            log.exception("cannot record opt-outs reported on %s", channel_id)

    def _attempt(
        self,
        profile: ChannelProfile,
        channel: Channel,
        endpoint: str,
        pending: list[Delivery],
        report: TaskReport,
    ) -> list[Delivery]:
        caps = profile.capabilities
        if self.stopping.is_set():
            return pending  # still planned or deferred: their leases go back for the next start
        self.clock.sleep(self.limiter.reserve(endpoint, caps.rate_limit))
        if self.stopping.is_set():
            return pending
        now = self.clock.now()
        quiet = caps.quiet_hours
        local = self._in_quiet_hours(quiet, now)
        if quiet is not None and local is not None:
            resume = quiet.next_end(local)
            self.log.append(
                [
                    Event(
                        d.key,
                        Status.DEFERRED,
                        now,
                        ErrorClass.QUIET,
                        f"免打扰时段顺延至 {resume:%m-%d %H:%M} deferred: quiet hours {quiet}",
                        next_check=resume,
                    )
                    for d in pending
                ]
            )
            report.add(Status.DEFERRED.value, len(pending))
            return []
        settle = now + dt.timedelta(seconds=caps.settle_seconds)
        starting = [
            Event(
                d.key,
                Status.SENDING,
                now,
                step=d.first_part + 1 if d.message.parts else 0,
                next_check=settle,
            )
            for d in pending
        ]
        with self._lock:
            self._sending.update(d.key for d in pending)
        try:
            # durable before the request leaves: a crash after this point is reconciled, not resent
            started = self.log.start_attempt(
                starting, owner=self.owner, lease_until=now + dt.timedelta(seconds=self.lease)
            )
        except Exception:
            with self._lock:
                self._sending.difference_update(d.key for d in pending)
            raise
        with self._lock:
            self._sending.difference_update(d.key for d in pending if d.key not in started)
        batch = [d for d in pending if d.key in started]
        if not batch:
            return []
        try:
            results = self._send_calls(profile, channel, endpoint, batch)
        finally:
            answered = self.clock.now()
        events, retry, retry_after = self._outcomes(profile, batch, results, now, answered, started)
        sent = [d.key for d in batch]
        # `sending` above is durable, so losing these is safe, provided the claims go back
        # (the heartbeat would renew them for ever): the sweep then reconciles them
        self.log.append(events, wait=False, on_error=lambda: self._give_back(sent))
        with self._lock:
            self._sending.difference_update(d.key for d in batch)
        by_key = {d.key: d for d in batch}
        for r, e in zip(results, events, strict=True):
            report.add(e.status.value)
            if self.on_result:
                self.on_result(by_key[r.key], r)
        if profile.addressing is Addressing.CONTACTS:
            self._remember_optouts(
                profile.id,
                [
                    by_key[r.key].recipient.address
                    for r in results
                    if r.error_class is ErrorClass.OPTOUT
                ],
                answered,
            )
        throttled = _throttled(results)
        if throttled:  # the endpoint waits for everyone (DingTalk blocks a robot for 10 min)
            longest = max(throttled, key=lambda r: r.retry_after or 0.0)
            self.limiter.block(endpoint, longest.retry_after or 0.0, longest.reason)
        if retry:
            if self.stopping.is_set():
                return retry
            raise _Retry(retry, retry_after)
        return []

    def _outcomes(
        self,
        profile: ChannelProfile,
        batch: list[Delivery],
        results: list[Result],
        sent_at: dt.datetime,
        now: dt.datetime,
        attempts: Mapping[str, int],
    ) -> tuple[list[Event], list[Delivery], float | None]:
        """The event each result comes to, and the deliveries to try again in this task."""
        caps = profile.capabilities
        by_key = {d.key: d for d in batch}
        events: list[Event] = []
        retry: list[Delivery] = []
        retry_after: float | None = None
        for r in results:
            d = by_key[r.key]
            parts = len(d.message.parts)
            step = r.parts_done or 0
            if r.status in (Status.ACCEPTED, Status.DELIVERED):
                step = parts if parts else 0
                later = caps.late_outcomes and r.status is Status.ACCEPTED
                check = now + dt.timedelta(seconds=caps.outcome_poll) if later else None
                events.append(
                    Event(
                        r.key,
                        r.status,
                        now,
                        None,
                        r.reason,
                        r.provider_id,
                        step=step,
                        detail=r.raw,
                        next_check=check,
                    )
                )
            elif r.status is Status.FAILED and r.error_class in RETRYABLE:
                tried = attempts.get(r.key, 1)
                if tried >= MAX_ATTEMPTS:
                    events.append(
                        Event(
                            r.key,
                            Status.FAILED,
                            now,
                            r.error_class,
                            f"{r.reason}; 已重试 {tried} 次放弃 gave up after {tried} attempts",
                            r.provider_id,
                            step=step,
                            detail=r.raw,
                        )
                    )
                    continue
                wait = backoff(tried, r.retry_after)
                if r.per_recipient:  # a per-number cap: this one waits for the sweep, not a retry
                    events.append(
                        Event(
                            r.key,
                            Status.DEFERRED,
                            now,
                            r.error_class,
                            r.reason,
                            r.provider_id,
                            step=step,
                            detail=r.raw,
                            next_check=now + dt.timedelta(seconds=wait),
                        )
                    )
                    continue
                events.append(
                    Event(
                        r.key,
                        Status.DEFERRED,
                        now,
                        r.error_class,
                        r.reason,
                        r.provider_id,
                        step=step,
                        detail=r.raw,
                        next_check=now + dt.timedelta(seconds=wait),
                        keep_lease=True,
                    )
                )
                retry.append(with_first_part(d, r.parts_done))
                if r.retry_after:
                    retry_after = max(retry_after or 0.0, r.retry_after)
            elif r.status is Status.FAILED:
                events.append(
                    Event(
                        r.key,
                        Status.FAILED,
                        now,
                        r.error_class or ErrorClass.CONTENT,
                        r.reason,
                        r.provider_id,
                        step=step,
                        detail=r.raw,
                    )
                )
            else:
                reason = r.reason
                if r.status is not Status.UNKNOWN:
                    reason = f"插件返回了意外的状态 the plugin answered {r.status.value}: {reason}"
                settle = sent_at + dt.timedelta(seconds=caps.settle_seconds)
                events.append(
                    Event(
                        r.key,
                        Status.UNKNOWN,
                        now,
                        ErrorClass.UNKNOWN,
                        reason or "结果未知 outcome unknown: reconciled, never re-sent blindly",
                        r.provider_id,
                        step=step,
                        detail=r.raw,
                        next_check=settle,
                    )
                )
        return events, retry, retry_after

    def _send_calls(
        self, profile: ChannelProfile, channel: Channel, endpoint: str, batch: list[Delivery]
    ) -> list[Result]:
        """One send() call per `batch_size` deliveries (one message per call where the
        provider needs it). The first call's rate slot and quiet hours were checked by the
        caller; before each further call (a run) they are checked again, and stopping and
        a throttled answer end the run: what was not sent comes back as a retryable
        failure, so it is tried again (or left deferred), never counted as sent."""
        caps = profile.capabilities
        calls = _calls(caps, batch)
        results = self._timed_send(channel, calls[0])
        for i, call in enumerate(calls[1:], 1):
            why = "限流 the endpoint throttled" if _throttled(results) else None
            if why is None and not self.stopping.is_set():
                self.clock.sleep(self.limiter.reserve(endpoint, caps.rate_limit))
            if why is None and self.stopping.is_set():
                why = "正在停止 stopping"
            quiet = caps.quiet_hours
            if why is None and self._in_quiet_hours(quiet, self.clock.now()) is not None:
                why = f"免打扰时段 quiet hours {quiet}"
            if why is not None:
                wait = max((r.retry_after or 0.0 for r in results), default=0.0) or None
                results += [
                    Result(
                        d.key,
                        Status.FAILED,
                        ErrorClass.TRANSIENT,
                        f"未发出 not sent: {why}",
                        retry_after=wait,
                    )
                    for c in calls[i:]
                    for d in c
                ]
                break
            results += self._timed_send(channel, call)
        return results

    def _in_quiet_hours(self, quiet: QuietHours | None, now: dt.datetime) -> dt.datetime | None:
        """`now` in the campaign's time zone when it falls in the quiet hours, else None."""
        if quiet is None:
            return None
        local = now.astimezone(self.campaign.tz)
        return local if quiet.contains(local.time()) else None

    def _timed_send(self, channel: Channel, batch: list[Delivery]) -> list[Result]:
        """`_send`, timed on the wall clock: the mean seconds a call takes sizes runs."""
        began = time.perf_counter()
        try:
            return self._send(channel, batch)
        finally:
            seconds = time.perf_counter() - began
            cid = batch[0].channel_id
            before = self._call_seconds.get(cid)
            self._call_seconds[cid] = seconds if before is None else 0.8 * before + 0.2 * seconds

    def _send(self, channel: Channel, batch: list[Delivery]) -> list[Result]:
        """Call the plugin; map whatever it raises to one result per delivery."""
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
        except Exception as exc:  # a plugin bug after it may have sent: unknown, never resent
            log.exception("channel %s raised", batch[0].channel_id)
            reason = f"插件异常 plugin raised {type(exc).__name__}: {exc}"
            return [Result(d.key, Status.UNKNOWN, ErrorClass.UNKNOWN, reason) for d in batch]
        by_key = {r.key: r for r in results if isinstance(r, Result)}
        missing = "插件未返回结果 plugin returned no result for this delivery"
        return [
            by_key.get(d.key) or Result(d.key, Status.UNKNOWN, ErrorClass.UNKNOWN, missing)
            for d in batch
        ]

    # -- leases and stopping

    def _give_back(self, keys: Sequence[str]) -> None:
        """Claims whose outcome could not be written: released by the heartbeat, never renewed."""
        with self._lock:
            self._unreleased.update(keys)

    def _renew_loop(self) -> None:
        """Keep this process's claims alive while it lives (real time: a lease is real)."""
        while not self._heartbeat_stop.wait(max(0.5, self.lease / 3)):
            try:
                with self._lock:  # claims a failed task could not give back (the log was down)
                    stale = list(self._unreleased - self._queued - self._sending)
                if stale:
                    self.log.release_leases(self.owner, stale)
                    with self._lock:
                        self._unreleased.difference_update(stale)
                until = self.clock.now() + dt.timedelta(seconds=self.lease)
                self.log.renew_leases(self.owner, until)
            except Exception:
                if self._heartbeat_stop.is_set():
                    return
                log.warning("renewing leases failed", exc_info=True)

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop within `timeout` seconds: nothing new starts, queued sends stay planned and
        go back to the log for the next process; requests really in flight when time is up
        are logged interrupted. Returns those keys."""
        self.stopping.set()
        self.clock.interrupt()
        if self._own_executor:
            waiter = threading.Thread(target=self.executor.shutdown, kwargs={"wait": True})
            self.executor.shutdown(wait=False)
            waiter.daemon = True
            waiter.start()
            waiter.join(timeout)
        with self._lock:
            left = sorted(self._sending)
        if left:
            now = self.clock.now()
            settle = max(p.capabilities.settle_seconds for p in self.profiles.values())
            self.log.append(
                [
                    Event(
                        k,
                        Status.INTERRUPTED,
                        now,
                        ErrorClass.UNKNOWN,
                        "停止时仍在等待应答 stopped while waiting for the answer",
                        next_check=now + dt.timedelta(seconds=settle),
                    )
                    for k in left
                ]
            )
        return left

    def close(self) -> None:
        """Release this process's claims, flush the log and close every channel."""
        if self._closed:
            return
        self._heartbeat_stop.set()
        if self._own_executor and not self.stopping.is_set():
            self.executor.shutdown(wait=True)
        try:
            if not self.log.closed and self.log.alive:
                self.log.release_leases(self.owner)
                self.log.flush()  # outcomes queued without waiting are committed (or raised)
        finally:
            self._closed = True
            for cid, channel in list(self._channels.items()):
                try:
                    channel.close()
                except Exception:  # a plugin failing to close must not hide other work
                    log.exception("channel %s failed to close", cid)
                self._sessions[cid].close()
            self._channels.clear()


def _calls(caps: Capabilities, deliveries: Sequence[Delivery]) -> list[list[Delivery]]:
    """Deliveries to one endpoint in send() calls: `batch_size` at most, one message per
    call where the provider needs it (messages in the order they first come)."""
    by_message: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_message[d.message.text_sha256 if caps.batch_by_message else ""].append(d)
    size = max(1, caps.batch_size)
    return [call for items in by_message.values() for call in chunks(items, size)]


def _throttled(results: Sequence[Result]) -> list[Result]:
    """Answers that make the whole endpoint wait (a 429 with Retry-After, a bot's block)."""
    return [
        r
        for r in results
        if r.retry_after
        and (r.block or (r.error_class is ErrorClass.THROTTLED and not r.per_recipient))
    ]
