"""`broadcaster run`: fire exactly the occurrences `plan` lists, forever, and survive restarts.

The campaign logic lives here and in `plan`; APScheduler only wakes us at the next
occurrence's time (a one-shot date job, rebuilt from the plan after each wake) and
every minute for the sweep. On start, occurrences since the last one the log knows
are caught up within the grace period, or logged as missed beyond it; deliveries
left planned, sending or unknown are resumed or reconciled. A job that raises is
logged and the scheduler goes on; a config edit is applied only if it validates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from broadcaster.channel import Delivery, Result, Status
from broadcaster.engine.clock import Clock
from broadcaster.engine.dispatch import Dispatcher, FireReport
from broadcaster.engine.ratelimit import Limiters
from broadcaster.errors import ConfigError
from broadcaster.log import DeliveryLog
from broadcaster.model.adhoc import ADHOC_PREFIX, AdHoc
from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.config import load_campaign
from broadcaster.model.plan import Occurrence, Planner

__all__ = ["FIRE_ATTEMPTS", "Activity", "Runner"]

FIRE_ATTEMPTS = 3  # ticks an occurrence that raises is tried on before it is logged as failed
LATE_OUTCOME_WINDOW = dt.timedelta(days=3)  # how long receipts and confirmations are waited for

log = logging.getLogger("broadcaster.run")


@dataclass
class Activity:
    """What the live view shows: recent events, kept in memory."""

    lines: deque[tuple[dt.datetime, str, str]] = field(default_factory=lambda: deque(maxlen=200))
    listeners: list[Callable[[dt.datetime, str, str], None]] = field(default_factory=list)

    def add(self, when: dt.datetime, kind: str, text: str) -> None:
        self.lines.append((when, kind, text))
        for listener in self.listeners:
            listener(when, kind, text)


class Runner:
    """Fires occurrences on time, catches up after downtime, resumes unfinished deliveries."""

    def __init__(
        self,
        campaign: Campaign,
        log_store: DeliveryLog,
        *,
        clock: Clock,
        hash_key: bytes,
        state_dir: Path,
        grace: dt.timedelta = dt.timedelta(hours=2),
        environ: Mapping[str, str] | None = None,
        activity: Activity | None = None,
    ):
        self.campaign = campaign
        self.log = log_store
        self.clock = clock
        self.hash_key = hash_key
        self.state_dir = state_dir
        self.grace = grace
        self.environ = environ
        self.activity = activity or Activity()
        self.limiters = Limiters(clock)
        self.dispatcher = self._dispatcher(campaign)
        self.planner = Planner(campaign)
        self.checked_until: dt.datetime | None = None
        self._failing: dict[str, tuple[Occurrence, int]] = {}  # occurrence id -> (it, attempts)
        self._lock = threading.RLock()
        self._mtimes = self._watched_mtimes(campaign)
        self.scheduler: BackgroundScheduler | None = None
        self.stopped = threading.Event()

    def _dispatcher(self, campaign: Campaign) -> Dispatcher:
        return Dispatcher(
            campaign,
            self.log,
            clock=self.clock,
            hash_key=self.hash_key,
            limiters=self.limiters,
            state_dir=self.state_dir,
            on_result=self._on_result,
        )

    def _on_result(self, delivery: Delivery, result: Result) -> None:
        text = f"{delivery.channel_id} → {delivery.recipient.display}: {result.status.value}"
        if result.reason:
            text += f" ({result.reason[:60]})"
        self.activity.add(self.clock.now(), "delivery", text)

    # -- the core: testable without APScheduler, in virtual time

    def start_point(self, now: dt.datetime) -> dt.datetime:
        """Where catching up starts: after the last occurrence the log knows, else now."""
        last = self.log.last_occurrence_at()
        return last if last is not None else now

    def due(self, now: dt.datetime) -> tuple[list[Occurrence], list[Occurrence]]:
        """(to fire, missed) among occurrences since `checked_until` up to `now`."""
        since = self.checked_until or now
        found = list(self.planner.occurrences(since, now + dt.timedelta(microseconds=1)))
        if not found:
            return [], []
        states = self.log.occurrence_states(
            found[0].at, found[-1].at + dt.timedelta(microseconds=1)
        )
        fire, missed = [], []
        for occurrence in found:
            state = states.get(occurrence.id)
            if state is not None and state.status in ("done", "missed", "skipped"):
                continue
            if state is not None and state.status == "fired":
                fire.append(occurrence)  # interrupted mid-way: resume it
            elif now - occurrence.at <= self.grace:
                fire.append(occurrence)
            else:
                missed.append(occurrence)
        return fire, missed

    def tick(self, now: dt.datetime | None = None) -> list[FireReport]:
        """Fire what is due, log what was missed; never raises."""
        now = now or self.clock.now()
        reports: list[FireReport] = []
        with self._lock:
            try:
                fire, missed = self.due(now)
                for occurrence in missed:
                    late = now - occurrence.at
                    reason = f"错过 missed: the scheduler was not running; {late} late is beyond the grace of {self.grace}"
                    self.log.record_occurrence(
                        occurrence.id, occurrence.rule_id, occurrence.at, "missed", reason, now
                    )
                    self.activity.add(now, "missed", f"{occurrence.id} {reason}")
                due_ids = {o.id for o in fire}
                fire += [o for o, _ in self._failing.values() if o.id not in due_ids]
                for occurrence in fire:
                    if self.stopped.is_set():
                        break
                    report = self._fire_one(occurrence, now)
                    if report is not None:
                        reports.append(report)
                if not self.stopped.is_set():
                    self.checked_until = now
            except Exception as exc:  # a failing tick is logged; the next wake tries again
                log.exception("tick failed")
                self.activity.add(now, "error", f"调度出错 tick failed: {exc!r}")
        return reports

    def _fire_one(self, occurrence: Occurrence, now: dt.datetime) -> FireReport | None:
        """Fire one occurrence; one that raises is retried on the next ticks, then logged as
        failed, and never holds up the others."""
        late = now - occurrence.at
        note = f"补发 caught up {late} late" if late > dt.timedelta(minutes=1) else ""
        try:
            report = self.dispatcher.fire(occurrence, note=note)
        except Exception as exc:
            log.exception("firing %s failed", occurrence.id)
            attempts = self._failing.get(occurrence.id, (occurrence, 0))[1] + 1
            self.activity.add(
                now,
                "error",
                f"{occurrence.id} 触发失败 failed to fire ({attempts}/{FIRE_ATTEMPTS}): {exc!r}",
            )
            if attempts < FIRE_ATTEMPTS:
                self._failing[occurrence.id] = (occurrence, attempts)
            else:
                self._failing.pop(occurrence.id, None)
                reason = f"触发失败 failed to fire {attempts} times: {exc}"
                self.log.record_occurrence(
                    occurrence.id, occurrence.rule_id, occurrence.at, "failed", reason, now
                )
            return None
        self._failing.pop(occurrence.id, None)
        self.activity.add(now, "fired", _summary(report) + (f" · {note}" if note else ""))
        return report

    def next_wake(self, after: dt.datetime) -> dt.datetime | None:
        nxt = next(
            self.planner.occurrences(
                after + dt.timedelta(microseconds=1), after + dt.timedelta(days=400)
            ),
            None,
        )
        return nxt.at if nxt else None

    def upcoming(self, after: dt.datetime, count: int = 8) -> list[Occurrence]:
        out: list[Occurrence] = []
        for occurrence in self.planner.occurrences(after, after + dt.timedelta(days=60)):
            out.append(occurrence)
            if len(out) >= count:
                break
        return out

    def sweep(self) -> int:
        """Resume deliveries left planned, sending or unknown by an earlier run, and collect
        outcomes that arrive later (receipts, confirmations); return how many were resumed."""
        with self._lock:
            try:
                unfinished = [s for s in self.log.unfinished() if s.campaign == self.campaign.id]
                resumed = 0
                for occurrence_id, deliveries, states in self._rebuilt(unfinished):
                    futures = self.dispatcher.dispatch(deliveries, states)
                    for f in futures:
                        f.result()
                    self.log.flush()
                    resumed += len(deliveries)
                    if deliveries:
                        self.activity.add(
                            self.clock.now(),
                            "resumed",
                            f"{occurrence_id}: {len(deliveries)} 条续发/对账 resumed or reconciled",
                        )
                self.collect_late_outcomes()
                return resumed
            except Exception as exc:
                log.exception("sweep failed")
                self.activity.add(self.clock.now(), "error", f"续发出错 sweep failed: {exc!r}")
                return 0

    def collect_late_outcomes(self) -> int:
        """Ask channels whose outcomes arrive later about deliveries still only accepted."""
        since = self.clock.now() - LATE_OUTCOME_WINDOW
        settled = 0
        for spec in self.campaign.channels.values():
            if not (spec.enabled and spec.capabilities.late_outcomes):
                continue
            accepted = self.log.deliveries(channel=spec.id, status=Status.ACCEPTED, since=since)
            mine = [s for s in accepted if s.campaign == self.campaign.id]
            for _, deliveries, states in self._rebuilt(mine):
                with_ids = [
                    dataclasses.replace(d, provider_id=states[d.key].provider_id)
                    for d in deliveries
                ]
                settled += self.dispatcher.settle(with_ids)
        return settled

    def _rebuilt(self, states: list[Any]) -> Iterator[tuple[str, list[Delivery], dict[str, Any]]]:
        """Logged deliveries as sendable ones (addresses re-derived from the plan), by occurrence."""
        by_occurrence: dict[str, dict[str, Any]] = {}
        for state in states:
            by_occurrence.setdefault(state.occurrence_id, {})[state.key] = state
        for occurrence_id, wanted in by_occurrence.items():
            rebuilt = self._rebuild(occurrence_id)
            if rebuilt is None:
                continue
            occurrence, adhoc_spec, extra_vars = rebuilt
            pairs = self.dispatcher.prepare(occurrence, adhoc_spec, extra_vars)
            yield occurrence_id, [d for d, _ in pairs if d.key in wanted], wanted

    def _rebuild(
        self, occurrence_id: str
    ) -> tuple[Occurrence, RuleSpec | None, dict[str, Any] | None] | None:
        """The occurrence an id names, re-derived from the plan (addresses are never logged);
        a one-off send from the description it logged when it fired."""
        rule_id, _, when = occurrence_id.partition("@")
        try:
            at = dt.datetime.fromisoformat(when).replace(tzinfo=self.campaign.tz)
        except ValueError:
            return None
        if rule_id.startswith(ADHOC_PREFIX):
            adhoc = AdHoc.from_note(self.log.fired_reason(occurrence_id))
            if adhoc is None:
                return None
            return adhoc.occurrence(at), adhoc.spec(self.campaign, at), adhoc.vars
        spec = next((r for r in self.campaign.rules if r.id == rule_id), None)
        if spec is None:
            return None
        occurrence = next(
            self.planner.rule_occurrences(spec, at, at + dt.timedelta(minutes=1)), None
        )
        return (occurrence, None, None) if occurrence else None

    # -- config edits

    @staticmethod
    def _watched_mtimes(campaign: Campaign) -> dict[Path, float]:
        paths = list(campaign.doc.files)
        for folder in campaign.renderer.dirs[:-1]:  # office template folders, not the built-ins
            paths += [p for p in folder.rglob("*") if p.is_file()]
        out = {}
        for p in paths:
            try:
                out[p] = p.stat().st_mtime
            except OSError:
                out[p] = -1.0
        return out

    def reload_if_changed(self) -> bool | None:
        """Apply an edited config if it validates: True applied, False refused, None unchanged."""
        current = self._watched_mtimes(self.campaign)
        if current == self._mtimes:
            return None
        self._mtimes = current
        now = self.clock.now()
        try:
            campaign = load_campaign(
                self.campaign.path,
                environ=self.environ,
                today=now.astimezone(self.campaign.tz).date(),
                state_dir=self.state_dir,
            )
        except ConfigError as exc:
            self.activity.add(
                now,
                "error",
                "配置修改无效，继续使用原配置 edit refused, the previous config keeps running:\n"
                + "\n".join(f"  {i}" for i in exc.issues),
            )
            return False
        with self._lock:
            old = self.dispatcher
            self.campaign = campaign
            self.planner = Planner(campaign)
            self.dispatcher = self._dispatcher(campaign)
            self._mtimes = self._watched_mtimes(campaign)
        threading.Thread(target=old.close, name="close-old-dispatcher", daemon=True).start()
        self.activity.add(
            now, "reload", f"已应用新配置 config reloaded: {len(campaign.rules)} rules"
        )
        self._schedule_next()
        return True

    # -- APScheduler: only wakes us

    def recover(self) -> None:
        """What a start does before scheduling: resume unfinished deliveries, finish occurrences
        that were cut short, catch up what was missed while nothing ran."""
        now = self.clock.now()
        if self.checked_until is None:
            self.checked_until = self.start_point(now)
            if self.checked_until < now:
                self.activity.add(
                    now,
                    "start",
                    f"从 {self.checked_until:%Y-%m-%d %H:%M} 补查 catching up since the last occurrence in the log",
                )
        self.sweep()
        self.tick(now)

    def start(self) -> None:
        """Recover, then let APScheduler wake us at each next occurrence."""
        self.recover()
        self.start_scheduler()

    def start_scheduler(self) -> None:
        """A fresh APScheduler with the wake, sweep and watch jobs (also after a watchdog alarm)."""
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown(wait=False)
            except Exception:  # it may already be dead: that is why we are here
                log.exception("old scheduler did not shut down")
        scheduler = BackgroundScheduler(
            timezone=self.campaign.tz,
            job_defaults={
                "coalesce": True,
                "misfire_grace_time": int(self.grace.total_seconds()) or 1,
                "max_instances": 1,
            },
        )
        scheduler.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.add_job(
            self._job_sweep, "interval", seconds=60, id="sweep", replace_existing=True
        )
        scheduler.add_job(self._job_watch, "interval", seconds=3, id="watch", replace_existing=True)
        scheduler.start()
        self.scheduler = scheduler
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self.scheduler is None or self.stopped.is_set():
            return
        after = max(self.checked_until or self.clock.now(), self.clock.now())
        wake = self.next_wake(after)
        if wake is None:
            return
        self.scheduler.add_job(
            self._job_wake, DateTrigger(run_date=wake), id="wake", replace_existing=True
        )

    def _job_wake(self) -> None:
        try:
            self.tick()
        finally:
            self._schedule_next()

    def _job_sweep(self) -> None:
        self.sweep()

    def _job_watch(self) -> None:
        try:
            self.reload_if_changed()
        except Exception as exc:
            log.exception("config watch failed")
            self.activity.add(self.clock.now(), "error", f"配置监视出错 watch failed: {exc!r}")

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        now = self.clock.now()
        if event.exception is not None:
            self.activity.add(
                now, "error", f"任务出错 job {event.job_id} raised {event.exception!r}"
            )
        else:
            self.activity.add(now, "error", f"任务错过 job {event.job_id} missed its time")
        if event.job_id == "wake":
            self._schedule_next()

    def healthy(self) -> bool:
        """The watchdog: the scheduler thread is alive and the next wake is scheduled."""
        if self.scheduler is None or not self.scheduler.running:
            return False
        thread = getattr(self.scheduler, "_thread", None)
        if thread is not None and not thread.is_alive():
            return False
        if self.scheduler.get_job("wake") is None and self.next_wake(self.clock.now()) is not None:
            self._schedule_next()
        return True

    def watchdog(self) -> None:
        """Called every second by `run`: a dead scheduler is reported and started again."""
        if not self.healthy():
            self.activity.add(
                self.clock.now(),
                "error",
                "调度线程异常，正在重启 scheduler thread died; restarting it",
            )
            self.start_scheduler()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop cleanly: no new sends; in-flight ones finish or are logged as interrupted."""
        self.stopped.set()
        self.dispatcher.stopping.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        interrupt = getattr(self.clock, "interrupt", None)
        if interrupt:
            interrupt()
        closer = threading.Thread(
            target=self.dispatcher.close, name="close-dispatcher", daemon=True
        )
        closer.start()
        deadline = time.monotonic() + timeout
        closer.join(max(0.0, deadline - time.monotonic()))
        left = self.dispatcher.in_flight()
        if left:
            from broadcaster.log import Event

            now = self.clock.now()
            self.log.append(
                [
                    Event(
                        k, Status.INTERRUPTED, now, None, "停止时仍在发送 still sending at shutdown"
                    )
                    for k in left
                ]
            )
            self.activity.add(
                now, "stop", f"{len(left)} 条记为中断 deliveries logged as interrupted"
            )


def _summary(report: FireReport) -> str:
    parts = [f"{ch} {status}×{n}" for (ch, status), n in sorted(report.counts.items())]
    head = report.occurrence_id + ("" if report.first_time else " (续 resumed)")
    return f"{head}: " + (", ".join(parts) or "无投递 no deliveries")
