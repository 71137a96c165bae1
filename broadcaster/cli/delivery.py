"""Delivery commands: channels, run, simulate, send-now, log."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import requests
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..adhoc import AdHoc
from ..campaign import Campaign, ChannelSpec
from ..channel import Channel, ChannelContext, Status
from ..clock import SystemClock, VirtualClock
from ..config.explain import did_you_mean
from ..config.schema import Rule, Selector
from ..dispatch import Dispatcher
from ..engine import open_log, state_dir_for
from ..errors import AbortedError
from ..log import DeliveryLog
from ..plan import Planner
from ..registry import Registry
from ..runner import Activity, Runner
from ..targets import mask_phone, parse_phone
from . import State, cli, parse_date
from .campaign import NOW_OPTION, load, pass_state, print_warnings

__all__ = ["channels_command", "log_command", "run", "send_now", "simulate"]

DB_OPTION = click.option(
    "--db",
    metavar="URL",
    help="投递日志数据库 delivery log (SQLAlchemy URL; default: SQLite in the state folder, or $BROADCASTER_DB).",
)
STATE_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="状态目录 state folder (default: var/ beside the config, or $BROADCASTER_STATE_DIR).",
)


def channel_checks(
    campaign: Campaign, opener: Callable[[ChannelSpec], Channel]
) -> dict[str, tuple[bool, str]]:
    """(ready, reason) per configured channel: disabled by config, or the plugin's own check()."""
    out: dict[str, tuple[bool, str]] = {}
    for spec in campaign.channels.values():
        if not spec.enabled:
            out[spec.id] = (False, spec.disabled_reason or "disabled")
            continue
        try:
            problem = opener(spec).check()
        except Exception as exc:
            problem = f"检查失败 check failed: {exc!r}"
        out[spec.id] = (problem is None, problem or "")
    return out


def print_channel_table(
    state: State, campaign: Campaign, checks: dict[str, tuple[bool, str]]
) -> None:
    table = Table(title="渠道 channels", title_justify="left")
    for column in ("渠道 channel", "类型 type", "消息 kind", "状态 status", "原因 reason"):
        table.add_column(column)
    for spec in campaign.channels.values():
        ready, reason = checks[spec.id]
        table.add_row(
            spec.id + (f" ({spec.name})" if spec.name else ""),
            spec.type,
            spec.kind.value,
            "[green]就绪 ready[/green]" if ready else "[yellow]停用 disabled[/yellow]",
            reason or "—",
        )
    state.out.print(table)


@cli.command("channels")
@NOW_OPTION
@STATE_OPTION
@pass_state
def channels_command(state: State, now: str | None, state_dir: Path | None) -> None:
    """列出渠道插件和已配置的渠道 list channel plugins and configured channels, ready or not."""
    table = Table(title="渠道插件 channel plugins", title_justify="left")
    for column in ("名称 name", "来源 source", "状态 status", "原因 reason"):
        table.add_column(column)
    for info in Registry().all():
        status = (
            "[green]可用 available[/green]" if info.cls is not None else "[red]停用 disabled[/red]"
        )
        table.add_row(info.name, info.source, status, info.error or "—")
    state.out.print(table)
    if not state.config.exists():
        return
    campaign, _ = load(state, now)
    folder = state_dir_for(state.config, state_dir)
    session = requests.Session()
    opened: list[Channel] = []

    def opener(spec: ChannelSpec) -> Channel:
        channel = spec.open(
            ChannelContext(
                spec.id,
                session,
                SystemClock().now,
                folder / "channels" / spec.id,
                campaign.base_dir,
            )
        )
        opened.append(channel)
        return channel

    try:
        print_channel_table(state, campaign, channel_checks(campaign, opener))
    finally:
        for channel in opened:
            channel.close()
        session.close()


# --- run -----------------------------------------------------------------------------------------


def parse_duration(text: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if not m:
        raise click.BadParameter(
            f"expected a duration such as 30m, 2h or 1d; got {text!r}", param_hint="--grace"
        )
    n, unit = int(m.group(1)), m.group(2)
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def live_view(runner: Runner, campaign: Campaign, db: str) -> Panel:
    now = runner.clock.now().astimezone(campaign.tz)
    upcoming = Table(title="下次推送 next occurrences", title_justify="left", expand=True)
    for column in ("时间 time", "规则 rule", "渠道 channels", "对象 targets"):
        upcoming.add_column(column)
    rules = {r.id: r for r in runner.campaign.rules}
    for occurrence in runner.upcoming(now, 8):
        spec = rules[occurrence.rule_id]
        upcoming.add_row(
            f"{occurrence.at:%m-%d %a %H:%M}",
            occurrence.rule_id,
            ", ".join(spec.rule.channels),
            str(len(spec.targets)),
        )
    recent = Table(title="最近动态 recent activity", title_justify="left", expand=True)
    recent.add_column("时间 time", no_wrap=True)
    recent.add_column("事件 event")
    for when, kind, text in list(runner.activity.lines)[-12:]:
        style = {"error": "red", "missed": "yellow"}.get(kind, "")
        recent.add_row(
            f"{when.astimezone(campaign.tz):%m-%d %H:%M:%S}",
            f"[{style}]{kind}[/{style}] {text}" if style else f"{kind} {text}",
        )
    ready = [c.id for c in runner.campaign.channels.values() if c.enabled]
    off = [
        f"{c.id} ({c.disabled_reason})" for c in runner.campaign.channels.values() if not c.enabled
    ]
    footer = f"就绪 ready: {', '.join(ready) or '—'}\n停用 disabled: {'; '.join(off) or '—'}\n日志 log: {db} · Ctrl-C 停止 stop"
    return Panel(
        Group(upcoming, recent, footer),
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
@pass_state
def run(
    state: State, db: str | None, state_dir: Path | None, grace: str, live: bool | None
) -> None:
    """长期运行的调度器 the long-running scheduler: fires exactly what `plan` lists.

    Restarts never re-send what was sent; occurrences missed while it was down are caught up
    within --grace and logged as missed beyond it. Edits to the config are applied once they
    validate. Ctrl-C or SIGTERM stops it cleanly.
    """
    campaign, _ = load(state, None)
    print_warnings(state, campaign)
    folder = state_dir_for(state.config, state_dir)
    store, key = open_log(db, folder)
    activity = Activity()
    clock = SystemClock()
    runner = Runner(
        campaign,
        store,
        clock=clock,
        hash_key=key,
        state_dir=folder,
        grace=parse_duration(grace),
        activity=activity,
    )
    use_live = state.out.is_terminal if live is None else live
    if not use_live:
        activity.listeners.append(
            lambda when, kind, text: state.out.print(
                f"{when.astimezone(campaign.tz):%Y-%m-%d %H:%M:%S} {kind} {text}", markup=False
            )
        )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    state.out.print(
        f"启动 starting: {campaign.config.campaign.name}, {len(campaign.rules)} rules · 日志 log {store.url_display}"
    )
    print_channel_table(
        state, campaign, channel_checks(campaign, lambda spec: runner.dispatcher.channel(spec.id))
    )
    try:
        runner.start()
        if not use_live:
            for occurrence in runner.upcoming(clock.now(), 5):
                state.out.print(f"下次 next: {occurrence.at:%Y-%m-%d %H:%M} {occurrence.rule_id}")
            state.out.print("运行中 running; Ctrl-C 停止 stop", markup=False)
            while not stop.wait(1.0):
                runner.watchdog()
        else:
            with Live(
                live_view(runner, campaign, store.url_display),
                console=state.out,
                refresh_per_second=2,
                transient=False,
            ) as view:
                while not stop.wait(0.5):
                    runner.watchdog()
                    view.update(live_view(runner, runner.campaign, store.url_display))
    finally:
        state.out.print(
            "正在停止 stopping: in-flight deliveries finish or are logged as interrupted …"
        )
        runner.stop()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        state.out.print("已停止 stopped cleanly.")


# --- simulate ------------------------------------------------------------------------------------


def outboxed(campaign: Campaign, folder: Path) -> Campaign:
    """The campaign with every networked channel replaced by an outbox of the same kind."""
    from ..channels.outbox import OutboxChannel, OutboxSettings

    specs = {}
    for cid, spec in campaign.channels.items():
        if spec.type == "outbox":
            settings = OutboxSettings(
                folder=str(folder / cid), addressing=spec.settings.addressing, fsync=False
            )  # type: ignore[attr-defined]
        else:
            addressing = getattr(spec.settings, "addressing", spec.capabilities.addressing)
            settings = OutboxSettings(folder=str(folder / cid), addressing=addressing, fsync=False)
        specs[cid] = dataclasses.replace(spec, plugin=OutboxChannel, settings=settings)
    return dataclasses.replace(campaign, channels=specs)


@cli.command()
@click.option("--from", "from_", metavar="DATE", help="起始日期 first day (default: today).")
@click.option("--to", metavar="DATE", help="结束日期 last day, inclusive.")
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=7,
    show_default=True,
    help="天数 days, when --to is not given.",
)
@click.option(
    "--live-channels",
    is_flag=True,
    help="用真实渠道 send through the configured channels (aim them at local fakes); default: every channel writes to an outbox.",
)
@STATE_OPTION
@NOW_OPTION
@pass_state
def simulate(
    state: State,
    from_: str | None,
    to: str | None,
    days: int,
    live_channels: bool,
    state_dir: Path | None,
    now: str | None,
) -> None:
    """在虚拟时间里跑一遍真实投递流程 run the real dispatch path over a period in virtual time.

    Nothing waits and, unless --live-channels, nothing leaves this machine: each channel writes
    what it would send to var/simulate/outbox/. Prints a summary by channel, target and theme.
    """
    campaign, when = load(state, now)
    print_warnings(state, campaign)
    first = parse_date(from_, "--from") or when.date()
    last = parse_date(to, "--to") or first + dt.timedelta(days=days - 1)
    folder = state_dir_for(state.config, state_dir) / "simulate"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if not live_channels:
        campaign = outboxed(campaign, folder / "outbox")
    # a fixed key: the same period simulates to the same keys and files every time
    key = hashlib.sha256(f"simulate:{campaign.id}".encode()).hexdigest().encode()
    store = DeliveryLog.open(f"sqlite:///{folder / 'simulate.sqlite3'}", hash_key=key)
    tz = campaign.tz
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    clock = VirtualClock(start)
    dispatcher = Dispatcher(campaign, store, clock=clock, hash_key=key, state_dir=folder)
    started = time.perf_counter()
    occurrences = 0
    try:
        for occurrence in dispatcher.planner.occurrences(start, end):
            clock.set(occurrence.at)
            dispatcher.fire(occurrence)
            occurrences += 1
        rows = store.deliveries(since=start, until=end)
    finally:
        dispatcher.close()
        store.close()
    elapsed = time.perf_counter() - started
    themes: Counter[str] = Counter()
    for item in Planner(campaign).items(start, end, render=False):
        themes[item.theme or "—"] += item.recipients
    by_channel: dict[str, Counter[str]] = defaultdict(Counter)
    by_target: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        by_channel[row.channel_id][row.status.value] += 1
        by_target[row.target_id][row.status.value] += 1
    statuses = sorted({s for c in by_channel.values() for s in c})
    table = Table(
        title=f"模拟 simulated {first} … {last}: {occurrences} 次触发 occurrences, {len(rows)} 次投递 deliveries",
        title_justify="left",
    )
    table.add_column("渠道 channel")
    for s in statuses:
        table.add_column(s, justify="right")
    for cid, counts in sorted(by_channel.items()):
        spec = campaign.channels[cid]
        label = cid if spec.enabled else f"{cid} (停用 disabled: {spec.disabled_reason})"
        table.add_row(label, *(str(counts.get(s, 0)) for s in statuses))
    state.out.print(table)
    targets = Table(title="按对象 by target", title_justify="left")
    targets.add_column("对象 target")
    for s in statuses:
        targets.add_column(s, justify="right")
    for tid, counts in sorted(by_target.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:15]:
        targets.add_row(campaign.targets[tid].name, *(str(counts.get(s, 0)) for s in statuses))
    state.out.print(targets)
    theme_table = Table(title="按主题 by theme", title_justify="left")
    theme_table.add_column("主题 theme")
    theme_table.add_column("投递 deliveries", justify="right")
    for theme, n in themes.most_common():
        name = (
            f"{campaign.config.themes[theme].name} ({theme})"
            if theme in campaign.config.themes
            else "固定模板 fixed template"
        )
        theme_table.add_row(name, str(n))
    state.out.print(theme_table)
    where = "outbox files" if not live_channels else "log"
    state.out.print(
        f"虚拟时间用时 {elapsed:.1f}s real time for {last - first + dt.timedelta(days=1)} of virtual time; {where}: {folder}"
    )


# --- send-now ------------------------------------------------------------------------------------


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=VALUE; got {pair!r}", param_hint="--var")
        out[name] = value
    return out


@cli.command("send-now")
@click.option("--rule", "rule_id", help="按规则发送 send this rule's message now.")
@click.option("--template", help="按模板发送 send this template (e.g. alert) now.")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    help="渠道 channel(s) (required with --template; default with --rule: the rule's).",
)
@click.option("--tag", multiple=True, help="带此标签的对象 targets with this tag.")
@click.option("--target", "ids", multiple=True, help="指定对象 these targets.")
@click.option("--under", multiple=True, help="此对象下的全部 everything under this target.")
@click.option(
    "--var",
    "variables",
    multiple=True,
    help="模板变量 template variable NAME=VALUE (e.g. alert_text=…).",
)
@click.option("--yes", is_flag=True, help="不再确认 do not ask for confirmation.")
@DB_OPTION
@STATE_OPTION
@pass_state
def send_now(
    state: State,
    rule_id: str | None,
    template: str | None,
    channels: tuple[str, ...],
    tag: tuple[str, ...],
    ids: tuple[str, ...],
    under: tuple[str, ...],
    variables: tuple[str, ...],
    yes: bool,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """立即发送 send one rule or one template to a target selection at once (after confirmation)."""
    campaign, now = load(state, None)
    if bool(rule_id) == bool(template):
        raise click.UsageError("give exactly one of --rule or --template")
    base: Rule | None = None
    if rule_id:
        known = [r.id for r in campaign.rules]
        if rule_id not in known:
            hint = did_you_mean(rule_id, known)
            raise click.BadParameter(
                f"unknown rule {rule_id!r}" + (f" ({hint})" if hint else ""), param_hint="--rule"
            )
        base = campaign.rule(rule_id).rule
    chosen_channels = list(channels) or (list(base.channels) if base else [])
    if not chosen_channels:
        raise click.UsageError("--channel is required with --template")
    for cid in chosen_channels:
        if cid not in campaign.channels:
            hint = did_you_mean(cid, campaign.channels)
            raise click.BadParameter(
                f"unknown channel {cid!r}" + (f" ({hint})" if hint else ""), param_hint="--channel"
            )
    if tag or ids or under:
        selector = Selector(tags=list(tag), ids=list(ids), under=list(under))
    elif base:
        selector = base.targets
    else:
        raise click.UsageError("choose targets with --tag, --target or --under")
    for name, values, known in (
        ("--tag", tag, campaign.targets.tags),
        ("--target", ids, campaign.targets.nodes),
        ("--under", under, campaign.targets.nodes),
    ):
        for v in values:
            if v not in known:
                hint = did_you_mean(v, known)
                raise click.BadParameter(
                    f"unknown {v!r}" + (f" ({hint})" if hint else ""), param_hint=name
                )
    targets = campaign.targets.select(**selector.model_dump())
    if not targets:
        raise click.UsageError("选择不到任何对象 the selection matches no target")
    label = rule_id or template or ""
    adhoc = AdHoc(
        label,
        tuple(chosen_channels),
        targets,
        rule=rule_id,
        template=template,
        vars=parse_vars(variables),
    )
    spec = adhoc.spec(campaign, now)
    occurrence = adhoc.occurrence(now)
    folder = state_dir_for(state.config, state_dir)
    store, key = open_log(db, folder)
    clock = SystemClock()
    dispatcher = Dispatcher(campaign, store, clock=clock, hash_key=key, state_dir=folder)
    try:
        pairs = dispatcher.prepare(occurrence, spec, adhoc.vars)
        if not pairs:
            raise click.UsageError(
                "没有可发送的内容 nothing to send: no template for these channels and targets"
            )
        state.out.rule(f"立即发送 send-now · {label} · {occurrence.at:%Y-%m-%d %H:%M}")
        problems: list[str] = []
        shown: set[tuple[str, str]] = set()
        for d, _ in pairs:
            if (d.channel_id, d.message.template) in shown:
                continue
            shown.add((d.channel_id, d.message.template))
            state.out.print(
                f"[bold]{escape(d.channel_id)}[/bold] · {d.message.template} · {len(d.message.text)} 字 chars"
            )
            for line in d.message.text.splitlines():
                state.out.print(f"  │ {line}", markup=False)
            channel_spec = campaign.channels[d.channel_id]
            if channel_spec.enabled:
                problems += channel_spec.message_problems(
                    dispatcher.channel(d.channel_id), d.message
                )
        local = now.astimezone(campaign.tz).time()
        for cid, n in Counter(d.channel_id for d, _ in pairs).items():
            channel_spec = campaign.channels[cid]
            quiet = channel_spec.capabilities.quiet_hours
            note = ""
            if not channel_spec.enabled:
                note = f" [yellow](停用 disabled: {channel_spec.disabled_reason}; logged as skipped)[/yellow]"
            elif quiet is not None and quiet.contains(local):
                note = f" [yellow](免打扰时段 quiet hours {quiet}: held until {quiet.end:%H:%M}, sent by `broadcaster run`)[/yellow]"
            count = len({d.recipient.target_id for d, _ in pairs if d.channel_id == cid})
            state.out.print(f"{cid}: {count} 个对象 targets, {n} 次投递 deliveries{note}")
        if problems:
            raise click.UsageError(
                "消息不能发送 the message cannot be sent: " + "; ".join(dict.fromkeys(problems))
            )
        if not yes and not click.confirm("确认发送? send now?", default=False):
            raise AbortedError("已取消 cancelled; nothing was sent")
        report = dispatcher.fire(
            occurrence, rule=spec, extra_vars=adhoc.vars, fired_note=adhoc.note()
        )
    finally:
        dispatcher.close()
        store.close()
    counts = ", ".join(f"{ch} {status}×{n}" for (ch, status), n in sorted(report.counts.items()))
    already = (
        ""
        if report.first_time
        else " (此分钟已发送过，未重复发送 already sent this minute: nothing sent twice)"
    )
    state.out.print(f"完成 done: {counts or '—'}{already}")


# --- log -----------------------------------------------------------------------------------------


@cli.command("log")
@click.option("--from", "from_", metavar="DATE", help="起始日期 first day.")
@click.option("--to", metavar="DATE", help="结束日期 last day, inclusive.")
@click.option("--rule")
@click.option("--channel")
@click.option("--target")
@click.option("--status", type=click.Choice([s.value for s in Status]))
@click.option(
    "--phone",
    help="按号码查询 was this number reached? (一案三查; the number is hashed, never stored)",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--limit", type=int, default=50, show_default=True, help="表格最多行数 table rows at most."
)
@DB_OPTION
@STATE_OPTION
@pass_state
def log_command(
    state: State,
    from_: str | None,
    to: str | None,
    rule: str | None,
    channel: str | None,
    target: str | None,
    status: str | None,
    phone: str | None,
    fmt: str,
    limit: int,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """查询投递日志 the delivery log: coverage per send (targeted, accepted, delivered) and deliveries."""

    tz = ZoneInfo("Asia/Shanghai")
    if state.config.exists():  # only the zone: an auditor can query even when the config is broken
        tz = campaign_zone(state.config)
    first = parse_date(from_, "--from")
    last = parse_date(to, "--to")
    since = dt.datetime.combine(first, dt.time(), tzinfo=tz) if first else None
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz) if last else None
    folder = state_dir_for(state.config, state_dir)
    store, _ = open_log(db, folder)
    try:
        recipient_hash = None
        if phone:
            number = parse_phone(phone)
            if number is None:
                raise click.BadParameter(
                    "not a mainland mobile or landline number", param_hint="--phone"
                )
            recipient_hash = store.recipient_hash(number)
        filters = {
            "since": since,
            "until": until,
            "rule": rule,
            "channel": channel,
            "target": target,
        }
        rows = store.deliveries(
            **filters, status=Status(status) if status else None, recipient_hash=recipient_hash
        )
        coverage = [] if phone else store.coverage(**filters)
    finally:
        store.close()
    if fmt in ("csv", "json"):
        fields = (
            "scheduled_at",
            "occurrence_id",
            "rule_id",
            "channel_id",
            "target_id",
            "recipient_display",
            "status",
            "status_at",
            "error_class",
            "reason",
            "provider_id",
            "template",
            "template_sha",
            "text_sha256",
            "key",
        )
        records = [{f: _plain(getattr(r, f)) for f in fields} for r in rows]
        if fmt == "json":
            sys.stdout.write(
                json.dumps(
                    {
                        "deliveries": records,
                        "coverage": [
                            {k: _plain(v) for k, v in dataclasses.asdict(c).items()}
                            for c in coverage
                        ],
                    },
                    ensure_ascii=False,
                    indent=1,
                )
                + "\n"
            )
        else:
            writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            for record in records:
                writer.writerow({k: _csv_safe(v) for k, v in record.items()})
        return
    if coverage:
        table = Table(title="每次推送覆盖情况 coverage per send", title_justify="left")
        for column in (
            "时间 time",
            "规则 rule",
            "渠道 channel",
            "目标 targeted",
            "已受理 accepted",
            "已送达 delivered",
            "失败 failed",
            "未知 unknown",
            "跳过 skipped",
            "受理率 rate",
        ):
            table.add_column(column, justify="right" if column[0] in "目已失未跳受" else "left")
        for c in coverage[-limit:]:
            rate = f"{100 * c.accepted / c.targeted:.0f}%" if c.targeted else "—"
            table.add_row(
                f"{c.scheduled_at.astimezone(tz):%m-%d %H:%M}",
                c.rule_id,
                c.channel_id,
                str(c.targeted),
                str(c.accepted),
                str(c.delivered),
                str(c.failed),
                str(c.unknown),
                str(c.skipped),
                rate,
            )
        state.out.print(table)
    table = Table(
        title=("号码查询 lookup by number: " + mask_phone(parse_phone(phone) or phone))
        if phone
        else "投递记录 deliveries",
        title_justify="left",
    )
    for column in (
        "计划时间 scheduled",
        "规则 rule",
        "渠道 channel",
        "对象 target",
        "接收方 recipient",
        "状态 status",
        "原因 reason",
        "模板 template",
    ):
        table.add_column(column)
    for r in rows[-limit:]:
        table.add_row(
            f"{r.scheduled_at.astimezone(tz):%m-%d %H:%M}",
            r.rule_id,
            r.channel_id,
            r.target_id,
            r.recipient_display,
            r.status.value,
            (r.reason or "")[:50],
            r.template,
        )
    state.out.print(table)
    state.out.print(
        f"共 {len(rows)} 条 {len(rows)} deliveries"
        + (f"; showing the last {limit}" if len(rows) > limit else "")
    )


def campaign_zone(config: Path) -> ZoneInfo:
    """The campaign's time zone, read without validating the whole config."""
    from ..config.source import load_document

    try:
        doc, _ = load_document(config)
        return ZoneInfo(str(doc.data.get("campaign", {}).get("timezone", "Asia/Shanghai")))
    except Exception:
        return ZoneInfo("Asia/Shanghai")


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Status) or hasattr(value, "value"):
        return value.value
    return value


def _csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
