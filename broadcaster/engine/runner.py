"""`broadcaster run`: fire exactly the occurrences `plan` lists, on time, forever.

One scheduler per campaign and log: a runner fires only while it holds the campaign's
scheduler lease in the log; a second `run` on the same log stands by, saying who runs,
and takes over within the lease when the first stops or dies. Firing never waits for
delivery: `tick()` logs and queues each due occurrence and goes on, and checking
continues from the last time checked, so an occurrence due behind a slow fan-out
fires at its own time. Each occurrence is recorded done when all its sends finished.

The campaign logic lives here and in `plan`; APScheduler only wakes the runner at the
next occurrence's time (a one-shot date job, rebuilt after each wake) and every ten
seconds for the sweep. On start, occurrences since the last one the log knows are
caught up within the grace period, or logged as missed beyond it. A config edit is
applied only if it validates.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from broadcaster.engine.clock import Clock
from broadcaster.engine.dispatch import DEFAULT_LEASE, Dispatcher, FireHandle, new_owner
from broadcaster.engine.fanout import duration_label
from broadcaster.engine.ratelimit import LocalRateLimiter, RateLimiter
from broadcaster.engine.recovery import Recovery
from broadcaster.errors import ConfigError
from broadcaster.log import DeliveryLog, LeaseState
from broadcaster.model.plan import Occurrence, Planner

__all__ = ["FIRE_ATTEMPTS", "Activity", "Runner"]

FIRE_ATTEMPTS = 3  # ticks an occurrence that raises is tried on before it is logged as failed
SWEEP_SECONDS = 10  # how often the leader looks for due work (one indexed query when idle)

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
    """Fires occurrences on time, catches up after downtime, resumes unfinished deliveries.

    `make_dispatcher(app)` builds the dispatcher of a loaded app (the campaign and its
    channels); `reload()` returns a freshly validated app when the config changed, or
    raises ConfigError.
    """

    def __init__(
        self,
        app: Any,
        log_store: DeliveryLog,
        *,
        clock: Clock,
        make_dispatcher: Callable[[Any, RateLimiter, str], Dispatcher],
        reload: Callable[[], Any] | None = None,
        grace: dt.timedelta = dt.timedelta(hours=2),
        activity: Activity | None = None,
        lease: float = DEFAULT_LEASE,
        limiter: RateLimiter | None = None,
    ):
        self.app = app
        self.log = log_store
        self.clock = clock
        self.grace = grace
        self.lease = lease
        self.activity = activity or Activity()
        self.limiter: RateLimiter = limiter or LocalRateLimiter(clock)
        self.owner = new_owner()
        self._make_dispatcher = make_dispatcher
        self._reload = reload
        self.dispatcher = make_dispatcher(app, self.limiter, self.owner)
        self.recovery = Recovery(self.dispatcher)
        self.planner = Planner(self.campaign)
        self.checked_until: dt.datetime | None = None
        self.leader = False
        self.standby_reason = ""
        self._renewed: dt.datetime | None = None
        self._fired: dict[str, tuple[FireHandle, str]] = {}  # running: id -> (handle, note)
        self._failing: dict[str, tuple[Occurrence, int]] = {}  # occurrence id -> (it, attempts)
        self._lock = threading.RLock()
        self._mtimes = self._watched_mtimes()
        self.scheduler: BackgroundScheduler | None = None
        self.stopped = threading.Event()
        self._pruned_on: dt.date | None = None  # the day of the last retention prune

    @property
    def campaign(self) -> Any:
        return self.app.campaign

    @property
    def lease_name(self) -> str:
        return f"scheduler:{self.campaign.id}"

    # -- leadership

    def claim_leadership(self, now: dt.datetime | None = None) -> bool:
        """Take or renew the campaign's scheduler lease; False (standing by) when another
        live `run` holds it, with the reason in `standby_reason`."""
        now = now or self.clock.now()
        info = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "since": now.isoformat()},
            ensure_ascii=False,
        )
        state = self.log.acquire_lease(
            self.lease_name,
            self.owner,
            now=now,
            until=now + dt.timedelta(seconds=self.lease),
            info=info,
        )
        was = self.leader
        self.leader = state.acquired
        self._renewed = now if state.acquired else self._renewed
        if not state.acquired:
            self.standby_reason = _holder(state)
            if was:
                self.activity.add(
                    now,
                    "standby",
                    f"调度权已被接管 lost the scheduler lease: {self.standby_reason}",
                )
                self._stop_scheduler()
        return state.acquired

    # -- the core: testable without APScheduler, in virtual time

    def start_point(self, now: dt.datetime) -> dt.datetime:
        """Where catching up starts: after the last occurrence the log knows, else now."""
        last = self.log.last_occurrence_at(self.campaign.id)
        return last if last is not None else now

    def due(self, now: dt.datetime) -> tuple[list[Occurrence], list[Occurrence]]:
        """(to fire, missed) among occurrences since `checked_until` up to `now`."""
        since = self.checked_until or now
        found = list(self.planner.occurrences(since, now + dt.timedelta(microseconds=1)))
        if not found:
            return [], []
        states = self.log.occurrence_states(
            self.campaign.id, found[0].at, found[-1].at + dt.timedelta(microseconds=1)
        )
        fire, missed = [], []
        for occurrence in found:
            state = states.get(occurrence.id)
            if state is not None and state.status in ("done", "missed", "skipped"):
                continue
            if occurrence.id in self._fired:
                continue  # still sending
            if state is not None and state.status == "fired":
                fire.append(occurrence)  # interrupted mid-way: resume it
            elif now - occurrence.at <= self.grace:
                fire.append(occurrence)
            else:
                missed.append(occurrence)
        return fire, missed

    def tick(self, now: dt.datetime | None = None) -> list[FireHandle]:
        """Fire what is due and log what was missed, without waiting for any send; never raises."""
        now = now or self.clock.now()
        handles: list[FireHandle] = []
        with self._lock:
            if not self.leader and not self.claim_leadership(now):
                return []
            try:
                self.finish(now)
                fire, missed = self.due(now)
                for occurrence in missed:
                    late = now - occurrence.at
                    reason = (
                        f"错过 missed: the scheduler was not running; {late} late is beyond"
                        f" the grace of {self.grace}"
                    )
                    self.log.record_occurrence(
                        self.campaign.id,
                        occurrence.id,
                        occurrence.rule_id,
                        occurrence.at,
                        "missed",
                        reason,
                        now,
                    )
                    self.activity.add(now, "missed", f"{occurrence.id} {reason}")
                due_ids = {o.id for o in fire}
                fire += [o for o, _ in self._failing.values() if o.id not in due_ids]
                for occurrence in fire:
                    if self.stopped.is_set():
                        break
                    handle = self._fire_one(occurrence, now)
                    if handle is not None:
                        handles.append(handle)
                if not self.stopped.is_set():
                    self.checked_until = max(self.checked_until or now, now)
            except Exception as exc:  # a failing tick is logged; the next wake tries again
                log.exception("tick failed")
                self.activity.add(now, "error", f"调度出错 tick failed: {exc!r}")
        return handles

    def _fire_one(self, occurrence: Occurrence, now: dt.datetime) -> FireHandle | None:
        """Fire one occurrence; one that raises is retried on the next ticks, then logged as
        failed, and never holds up the others."""
        late = now - occurrence.at
        note = ""
        if late > dt.timedelta(minutes=1):
            note = f"补发 caught up {duration_label(late.total_seconds())} late"
        try:
            handle = self.dispatcher.fire(occurrence)
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
                    self.campaign.id,
                    occurrence.id,
                    occurrence.rule_id,
                    occurrence.at,
                    "failed",
                    reason,
                    now,
                )
            return None
        self._failing.pop(occurrence.id, None)
        self._fired[occurrence.id] = (handle, note)
        resumed = "" if handle.first_time else " (续 resumed)"
        self.activity.add(
            now,
            "fired",
            f"{occurrence.id}{resumed}: {len(handle.keys)} 次投递 deliveries"
            + (f" · {note}" if note else ""),
        )
        return handle

    def finish(self, now: dt.datetime | None = None, *, wait: bool = False) -> int:
        """Record as done the occurrences whose sends all finished (with `wait`: wait for them)."""
        now = now or self.clock.now()
        finished = 0
        with self._lock:
            running = list(self._fired.items())
        for occurrence_id, (handle, note) in running:
            if not wait and not handle.done():
                continue
            report = handle.wait()
            occurrence = handle.occurrence
            self.log.record_occurrence(
                self.campaign.id,
                occurrence.id,
                occurrence.rule_id,
                occurrence.at,
                "done",
                note,
                self.clock.now(),
            )
            with self._lock:
                self._fired.pop(occurrence_id, None)
            finished += 1
            parts = ", ".join(f"{s}×{n}" for s, n in sorted(report.counts.items()))
            self.activity.add(now, "done", f"{occurrence.id}: {parts or '—'}")
        return finished

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
        """Resume or reconcile what is due in the log, collect late outcomes, record finished
        occurrences; return how many deliveries were taken up. Only the leader sweeps."""
        with self._lock:
            if not self.leader:
                return 0
            try:
                retry_stalled = getattr(self.dispatcher.executor, "retry_stalled", None)
                if retry_stalled is not None:  # jobs of worker processes that died
                    retry_stalled()
                report = self.recovery.sweep()
                pulled = self.recovery.pull_feeds()
                self.finish()
                self.prune_expired()
                if report.total or pulled:
                    self.activity.add(
                        self.clock.now(),
                        "resumed",
                        f"续发 {report.sent} resumed, 对账 {report.reconciled} reconciled,"
                        f" 回执 {report.polled + pulled} outcomes",
                    )
                return report.total
            except Exception as exc:
                log.exception("sweep failed")
                self.activity.add(self.clock.now(), "error", f"续发出错 sweep failed: {exc!r}")
                return 0

    def prune_expired(self, now: dt.datetime | None = None) -> int:
        """Once a day (from the leader's sweep), when the config sets log.retention_days:
        drop the texts and masked numbers of deliveries past it (hashes, counts and the
        hash chain stay); how many were dropped."""
        days = self.campaign.config.log.retention_days
        now = now or self.clock.now()
        today = now.astimezone(self.campaign.tz).date()
        if days is None or self._pruned_on == today:
            return 0
        cutoff = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(), self.campaign.tz)
        tally = self.log.prune(cutoff, now, "run")
        self._pruned_on = today
        dropped = tally.texts + tally.payloads + tally.displays
        if dropped:
            self.activity.add(
                now,
                "pruned",
                f"按保留期清理 retention prune before {cutoff.date()}: 正文 texts {tally.texts},"
                f" 号码显示 masked numbers {tally.displays}",
            )
        return dropped

    # -- config edits

    def _watched_mtimes(self) -> dict[Path, float]:
        campaign = self.campaign
        paths = list(campaign.doc.files) + list(getattr(self.app, "watched_files", ()))
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
        current = self._watched_mtimes()
        if current == self._mtimes or self._reload is None:
            return None
        self._mtimes = current
        now = self.clock.now()
        try:
            app = self._reload()
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
            self.app = app
            self.planner = Planner(app.campaign)
            self.dispatcher = self._make_dispatcher(app, self.limiter, new_owner())
            self.recovery = Recovery(self.dispatcher)
            self._mtimes = self._watched_mtimes()
        threading.Thread(target=old.close, name="close-old-dispatcher", daemon=True).start()
        self.activity.add(
            now, "reload", f"已应用新配置 config reloaded: {len(app.campaign.rules)} rules"
        )
        self._schedule_next()
        return True

    # -- APScheduler: only wakes us

    def recover(self) -> None:
        """What a leader does before scheduling: resume what is due in the log, finish
        occurrences that were cut short, catch up what was missed while nothing ran."""
        now = self.clock.now()
        if self.checked_until is None:
            self.checked_until = self.start_point(now)
            if self.checked_until < now:
                self.activity.add(
                    now,
                    "start",
                    f"从 {self.checked_until.astimezone(self.campaign.tz):%Y-%m-%d %H:%M} 补查 catching up since the last"
                    " occurrence in the log",
                )
        self.sweep()
        self.tick(now)

    def step(self) -> bool:
        """One beat of `run` (every second): keep or take leadership, schedule as leader.
        True while leading."""
        now = self.clock.now()
        renew_due = self._renewed is None or now - self._renewed >= dt.timedelta(
            seconds=self.lease / 3
        )
        if self.leader and renew_due:
            self.claim_leadership(now)
        if not self.leader:
            if self.claim_leadership(now):
                self.activity.add(now, "start", "已成为调度者 now the active scheduler")
                self.recover()
                self.start_scheduler()
            return self.leader
        self.watchdog()
        if not self.log.alive:
            raise self.log.dead or RuntimeError("delivery log writer stopped")
        return True

    def start_scheduler(self) -> None:
        """A fresh APScheduler with the wake, sweep and watch jobs (also after a watchdog alarm)."""
        self._stop_scheduler()
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
            self._job_sweep, "interval", seconds=SWEEP_SECONDS, id="sweep", replace_existing=True
        )
        scheduler.add_job(self._job_watch, "interval", seconds=3, id="watch", replace_existing=True)
        scheduler.start()
        self.scheduler = scheduler
        self._schedule_next()

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            try:
                self.scheduler.shutdown(wait=False)
            except Exception:  # it may already be dead: that is why we are here
                log.debug("old scheduler did not shut down", exc_info=True)
            self.scheduler = None

    def _schedule_next(self) -> None:
        if self.scheduler is None or self.stopped.is_set():
            return
        after = self.checked_until or self.clock.now()
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
            self.finish()
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
        if self.leader and not self.healthy():
            self.activity.add(
                self.clock.now(),
                "error",
                "调度线程异常，正在重启 scheduler thread died; restarting it",
            )
            self.start_scheduler()

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop within `timeout`: no new sends; queued ones go back to the log for the next
        process; requests in flight when time is up are logged interrupted (returned)."""
        self.stopped.set()
        self._stop_scheduler()
        left = self.dispatcher.stop(timeout)
        if left:
            self.activity.add(
                self.clock.now(),
                "stop",
                f"{len(left)} 条请求等待应答时停止，记为中断 in flight at stop, logged interrupted",
            )
        return left

    def close(self) -> None:
        """Release claims and the scheduler lease (a standby takes over at once)."""
        try:
            self.dispatcher.close()
            if not self.dispatcher.owns_executor:
                self.dispatcher.executor.shutdown(wait=True)
        finally:
            if self.leader and self.log.alive and not self.log.closed:
                self.log.release_lease(self.lease_name, self.owner)
                self.leader = False


def _holder(state: LeaseState) -> str:
    try:
        info = json.loads(state.info)
    except ValueError:
        info = {}
    return (
        f"调度器已在 {info.get('host', '?')} 的进程 {info.get('pid', '?')} 运行"
        f" (since {str(info.get('since', '?'))[:19]}) · the scheduler runs in pid"
        f" {info.get('pid', '?')} on {info.get('host', '?')}; this one stands by and takes"
        f" over if that one stops (lease until {state.until:%H:%M:%S} UTC)"
    )
