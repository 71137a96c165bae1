"""Delivery commands: channels, simulate, send-now (run and log have modules of their own)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from pathlib import Path

import click
import requests
from rich.markup import escape
from rich.table import Table

from broadcaster.channel import Channel, ChannelContext
from broadcaster.cli import State, cli, parse_date
from broadcaster.cli.campaign import NOW_OPTION, load, pass_state, print_warnings
from broadcaster.engine.app import open_log, state_dir_for
from broadcaster.engine.clock import SystemClock, VirtualClock
from broadcaster.engine.dispatch import Dispatcher
from broadcaster.engine.registry import Registry
from broadcaster.errors import AbortedError
from broadcaster.log import DeliveryLog
from broadcaster.model.adhoc import AdHoc
from broadcaster.model.campaign import Campaign, ChannelSpec
from broadcaster.model.config.explain import did_you_mean
from broadcaster.model.config.schema import Rule, Selector
from broadcaster.model.plan import Planner

__all__ = [
    "DB_OPTION",
    "STATE_OPTION",
    "channel_checks",
    "channels_command",
    "print_channel_table",
    "send_now",
    "simulate",
]

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


# --- simulate ------------------------------------------------------------------------------------


def outboxed(campaign: Campaign, folder: Path) -> Campaign:
    """The campaign with every networked channel replaced by an outbox of the same kind."""
    from broadcaster.channels.outbox import OutboxChannel, OutboxSettings

    specs = {}
    for cid, spec in campaign.channels.items():
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

    def status_table(title: str, first: str, rows: list[tuple[str, Counter[str]]]) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column(first)
        for s in statuses:
            table.add_column(s, justify="right")
        for label, counts in rows:
            table.add_row(label, *(str(counts.get(s, 0)) for s in statuses))
        return table

    channel_rows = []
    for cid, counts in sorted(by_channel.items()):
        spec = campaign.channels[cid]
        label = cid if spec.enabled else f"{cid} (停用 disabled: {spec.disabled_reason})"
        channel_rows.append((label, counts))
    title = f"模拟 simulated {first} … {last}: {occurrences} 次触发 occurrences, {len(rows)} 次投递 deliveries"
    state.out.print(status_table(title, "渠道 channel", channel_rows))
    busiest = sorted(by_target.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:15]
    target_rows = [(campaign.targets[tid].name, counts) for tid, counts in busiest]
    state.out.print(status_table("按对象 by target", "对象 target", target_rows))
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
            raise click.BadParameter(
                f"变量格式错误 expected NAME=VALUE; got {pair!r}", param_hint="--var"
            )
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
        raise click.UsageError(
            "--rule 与 --template 只能给一个 give exactly one of --rule or --template"
        )
    base: Rule | None = None
    if rule_id:
        known = [r.id for r in campaign.rules]
        if rule_id not in known:
            hint = did_you_mean(rule_id, known)
            raise click.BadParameter(
                f"未知的规则 unknown rule {rule_id!r}" + (f" ({hint})" if hint else ""),
                param_hint="--rule",
            )
        base = campaign.rule(rule_id).rule
    chosen_channels = list(channels) or (list(base.channels) if base else [])
    if not chosen_channels:
        raise click.UsageError("使用 --template 时须指定渠道 --channel is required with --template")
    for cid in chosen_channels:
        if cid not in campaign.channels:
            hint = did_you_mean(cid, campaign.channels)
            raise click.BadParameter(
                f"未知的渠道 unknown channel {cid!r}" + (f" ({hint})" if hint else ""),
                param_hint="--channel",
            )
    if tag or ids or under:
        selector = Selector(tags=list(tag), ids=list(ids), under=list(under))
    elif base:
        selector = base.targets
    else:
        raise click.UsageError(
            "请用 --tag、--target 或 --under 选择对象 choose targets with --tag, --target or --under"
        )
    choices: tuple[tuple[str, tuple[str, ...], Collection[str]], ...] = (
        ("--tag", tag, campaign.targets.tags),
        ("--target", ids, campaign.targets.nodes),
        ("--under", under, campaign.targets.nodes),
    )
    for name, values, known_names in choices:
        for v in values:
            if v not in known_names:
                hint = did_you_mean(v, known_names)
                raise click.BadParameter(
                    f"未知 unknown {v!r}" + (f" ({hint})" if hint else ""), param_hint=name
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
