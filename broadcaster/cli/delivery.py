"""Delivery commands: channels, simulate, send-now (run and log have modules of their own).

The engine and the log are imported inside the commands: `plan` and `validate` load
this module too, and must not import requests or SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from broadcaster.cli import State, cli, parse_date
from broadcaster.cli.bilingual import confirm
from broadcaster.cli.campaign import NOW_OPTION, load_app, pass_state, print_warnings
from broadcaster.cli.labels import theme_label
from broadcaster.cli.output import fit_table
from broadcaster.engine.app import App, key_warnings, state_dir_for
from broadcaster.engine.registry import Registry
from broadcaster.model.adhoc import AdHoc
from broadcaster.model.config.explain import did_you_mean
from broadcaster.model.config.schema import Rule, Selector
from broadcaster.model.plan import Planner
from broadcaster.vocab import UNFINISHED, Status

if TYPE_CHECKING:
    from broadcaster.channel import Channel
    from broadcaster.engine.channels import ChannelProfile

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
    profiles: Mapping[str, ChannelProfile], opener: Callable[[ChannelProfile], Channel]
) -> dict[str, tuple[bool, str]]:
    """(ready, reason) per configured channel: disabled by config, or the plugin's own check()."""
    out: dict[str, tuple[bool, str]] = {}
    for profile in profiles.values():
        if not profile.enabled:
            out[profile.id] = (False, profile.disabled_reason or "disabled")
            continue
        try:
            problem = opener(profile).check()
        except Exception as exc:
            problem = f"检查失败 check failed: {exc!r}"
        out[profile.id] = (problem is None, problem or "")
    return out


def print_channel_table(
    state: State, profiles: Mapping[str, ChannelProfile], checks: dict[str, tuple[bool, str]]
) -> None:
    table = Table(title="渠道 channels", title_justify="left")
    for column in ("渠道 channel", "类型 type", "消息 kind", "状态 status", "原因 reason"):
        table.add_column(column)
    for profile in profiles.values():
        ready, reason = checks[profile.id]
        table.add_row(
            profile.id + (f" ({profile.name})" if profile.name else ""),
            profile.type,
            profile.kind.label,
            "[green]就绪 ready[/green]" if ready else "[yellow]停用 disabled[/yellow]",
            reason or "—",
        )
    state.out.print(fit_table(table, state.out.width, 4))  # environment variable names whole


def offline_checks(app: App) -> dict[str, tuple[bool, str]]:
    """Each channel's readiness, asked of an instance that cannot send."""
    now = dt.datetime.now(dt.UTC)
    return channel_checks(
        app.channels,
        lambda p: p.open_offline(app.campaign.base_dir, app.state_dir, now),
    )


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
    state.out.print(fit_table(table, state.out.width, 0))
    if not state.config.exists():
        return
    app, _ = load_app(state, now, state_dir)
    print_channel_table(state, app.channels, offline_checks(app))
    for warning in key_warnings(app.state_dir, None, app.environ):
        state.err.print(f"[yellow]警告 warning[/yellow] {warning}", highlight=False)


# --- simulate ------------------------------------------------------------------------------------

TARGET_ROWS = 15  # rows of simulate's by-target table (the busiest targets)


def outboxed(app: App, folder: Path) -> dict[str, ChannelProfile]:
    """The channels with every networked plugin replaced by an outbox of the same kind."""
    from broadcaster.channels.outbox import OutboxChannel, OutboxSettings

    out = {}
    for cid, profile in app.channels.items():
        settings = OutboxSettings(folder=str(folder / cid), fsync=False)
        caps = dataclasses.replace(
            profile.capabilities, batch_size=500, settle_seconds=0, reconciles=True
        )
        out[cid] = dataclasses.replace(
            profile, plugin=OutboxChannel, settings=settings, capabilities=caps
        )
    return out


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
    from broadcaster.engine.clock import VirtualClock
    from broadcaster.engine.dispatch import Dispatcher
    from broadcaster.log import DeliveryLog

    app, when = load_app(state, now, state_dir)
    campaign = app.campaign
    print_warnings(state, campaign)
    first = parse_date(from_, "--from") or when.date()
    last = parse_date(to, "--to") or first + dt.timedelta(days=days - 1)
    folder = state_dir_for(state.config, state_dir) / "simulate"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    profiles = app.channels if live_channels else outboxed(app, folder / "outbox")
    # a fixed key: the same period simulates to the same keys and files every time; kept
    # beside the simulated log so `broadcaster log --state-dir <folder>` can read it
    key = hashlib.sha256(f"simulate:{campaign.id}".encode()).hexdigest().encode()
    key_file = folder / "log.key"
    key_file.write_bytes(key + b"\n")
    key_file.chmod(0o600)
    store = DeliveryLog.open(f"sqlite:///{folder / 'simulate.sqlite3'}", hash_key=key)
    tz = campaign.tz
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    clock = VirtualClock(start)
    dispatcher = Dispatcher(
        campaign,
        profiles,
        store,
        clock=clock,
        hash_key=key,
        state_dir=folder,
        environ=app.environ,
        heartbeat=False,
    )
    started = time.perf_counter()
    occurrences = 0
    try:
        for occurrence in Planner(campaign).occurrences(start, end):
            clock.set(occurrence.at)
            dispatcher.fire(occurrence).wait()
            store.record_occurrence(
                campaign.id,
                occurrence.id,
                occurrence.rule_id,
                occurrence.at,
                "done",
                "",
                clock.now(),
            )
            occurrences += 1
        rows = store.deliveries(campaign=campaign.id, since=start, until=end)
    finally:
        dispatcher.close()
        store.close()
    elapsed = time.perf_counter() - started
    themes: Counter[str] = Counter()
    for item in Planner(campaign).items(start, end, render=False):
        themes[item.theme or "—"] += item.recipients
    by_channel: dict[str, Counter[Status]] = defaultdict(Counter)
    by_target: dict[str, Counter[Status]] = defaultdict(Counter)
    for row in rows:
        by_channel[row.channel_id][row.status] += 1
        by_target[row.target_id][row.status] += 1
    statuses = sorted({s for c in by_channel.values() for s in c}, key=list(Status).index)

    def status_table(title: str, first: str, rows: list[tuple[str, Counter[Status]]]) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column(first)
        for s in statuses:
            table.add_column(s.label, justify="right")
        for label, counts in rows:
            table.add_row(label, *(str(counts.get(s, 0)) for s in statuses))
        return fit_table(table, state.out.width, 0)

    channel_rows = []
    for cid, counts in sorted(by_channel.items()):
        profile = app.channels[cid]
        label = cid if profile.enabled else f"{cid} (停用 disabled: {profile.disabled_reason})"
        channel_rows.append((label, counts))
    title = f"模拟 simulated {first} … {last}: {occurrences} 次触发 occurrences, {len(rows)} 次投递 deliveries"
    state.out.print(status_table(title, "渠道 channel", channel_rows))
    busiest = sorted(by_target.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    target_rows = [(campaign.targets[tid].name, counts) for tid, counts in busiest[:TARGET_ROWS]]
    hidden = len(busiest) - len(target_rows)
    title = "按对象 by target" + (f" ({TARGET_ROWS}/{len(busiest)})" if hidden else "")
    state.out.print(status_table(title, "对象 target", target_rows))
    if hidden:
        state.out.print(
            f"  另有 {hidden} 个对象未显示 {hidden} more targets not shown"
            " (broadcaster log --target ID)"
        )
    theme_table = Table(title="按主题 by theme", title_justify="left")
    theme_table.add_column("主题 theme")
    theme_table.add_column("投递 deliveries", justify="right")
    for theme, n in themes.most_common():
        name = (
            theme_label(campaign, theme)
            if theme in campaign.config.themes
            else "固定模板 fixed template"
        )
        theme_table.add_row(name, str(n))
    state.out.print(fit_table(theme_table, state.out.width))
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


def _adhoc(
    app: App,
    rule_id: str | None,
    template: str | None,
    channels: tuple[str, ...],
    tag: tuple[str, ...],
    ids: tuple[str, ...],
    under: tuple[str, ...],
    variables: tuple[str, ...],
) -> AdHoc:
    """The one-off send the options describe, every name checked against the config."""
    campaign = app.campaign
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
    return AdHoc(
        rule_id or template or "",
        tuple(chosen_channels),
        targets,
        rule=rule_id,
        template=template,
        vars=parse_vars(variables),
    )


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
@click.option(
    "--new",
    "new_send",
    is_flag=True,
    help="另起一次发送 start a new send even if an earlier one of the same rule or template is unfinished.",
)
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
    new_send: bool,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """立即发送 send one rule or one template to a target selection at once (after confirmation).

    An unfinished earlier send of the same rule or template (the process stopped, a rate
    limit or quiet hours held it) is resumed instead of starting again; --new starts a new
    one. Exits 1 when deliveries failed.
    """
    from broadcaster.engine.clock import SystemClock

    app, now = load_app(state, None, state_dir)
    campaign = app.campaign
    adhoc = _adhoc(app, rule_id, template, channels, tag, ids, under, variables)
    store, key = app.open_log(db)
    dispatcher = app.dispatcher(store, key, clock=SystemClock())
    try:
        resumed = None if new_send else _unfinished(store, campaign.id, adhoc.rule_id, campaign.tz)
        if resumed is not None:
            adhoc, at, left = resumed
            state.out.print(
                f"[yellow]续发 resuming the unfinished send of {at:%m-%d %H:%M}: {left} 次投递未完成"
                f" {left} deliveries left[/yellow] (--new 另起一次 starts a new send)"
            )
            now = at
        spec = adhoc.spec(campaign, now)
        occurrence = adhoc.occurrence(now)
        prepared = list(dispatcher.preparer.prepare(occurrence, spec, adhoc.vars))
        if not prepared:
            raise click.UsageError(
                "没有可发送的内容 nothing to send: no template for these channels and targets"
            )
        _show(state, app, prepared, occurrence.at, adhoc.label, now)
        if not yes and not confirm("确认发送? send now?"):
            state.out.print("已取消 cancelled; nothing was sent")
            return
        handle = dispatcher.fire(
            occurrence, rule=spec, extra_vars=adhoc.vars, fired_note=adhoc.note()
        )
        handle.wait()
        store.record_occurrence(
            campaign.id,
            occurrence.id,
            occurrence.rule_id,
            occurrence.at,
            "done",
            "",
            dispatcher.clock.now(),
        )
        rows = store.deliveries(campaign=campaign.id, occurrence=occurrence.id)
    finally:
        dispatcher.close()
        store.close()
    counts = Counter(r.status for r in rows)
    shown = ", ".join(
        f"{s.label}×{n}" for s, n in sorted(counts.items(), key=lambda x: list(Status).index(x[0]))
    )
    again = (
        ""
        if handle.first_time or resumed is not None
        else " (此分钟已发送过，未重复发送 already sent this minute: nothing sent twice)"
    )
    state.out.print(f"完成 done: {len(rows)} 次投递 deliveries — {shown or '—'}{again}")
    waiting = sum(counts[s] for s in UNFINISHED)
    if waiting:
        state.out.print(
            f"[yellow]{waiting} 次投递待续发或对账 deliveries wait (quiet hours, limits) or are being"
            " reconciled: `broadcaster run` finishes them[/yellow]"
        )
    if counts[Status.UNRESOLVED]:
        state.out.print(
            f"[red]{counts[Status.UNRESOLVED]} 次投递待人工 deliveries need an operator:"
            " broadcaster log --status unresolved[/red]"
        )
    if counts[Status.FAILED] or counts[Status.UNRESOLVED]:
        raise click.exceptions.Exit(1)


def _unfinished(
    store: object, campaign: str, rule_id: str, tz: dt.tzinfo
) -> tuple[AdHoc, dt.datetime, int] | None:
    """The newest unfinished one-off send of this rule or template: (it, when, left)."""
    from broadcaster.log import DeliveryLog

    assert isinstance(store, DeliveryLog)
    for occurrence_id, left in store.open_sends(campaign, rule_id):
        adhoc = AdHoc.from_note(store.fired_reason(campaign, occurrence_id))
        if adhoc is None:
            continue
        when = dt.datetime.fromisoformat(occurrence_id.partition("@")[2]).replace(tzinfo=tz)
        return adhoc, when, left
    return None


def _show(
    state: State, app: App, prepared: list, at: dt.datetime, label: str, now: dt.datetime
) -> None:
    """Every distinct text, with the targets it goes to and how many deliveries."""
    campaign = app.campaign
    state.out.rule(f"立即发送 send-now · {label} · {at:%Y-%m-%d %H:%M}")
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for p in prepared:
        groups[(p.delivery.channel_id, p.delivery.message.text)].append(p)
    problems: list[str] = []
    offline: dict[str, Channel] = {}
    for (cid, text), items in groups.items():
        targets = list(dict.fromkeys(p.delivery.recipient.target_id for p in items))
        names = [campaign.targets[t].name for t in targets]
        shown = "、".join(names[:8]) + (
            f" 等 {len(names)} 个 and {len(names) - 8} more" if len(names) > 8 else ""
        )
        message = items[0].delivery.message
        state.out.print(
            f"[bold]{escape(cid)}[/bold] · {message.template} · {len(text)} 字 chars"
            f" · {len(items)} 次投递 deliveries → {escape(shown)}"
        )
        for line in text.splitlines():
            state.out.print(f"  │ {line}", markup=False)
        profile = app.channels[cid]
        if profile.enabled:
            if cid not in offline:
                offline[cid] = profile.open_offline(campaign.base_dir, app.state_dir, now)
            problems += profile.message_problems(offline[cid], message)
        problems += [p.problem for p in items if p.problem]
    local = now.astimezone(campaign.tz).time()
    for cid, n in Counter(p.delivery.channel_id for p in prepared).items():
        profile = app.channels[cid]
        quiet = profile.capabilities.quiet_hours
        note = ""
        if not profile.enabled:
            note = (
                f" [yellow](停用 disabled: {profile.disabled_reason}; logged as skipped)[/yellow]"
            )
        elif quiet is not None and quiet.contains(local):
            note = f" [yellow](免打扰时段 quiet hours {quiet}: held until {quiet.end:%H:%M}, sent by `broadcaster run`)[/yellow]"
        count = len(
            {p.delivery.recipient.target_id for p in prepared if p.delivery.channel_id == cid}
        )
        state.out.print(f"{cid}: {count} 个对象 targets, {n} 次投递 deliveries{note}")
    if problems:
        raise click.UsageError(
            "消息不能发送 the message cannot be sent: " + "; ".join(dict.fromkeys(problems))
        )
