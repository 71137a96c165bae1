"""`broadcaster run`: the long-running scheduler and its live view."""

from __future__ import annotations

import datetime as dt
import logging
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

import broadcaster.cli as package
from broadcaster.cli import State, cli
from broadcaster.cli.campaign import load_app, pass_state, print_warnings
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION, offline_checks, print_channel_table
from broadcaster.cli.labels import activity_kind, activity_text, weekday, when
from broadcaster.cli.output import fit_table
from broadcaster.cli.serve import serve_options, start_serving, stop_serving
from broadcaster.model.campaign import Campaign

if TYPE_CHECKING:
    from broadcaster.engine.runner import Runner

__all__ = ["STOP_SECONDS", "live_view", "run"]

STOP_SECONDS = 5.0  # how long requests in flight may take to answer once asked to stop


def parse_duration(text: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if not m:
        raise click.BadParameter(
            f"时长格式错误 expected a duration such as 30m, 2h or 1d; got {text!r}",
            param_hint="--grace",
        )
    n, unit = int(m.group(1)), m.group(2)
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def live_view(runner: Runner, campaign: Campaign, db: str, width: int = 160) -> Panel:
    """What `run` shows on a terminal; laid out for `width` columns, cropping nothing."""
    now = runner.clock.now().astimezone(campaign.tz)
    inner = width - 4  # the panel's border and padding
    upcoming = Table(title="下次推送 next occurrences", title_justify="left", expand=True)
    for column in ("时间 time", "规则 rule", "渠道 channels", "对象 targets"):
        upcoming.add_column(column, no_wrap=column == "时间 time")
    rules = {r.id: r for r in runner.campaign.rules}
    for occurrence in runner.upcoming(now, 8):
        spec = rules[occurrence.rule_id]
        upcoming.add_row(
            f"{occurrence.at:%m-%d %H:%M}\n{weekday(occurrence.at)}",
            occurrence.rule_id,
            ", ".join(spec.rule.channels),
            str(len(spec.targets)),
        )
    recent = Table(title="最近动态 recent activity", title_justify="left", expand=True)
    recent.add_column("时间 time", no_wrap=True)
    recent.add_column("事件 event")
    for at, kind, text in list(runner.activity.lines)[-12:]:
        style = {"error": "red", "missed": "yellow"}.get(kind, "")
        line = Text(f"{activity_kind(kind)} ", style=style)
        line.append(activity_text(text))
        recent.add_row(f"{at.astimezone(campaign.tz):%m-%d %H:%M:%S}", line)
    channels = runner.app.channels.values()
    ready = [c.id for c in channels if c.enabled]
    off = [f"{c.id} ({c.disabled_reason})" for c in channels if not c.enabled]
    role = (
        "调度中 active scheduler" if runner.leader else f"待命 standing by: {runner.standby_reason}"
    )
    footer = Text(
        f"就绪 ready: {', '.join(ready) or '—'}\n停用 disabled: {'; '.join(off) or '—'}\n"
        f"{role}\n日志 log: {db} · Ctrl-C 停止 stop",
        overflow="fold",
        no_wrap=False,  # wrap even on a console that soft-wraps (run's own does)
    )
    return Panel(
        Group(fit_table(upcoming, inner, 1), fit_table(recent, inner, 1), footer),
        title=f"broadcaster run · {campaign.config.campaign.name} · {now:%Y-%m-%d %H:%M:%S}",
    )


@cli.command()
@DB_OPTION
@STATE_OPTION
@click.option(
    "--grace",
    default="2h",
    show_default=True,
    help="停机补发宽限 catch up occurrences missed within this long (30m, 2h, 1d); older ones are logged as missed.",
)
@click.option(
    "--live/--no-live",
    default=None,
    help="实时界面 live view (default: when writing to a terminal).",
)
@click.option(
    "--workers",
    type=click.Choice(["internal", "external"]),
    default="internal",
    show_default=True,
    help="发送在哪里进行 where sends run: internal (this process's threads) or external"
    " (`broadcaster worker` processes; needs the log on PostgreSQL and the workers extra).",
)
@serve_options
@pass_state
def run(
    state: State,
    db: str | None,
    state_dir: Path | None,
    grace: str,
    live: bool | None,
    workers: str,
) -> None:
    """长期运行的调度器 the long-running scheduler: fires exactly what `plan` lists.

    Restarts never re-send what was sent; occurrences missed while it was down are caught up
    within --grace and logged as missed beyond it. Edits to the config are applied once they
    validate. Ctrl-C or SIGTERM stops it cleanly.
    """
    from broadcaster.cli.reports import approval_refusals, print_refusals
    from broadcaster.engine.clock import SystemClock
    from broadcaster.engine.runner import Activity

    app, _ = load_app(state, None, state_dir)
    campaign = app.campaign
    print_warnings(state, campaign)
    refused = approval_refusals(app, db)
    if refused:  # 审核把关: nothing unapproved is ever scheduled
        print_refusals(state, refused)
        raise click.exceptions.Exit(1)
    store, key = app.open_log(db)
    activity = Activity()
    clock = SystemClock()
    executor = limiter = None
    if workers == "external":
        from broadcaster.engine.queue import QueueExecutor
        from broadcaster.engine.shared_limits import SharedRateLimiter

        try:
            executor = QueueExecutor(store.connect_url())
            limiter = SharedRateLimiter(store.connect_url(), clock)
        except BaseException:
            store.close()
            raise
    runner = app.runner(
        store,
        key,
        clock=clock,
        grace=parse_duration(grace),
        activity=activity,
        executor=executor,
        limiter=limiter,
    )
    use_live = state.out.is_terminal if live is None else live
    if not use_live:
        activity.listeners.append(
            lambda at, kind, text: state.out.print(
                f"{at.astimezone(campaign.tz):%Y-%m-%d %H:%M:%S} {activity_kind(kind)}"
                f" {activity_text(text)}",
                markup=False,
            )
        )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    restore: Callable[[], None] = _nothing
    web = None
    try:
        try:
            web = start_serving(state, runner, store, db)  # with --serve: the web service too
            state.out.print(
                f"启动 starting: {campaign.config.campaign.name}, {len(campaign.rules)} rules"
                f" · 日志 log {store.url_display}"
            )
            if executor is not None:
                state.out.print(
                    "发送交给外部工作进程 sends go to external workers (`broadcaster worker`)",
                    markup=False,
                )
            print_channel_table(state, app.channels, offline_checks(app))
            if not runner.step():
                state.out.print(f"待命 standing by: {runner.standby_reason}", markup=False)
            if not use_live:
                for occurrence in runner.upcoming(clock.now(), 5):
                    state.out.print(
                        f"下次 next: {when(occurrence.at, '%Y-%m-%d')} {occurrence.rule_id}"
                    )
                state.out.print("运行中 running; Ctrl-C 停止 stop", markup=False)
                while not stop.wait(1.0):
                    runner.step()
            else:
                with Live(
                    live_view(runner, campaign, store.url_display, state.out.width),
                    console=state.out,
                    refresh_per_second=2,
                    transient=False,
                ) as view:
                    while not stop.wait(0.5):
                        runner.step()
                        view.update(
                            live_view(runner, runner.campaign, store.url_display, state.out.width)
                        )
        finally:
            # stdout may be a pipe whose reader died with the same Ctrl-C (`run | tee run.log`):
            # the console then goes quiet, and stopping goes on
            state.out.print(
                "正在停止 stopping: queued deliveries stay planned, requests in flight finish or are"
                f" logged as interrupted (at most {STOP_SECONDS:g}s) …"
            )
            try:
                stop_serving(web)
                runner.stop(STOP_SECONDS)
                runner.close()
            finally:
                # threads still waiting for a provider find the log closed: nothing they say
                # from here on is news (what they were doing is logged interrupted)
                restore = quiet_background()
                try:
                    store.close()
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
        state.out.print("已停止 stopped cleanly.")
    finally:
        if not package.STANDALONE:  # called in-process (tests): give logging back
            restore()


def _nothing() -> None:
    pass


def quiet_background() -> Callable[[], None]:
    """Silence logging and uncaught exceptions of other threads; return the undo."""
    hook = threading.excepthook
    main_thread = threading.current_thread()

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if args.thread is main_thread:
            hook(args)

    threading.excepthook = excepthook
    logging.disable(logging.CRITICAL)

    def restore() -> None:
        threading.excepthook = hook
        logging.disable(logging.NOTSET)

    return restore
