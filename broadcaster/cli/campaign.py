"""Campaign commands: validate, plan, preview, calendar."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from broadcaster.cli import State, cli, parse_date, parse_now
from broadcaster.cli.labels import occasion_label, theme_label, topic_label, weekday
from broadcaster.cli.labels import when as when_label
from broadcaster.cli.output import fit_table
from broadcaster.engine.app import App, key_warnings, state_dir_for
from broadcaster.engine.fanout import ANSWER_SECONDS, FanOut, FanOutPlanner
from broadcaster.errors import ConfigError
from broadcaster.model.calendar import (
    ChinaCalendar,
    lunar_dates_in_year,
    lunar_label,
    solar_term_date,
)
from broadcaster.model.campaign import Campaign
from broadcaster.model.config import load_campaign
from broadcaster.model.duties import DutyResult, check_duties
from broadcaster.model.plan import PlanItem, Planner
from broadcaster.recipients.store import RecipientStore
from broadcaster.sms import billing_of, sms_billing
from broadcaster.vocab import Addressing, MessageKind

__all__ = ["PLAN_FIELDS", "PlanRows", "calendar_group", "plan", "preview", "validate"]

pass_state = click.make_pass_decorator(State)
NOW_OPTION = click.option(
    "--now", help="当前时间 pretend it is this time (YYYY-MM-DD[THH:MM]); default: the clock."
)


def load(state: State, now: str | None) -> tuple[Campaign, dt.datetime]:
    """The campaign model as of `--now` (no channel plugin, no network, no database)."""
    tz = ZoneInfo("Asia/Shanghai")
    when = parse_now(now, tz)
    store = RecipientStore.in_folder(state_dir_for(state.config, None))
    campaign = load_campaign(state.config, today=when.date(), recipients=store)
    return campaign, when.astimezone(campaign.tz)


def load_app(
    state: State, now: str | None, state_dir: Path | None = None
) -> tuple[App, dt.datetime]:
    """The campaign with its channels checked against their plugins, as of `--now`."""
    tz = ZoneInfo("Asia/Shanghai")
    when = parse_now(now, tz)
    folder = state_dir_for(state.config, state_dir)
    app = App.load(state.config, now=when, state_dir=folder)
    return app, when.astimezone(app.campaign.tz)


def print_warnings(state: State, campaign: Campaign) -> None:
    for w in campaign.warnings:
        state.err.print(f"[yellow]警告 warning[/yellow] {w}", markup=True, highlight=False)


def campaign_range(campaign: Campaign, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The span duties are checked over: the campaign, an open end capped a year from now."""
    start, end = campaign.span()
    start = start or now.date()
    end = end or max(start, now.date()) + dt.timedelta(days=365)
    return start, end


def print_duties(state: State, results: list[DutyResult]) -> bool:
    """Summarise duty results; True when every duty is met."""
    if not results:
        return True
    by_duty: dict[str, list[DutyResult]] = {}
    for r in results:
        by_duty.setdefault(r.duty.id, []).append(r)
    table = Table(title="工作要求检查 duty check", title_justify="left")
    for column in ("要求 duty", "每 per", "至少 at least", "对象 targets", "达标 met"):
        table.add_column(column)
    all_met = True
    shortfalls: list[str] = []
    for duty_id, rows in by_duty.items():
        duty = rows[0].duty
        short = [r for r in rows if not r.met]
        all_met = all_met and not short
        for r in short:
            periods = ", ".join(f"{label}={n}" for label, n in r.short[:12]) + (
                f" … (+{len(r.short) - 12})" if len(r.short) > 12 else ""
            )
            shortfalls.append(f"  {duty_id} · {r.target_id}: {periods}")
        per = {"week": "周 week", "month": "月 month"}[duty.per]
        table.add_row(
            f"{duty.name} ({duty_id})",
            per,
            str(duty.at_least),
            str(len(rows)),
            "[green]是 yes[/green]" if not short else f"[red]否 no: {len(short)}[/red]",
        )
    state.out.print(table)
    if shortfalls:
        state.out.print("不足的周期 periods short (count planned):")
        for line in shortfalls:
            state.out.print(line, markup=False)
    return all_met


@cli.command()
@NOW_OPTION
@click.option("--strict", is_flag=True, help="警告也算失败 fail on warnings too.")
@pass_state
def validate(state: State, now: str | None, strict: bool) -> None:
    """检查配置、模板、日历和工作要求 check the config, templates, calendar and duties.

    Prints every problem at once, with file, line and key; exits 1 on any error and when
    this year's official holiday file is missing. Next year's missing file is a warning.
    """
    app, when = load_app(state, now)
    campaign = app.campaign
    print_warnings(state, campaign)
    for warning in key_warnings(app.state_dir, None, app.environ):
        state.err.print(f"[yellow]警告 warning[/yellow] {warning}", highlight=False)
    this_year = when.year not in campaign.calendar.years
    if this_year:
        state.out.print(
            f"[red]✘ 校验未通过 validate fails: no official holiday file for {when.year}, the"
            " current year (see the warning above)[/red]"
        )
        raise click.exceptions.Exit(1)
    enabled = [c for c in app.channels.values() if c.enabled]
    state.out.print(
        f"[green]✔[/green] {campaign.path.name}: 配置有效 valid — {len(campaign.rules)} rules, "
        f"{len(campaign.targets.nodes)} targets, {len(enabled)}/{len(app.channels)} channels enabled"
    )
    for c in app.channels.values():
        if not c.enabled:
            state.out.print(
                f"  渠道停用 channel [bold]{c.id}[/bold] ({c.type}) disabled: {c.disabled_reason}"
            )
    if campaign.calendar_stale:
        state.out.print(
            Panel(
                f"明年的节假日安排还未收录，{when.year + 1} 年依赖工作日的推送按法定假日估算并标记为"
                f"“估”。国务院办公厅公布通知后，把 {when.year + 1}.yaml 放进节假日覆盖目录即可。\n"
                f"Next year's official holiday file is not in yet: dates in {when.year + 1} that"
                " depend on working days are estimated and marked so. Add the year's file to the"
                " override folder once the State Council publishes it (README, First steps).",
                title="⚠ 明年节假日 next year's holidays",
                border_style="yellow",
            )
        )
    from broadcaster.cli.reports import approval_refusals, print_refusals

    refused = approval_refusals(app, offline=True)  # the ledger file: no database here
    if refused:
        print_refusals(state, refused)
        raise click.exceptions.Exit(1)
    start, end = campaign_range(campaign, when)
    results = check_duties(campaign, start, end)
    met = print_duties(state, results)
    if not met:
        state.err.print(
            "[yellow]警告 warning[/yellow] 部分对象未达到工作要求 some targets fall short of a duty (see above)"
        )
    if strict and (campaign.warnings or not met):
        raise click.exceptions.Exit(1)


# --- plan ----------------------------------------------------------------------------------------

PLAN_FIELDS = (
    "time",
    "rule",
    "channel",
    "kind",
    "target",
    "theme",
    "occasion",
    "topic",
    "template",
    "length",
    "billed",
    "recipients",
    "estimated",
    "channel_enabled",
    "occurrence",
)


class PlanRows:
    """Plan items as rows of PLAN_FIELDS; per-occurrence and per-channel parts are formatted once."""

    def __init__(self, campaign: Campaign, planner: Planner | None = None):
        self.campaign = campaign
        self.planner = planner
        self._occurrence: object = None
        self._time = ""
        self._channels = {
            cid: (c.kind.value, c.ready(os.environ)) for cid, c in campaign.channels.items()
        }

    def row(self, item: PlanItem) -> tuple[object, ...]:
        occurrence = item.occurrence
        if occurrence is not self._occurrence:
            self._occurrence = occurrence
            self._time = occurrence.at.isoformat(timespec="minutes")
        kind, enabled = self._channels[item.channel_id]
        return (
            self._time,
            occurrence.rule_id,
            item.channel_id,
            kind,
            item.target_id,
            item.theme or "",
            item.occasion or "",
            item.topic or "",
            item.template or "",
            item.length if item.length is not None else "",
            self.billed(item),
            item.recipients,
            item.estimated,
            enabled,
            occurrence.id,
        )

    def billed(self, item: PlanItem) -> int | str:
        """Billed SMS per message for an SMS channel's rendered item; "" otherwise."""
        spec = self.campaign.channels[item.channel_id]
        if spec.kind is not MessageKind.SMS or item.length is None or item.template is None:
            return ""
        sign, rule = sms_billing(spec.settings)
        if rule == "mainland":  # every character counts 1: the length is enough
            return billing_of("x" * item.length, sign).parts
        if self.planner is None:
            return ""
        text = self.planner.text(
            item.template,
            item.occurrence,
            item.channel_id,
            item.target_id,
            item.theme,
            item.occasion,
            item.topic,
        )
        return billing_of(text, sign, rule).parts

    def as_dict(self, item: PlanItem) -> dict[str, object]:
        return dict(zip(PLAN_FIELDS, self.row(item), strict=True))


def filtered(
    items: Iterable[PlanItem],
    rule: tuple[str, ...],
    channel: tuple[str, ...],
    target: tuple[str, ...],
) -> Iterator[PlanItem]:
    for item in items:
        if rule and item.occurrence.rule_id not in rule:
            continue
        if channel and item.channel_id not in channel:
            continue
        if target and item.target_id not in target:
            continue
        yield item


@cli.command()
@click.option("--from", "from_", metavar="DATE", help="起始日期 first day (default: today).")
@click.option(
    "--to", metavar="DATE", help="结束日期 last day, inclusive (default: 13 days after --from)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "jsonl"]),
    default="table",
    show_default=True,
)
@click.option("--rule", multiple=True, help="只看这些规则 only these rules.")
@click.option("--channel", multiple=True, help="只看这些渠道 only these channels.")
@click.option("--target", multiple=True, help="只看这些对象 only these targets.")
@click.option(
    "--limit",
    type=int,
    default=300,
    show_default=True,
    help="表格最多行数 table rows at most (csv/json: all).",
)
@click.option(
    "--no-render", is_flag=True, help="不渲染正文 skip rendering: no length column, faster."
)
@NOW_OPTION
@pass_state
def plan(
    state: State,
    from_: str | None,
    to: str | None,
    fmt: str,
    rule: tuple[str, ...],
    channel: tuple[str, ...],
    target: tuple[str, ...],
    limit: int,
    no_render: bool,
    now: str | None,
) -> None:
    """列出每次推送 list every occurrence: time, rule, channel, target, theme, template, length.

    Deterministic for a given config and --now; sends nothing, touches no network or database.
    """
    campaign, when = load(state, now)
    first = parse_date(from_, "--from") or when.date()
    last = parse_date(to, "--to") or first + dt.timedelta(days=13)
    if last < first:
        raise click.BadParameter(
            f"结束早于开始 --to {last} is before --from {first}", param_hint="--to"
        )
    for name, values, known in (
        ("--rule", rule, [r.id for r in campaign.rules]),
        ("--channel", channel, list(campaign.channels)),
        ("--target", target, list(campaign.targets.nodes)),
    ):
        unknown = [v for v in values if v not in known]
        if unknown:
            raise click.BadParameter(
                f"未知 unknown {', '.join(unknown)}; expected one of {', '.join(known[:20])}",
                param_hint=name,
            )
    tz = campaign.tz
    planner = Planner(campaign)
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    items = filtered(planner.items(start, end, render=not no_render), rule, channel, target)
    rows = PlanRows(campaign, planner)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(PLAN_FIELDS)
        writer.writerows(rows.row(item) for item in items)
        return
    if fmt == "jsonl":
        for item in items:
            sys.stdout.write(json.dumps(rows.as_dict(item), ensure_ascii=False) + "\n")
        return
    if fmt == "json":
        sys.stdout.write("[")
        for i, item in enumerate(items):
            sys.stdout.write(
                ("," if i else "") + "\n  " + json.dumps(rows.as_dict(item), ensure_ascii=False)
            )
        sys.stdout.write("\n]\n")
        return
    print_warnings(state, campaign)
    table = Table(
        title=f"推送计划 plan {first} … {last} ({campaign.config.campaign.name})",
        title_justify="left",
    )
    relevant = (
        set(channel)
        if channel
        else {c for r in campaign.rules if not rule or r.id in rule for c in r.rule.channels}
    )
    show_billed = any(
        campaign.channels[c].kind is MessageKind.SMS for c in relevant if c in campaign.channels
    )
    for column in (
        "时间 time",
        "规则 rule",
        "渠道 channel",
        "对象 target",
        "主题 theme",
        "模板 template",
        "字数 len",
        *(("计费 billed",) if show_billed else ()),
        "人数 n",
    ):
        table.add_column(column, no_wrap=column == "时间 time")
    shown = total = 0
    deliveries = 0
    fan = fanout_planner(state, campaign, planner, when)
    fanned: set[tuple[dt.datetime, str]] = set()  # (time, channel) shown, for the fan-out lines
    for item in items:
        total += 1
        deliveries += item.recipients
        if fan is not None and fan.wanted(item.channel_id):
            fanned.add((item.occurrence.at, item.channel_id))
        if shown >= limit:
            continue
        shown += 1
        channel_spec = campaign.channels[item.channel_id]
        flags = (" 估" if item.estimated else "") + (
            "" if channel_spec.ready(os.environ) else " 停"
        )
        theme = theme_label(campaign, item.theme) if item.theme else ""
        if item.topic:
            topic = campaign.renderer.topics.get(item.topic)
            theme += f" / {topic.name if topic is not None else item.topic}"
        table.add_row(
            f"{when_label(item.occurrence.at)}{flags}",
            item.occurrence.rule_id,
            item.channel_id,
            campaign.targets[item.target_id].name,
            theme,
            item.template or "[red]无模板 none[/red]",
            "" if item.length is None else str(item.length),
            *((str(rows.billed(item)),) if show_billed else ()),
            str(item.recipients),
        )
    state.out.print(fit_table(table, state.out.width, 1, 2))
    more = f"; {total - shown} more not shown (use --format csv)" if total > shown else ""
    state.out.print(
        f"共 {total} 项, {deliveries} 次投递 total {total} items, {deliveries} deliveries{more}.  估 = estimated calendar, 停 = channel disabled"
    )
    if fan is not None and fanned:
        times = {at for at, _ in fanned}
        for item in planner.items(start, end, render=False):  # every rule shares the bots
            if item.occurrence.at in times:
                fan.add(item)
        print_fanouts(state, [f for f in fan.results() if (f.at, f.channel_id) in fanned])
    if not (rule or channel or target):
        print_duties(state, check_duties(campaign, first, last, planner))
        if campaign.screens:
            print_screen_bound(state, campaign, planner, start, end)


def print_screen_bound(
    state: State, campaign: Campaign, planner: Planner, start: dt.datetime, end: dt.datetime
) -> None:
    """LED screens: the gap between anti-fraud items within each screen's bound, proved
    over the period, or the screens and items where it is not."""
    from broadcaster.model.led_plan import prove_screens

    found = prove_screens(planner, planner.items(start, end, render=False), start, end)
    bad = {sid: p for sid, p in found.items() if p}
    if not bad:
        bounds = sorted({f"{s.max_gap:g}" for s in campaign.screens.values()})
        state.out.print(
            f"显示屏轮播 LED rotation: {len(found)} 块屏全部满足 every screen keeps the gap"
            f" between anti-fraud items within its bound ({'/'.join(bounds)} s) over the period"
        )
        return
    for problems in bad.values():
        for problem in problems:
            state.out.print(f"[red]显示屏轮播 LED rotation[/red] {problem}", highlight=False)


class PlanEnviron(Mapping[str, str]):
    """The environment as `plan` reads it: every variable set (a placeholder where unset),
    so channels are sized without their secrets."""

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "plan-placeholder")

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def fanout_planner(
    state: State, campaign: Campaign, planner: Planner, when: dt.datetime
) -> FanOutPlanner | None:
    """A collector of fan-out times when some channel sends to rate-limited bots, else None.

    Only a campaign whose targets have addresses on group-message channels loads plugins
    (for their limits and how they split a message); `plan` still opens no connection.
    """
    addressed = {cid for node in campaign.targets.nodes.values() for cid, _ in node.address}
    bots = {
        cid: spec
        for cid, spec in campaign.channels.items()
        if cid in addressed
        and spec.kind is MessageKind.BOT
        and spec.addressing is Addressing.TARGET
    }
    if not bots:
        return None
    from broadcaster.engine.channels import resolve_channels
    from broadcaster.engine.registry import Registry

    folder = state_dir_for(state.config, None)
    only_bots = dataclasses.replace(campaign, channels=bots)
    profiles, _ = resolve_channels(
        only_bots, registry=Registry(), environ=PlanEnviron(), state_dir=folder, now=when
    )
    fan = FanOutPlanner(campaign, profiles, planner, {})
    if not fan.profiles:
        return None
    fan.channels = {
        cid: p.open_offline(campaign.base_dir, folder, when) for cid, p in fan.profiles.items()
    }
    return fan


def print_fanouts(state: State, fanouts: list[FanOut]) -> None:
    """One line per firing time and bot channel: groups, posts (every rule firing then
    counted: they share the bots) and the time to the last post."""
    if not fanouts:
        return
    state.out.print(
        f"群发耗时 fan-out time under each bot's limit (假设每次应答 {ANSWER_SECONDS:g} 秒"
        f" assuming {ANSWER_SECONDS:g} s an answer):",
        highlight=False,
    )
    for f in fanouts:
        state.out.print(
            f"  {when_label(f.at)}  {f.channel_id}: {f.groups} 群 groups, {f.posts} 条 posts"
            f" (最忙的机器人 busiest bot {f.busiest}, 限速 limit {f.limit}): 约 about {f.label()}",
            highlight=False,
            markup=False,
        )


# --- preview -------------------------------------------------------------------------------------


@cli.command()
@click.argument("rule_id", metavar="RULE")
@click.option("--date", "date_", metavar="DATE", help="日期 the day (default: today).")
@click.option(
    "--time", "time_", metavar="HH:MM", help="当天某一次 one firing of that day (default: all)."
)
@click.option("--target", multiple=True, help="只看这些对象 only these targets.")
@NOW_OPTION
@pass_state
def preview(
    state: State,
    rule_id: str,
    date_: str | None,
    time_: str | None,
    target: tuple[str, ...],
    now: str | None,
) -> None:
    """预览规则在某天各渠道将发送的内容 show exactly what each channel would send."""
    app, when = load_app(state, now)
    campaign = app.campaign
    known = [r.id for r in campaign.rules]
    if rule_id not in known:
        from broadcaster.model.config.explain import did_you_mean

        hint = did_you_mean(rule_id, known)
        raise click.BadParameter(
            f"未知的规则 unknown rule {rule_id!r}; expected one of {', '.join(known)}"
            + (f" ({hint})" if hint else ""),
            param_hint="RULE",
        )
    day = parse_date(date_, "--date") or when.date()
    planner = Planner(campaign)
    spec = campaign.rule(rule_id)
    tz = campaign.tz
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    occurrences = [
        o
        for o in planner.rule_occurrences(spec, start, start + dt.timedelta(days=1))
        if time_ is None or f"{o.at:%H:%M}" == time_
    ]
    if not occurrences:
        upcoming = next(planner.rule_occurrences(spec, start, start + dt.timedelta(days=400)), None)
        after = (
            f"; next on {upcoming.at:%Y-%m-%d %H:%M}" if upcoming else "; none in the next 400 days"
        )
        state.out.print(
            f"规则 {rule_id} 在 {day} 不推送 rule {rule_id} does not fire on {day}{after}"
        )
        raise click.exceptions.Exit(1)
    for occurrence in occurrences:
        state.out.rule(
            f"{when_label(occurrence.at, '%Y-%m-%d')}  {rule_id}"
            + ("  (估 estimated calendar)" if occurrence.estimated else "")
        )
        for item in planner.expand(occurrence):
            if target and item.target_id not in target:
                continue
            channel = app.channels[item.channel_id]
            node = campaign.targets[item.target_id]
            status = (
                ""
                if channel.enabled
                else f"  [yellow]停用 disabled: {channel.disabled_reason}[/yellow]"
            )
            state.out.print(
                f"[bold]{escape(item.channel_id)}[/bold] ({channel.kind.label}) → {escape(node.name)} \\[{escape(item.target_id)}], "
                f"{item.recipients} 人/个 recipient(s){status}"
            )
            if item.template is None:
                state.out.print("  [red]无模板 no template[/red]")
                continue
            text = planner.text(
                item.template,
                occurrence,
                item.channel_id,
                item.target_id,
                item.theme,
                item.occasion,
                item.topic,
            )
            meta = (
                f"  主题 theme {theme_label(campaign, item.theme)}"
                + (
                    f" · 时节 occasion {occasion_label(campaign, item.occasion)}"
                    if item.occasion
                    else ""
                )
                + (f" · 类型 topic {topic_label(campaign, item.topic)}" if item.topic else "")
            )
            bill = ""
            if channel.kind is MessageKind.SMS:
                sign, rule = sms_billing(channel.spec.settings)
                found = billing_of(text, sign, rule)
                bill = (
                    f" · 计费 {found.length} 字 chars with 【{sign.strip('【】')}】"
                    if sign
                    else f" · 计费 {found.length} 字 chars"
                ) + f" → {found.parts} 条 billed SMS ({found.encoding})"
            state.out.print(
                f"{meta} · 模板 {item.template} · {len(text)} 字 chars{bill}",
                style="dim",
                markup=False,
            )
            for line in text.splitlines() or [""]:
                state.out.print(f"  │ {line}", markup=False)
        state.out.print()


# --- calendar ------------------------------------------------------------------------------------


@cli.group("calendar")
def calendar_group() -> None:
    """节假日、调休、农历节日 official holidays, make-up working days, lunar festivals."""


LUNAR_FESTIVALS = (
    ("春节", 1, 1),
    ("元宵节", 1, 15),
    ("端午节", 5, 5),
    ("七夕", 7, 7),
    ("中秋节", 8, 15),
    ("重阳节", 9, 9),
    ("腊八节", 12, 8),
    ("小年(北)", 12, 23),
)


def _try_load(state: State, today: dt.date) -> Campaign | None:
    if not state.config.exists():
        return None
    try:
        return load_campaign(state.config, today=today)
    except ConfigError as exc:
        state.err.print(
            f"[yellow]配置无效，只显示官方日历 config invalid, showing the official calendar only[/yellow] ({len(exc.issues)} errors; run validate)"
        )
        return None


@calendar_group.command("show")
@click.argument("year", type=click.IntRange(1901, 2100))
@NOW_OPTION
@pass_state
def calendar_show(state: State, year: int, now: str | None) -> None:
    """一年的节假日、调休、农历节日、阶段与时节 the year as a table."""
    when = parse_now(now, ZoneInfo("Asia/Shanghai"))
    campaign = _try_load(state, when.date())
    cal = campaign.calendar if campaign else ChinaCalendar.load(None)
    rows: list[tuple[dt.date, dt.date | None, str, str]] = []
    known = cal.is_known(year)
    for p in cal.holidays(year):
        rows.append(
            (
                p.start,
                p.end,
                "节假日 holiday" + ("(估 estimated)" if p.estimated else ""),
                f"{p.name} {p.en}",
            )
        )
    if known:
        for d, what in cal.years[year].workdays:
            rows.append((d, None, "调休上班 make-up working day", f"为{what}调休 for {what}"))
    for name, month, day_of_month in LUNAR_FESTIVALS:
        for day in lunar_dates_in_year(year, month, day_of_month):
            rows.append((day, None, "农历节日 lunar festival", f"{name} ({lunar_label(day)})"))
            if name == "春节":
                rows.append(
                    (
                        day - dt.timedelta(days=1),
                        None,
                        "农历节日 lunar festival",
                        f"除夕 ({lunar_label(day - dt.timedelta(days=1))})",
                    )
                )
    for term in ("立春", "清明", "冬至"):
        rows.append((solar_term_date(year, term), None, "节气 solar term", term))
    if campaign:
        for phase in campaign.config.phases:
            if phase.start.year <= year and (phase.end is None or phase.end.year >= year):
                rows.append((phase.start, phase.end, "阶段 phase", phase.name))
        from broadcaster.model.themes import ThemeBook

        for span in ThemeBook(campaign).spans(year):
            rows.append(
                (
                    span.start,
                    span.end,
                    "时节 occasion" + ("(估)" if span.estimated else ""),
                    f"{span.occasion.name} → {theme_label(campaign, span.occasion.theme)}",
                )
            )
    rows.sort(key=lambda r: (r[0], r[2]))
    table = Table(title=f"{year} 年日历 calendar of {year}", title_justify="left")
    for column in ("日期 date", "星期 day", "类别 kind", "名称 name"):
        table.add_column(column)
    for start, end, kind, name in rows:
        dates = f"{start} … {end}" if end and end != start else f"{start}"
        table.add_row(dates, weekday(start), kind, name)
    state.out.print(fit_table(table, state.out.width, 0))
    if known:
        data = cal.years[year]
        state.out.print(
            f"来源 source: {data.source_title} {data.source_url}"
            + (f" (override {data.file})" if data.overridden else "")
        )
    else:
        state.out.print(
            f"[yellow]{year} 年官方安排未知 no official arrangement for {year}: holidays shown are the statutory days only (estimated), without 调休[/yellow]"
        )


@calendar_group.command("check")
@NOW_OPTION
@pass_state
def calendar_check(state: State, now: str | None) -> None:
    """检查节假日数据是否齐全 are the official holiday files there for this and next year?

    Exits 1 when this year's file is missing, or next year's from 1 October.
    """
    when = parse_now(now, ZoneInfo("Asia/Shanghai"))
    campaign = _try_load(state, when.date())
    if campaign:
        cal = campaign.calendar
        warnings = campaign.calendar_warnings
    else:
        cal = ChinaCalendar.load(None)
        warnings = cal.freshness_warnings(when.date())
    years = sorted(cal.years)
    state.out.print(
        f"官方节假日数据 official holiday files: {years[0]}–{years[-1]}"
        + (f"; override folder {cal.override_dir}" if cal.override_dir else "")
    )
    for year in (when.year, when.year + 1):
        if year in cal.years:
            data = cal.years[year]
            state.out.print(
                f"  {year}: [green]有 present[/green] — {data.source_title}"
                + (" (override)" if data.overridden else "")
            )
    serious = False
    for message, fails in warnings:
        serious = serious or fails
        colour = "red" if fails else "yellow"
        state.out.print(
            f"  [{colour}]{'错误 error' if fails else '警告 warning'}[/{colour}] {message}"
        )
    if serious:
        raise click.exceptions.Exit(1)
