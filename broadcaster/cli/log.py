"""`broadcaster log`: coverage per send and deliveries, by time, rule, channel, target, status or number."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from broadcaster.cli import State, cli, parse_date
from broadcaster.cli.campaign import pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.cli.labels import error_label
from broadcaster.cli.output import fit_table
from broadcaster.engine.app import open_log, state_dir_for
from broadcaster.model.targets import mask_phone, parse_phone
from broadcaster.vocab import ErrorClass, Status

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from broadcaster.engine.led import ScreenStatus
    from broadcaster.log import AreaCoverageRow, CoverageRow

__all__ = ["log_command"]


@cli.group("log", invoke_without_command=True)
@click.option("--from", "from_", metavar="DATE", help="起始日期 first day.")
@click.option("--to", metavar="DATE", help="结束日期 last day, inclusive.")
@click.option("--rule", help="只看这条规则 only this rule.")
@click.option("--channel", help="只看这个渠道 only this channel.")
@click.option("--target", help="只看这个对象 only this target.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in Status]),
    help="只看此状态 only deliveries in this status (unresolved: 待人工 an operator decides).",
)
@click.option(
    "--campaign",
    "campaign_id",
    help="活动 campaign id (default: the config's; a log may hold several campaigns).",
)
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
@click.option(
    "--by-area",
    is_flag=True,
    help="按区域统计覆盖率 coverage per area of the hierarchy (县/镇/村/组), numbers masked.",
)
@click.option(
    "--depth",
    type=click.IntRange(1, 10),
    help="区域层级 with --by-area: areas this many levels deep (default: every level).",
)
@click.option(
    "--late-relays",
    is_flag=True,
    help="逐级转发 relay hops per level, counted apart from direct deliveries; the late ones.",
)
@click.option(
    "--handoffs",
    is_flag=True,
    help="群转发 hand-offs by person: unconfirmed past their deadline, and how many confirmed.",
)
@click.option(
    "--now",
    metavar="TIME",
    help="以此时判断逾期 judge deadlines at this time (default: now), e.g. 2026-03-03T12:00.",
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
    campaign_id: str | None,
    phone: str | None,
    fmt: str,
    limit: int,
    by_area: bool,
    depth: int | None,
    late_relays: bool,
    handoffs: bool,
    now: str | None,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """查询投递日志 the delivery log: coverage per send (targeted, accepted, delivered) and deliveries.

    \b
    Also 另有: broadcaster log anchor   写下链头 write the chain head to a file
               broadcaster log prune    按保留期删除正文 drop expired texts and masked numbers
    """
    if click.get_current_context().invoked_subcommand is not None:
        return

    from broadcaster.log.chain import shown_display  # the log only when a command needs it

    tz = ZoneInfo("Asia/Shanghai")
    if state.config.exists():  # only zone and id: an auditor can query with a broken config
        tz, configured = campaign_zone(state.config)
        campaign_id = campaign_id or configured
    first = parse_date(from_, "--from")
    last = parse_date(to, "--to")
    since = dt.datetime.combine(first, dt.time(), tzinfo=tz) if first else None
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=tz) if last else None
    folder = state_dir_for(state.config, state_dir)
    store, _ = open_log(db, folder)
    if late_relays or handoffs:
        from broadcaster.cli import parse_now
        from broadcaster.cli.relay import print_handoffs, print_relays, relay_states

        try:
            states = relay_states(store, campaign_id, parse_now(now, tz), since=since)
        finally:
            store.close()
        if late_relays:
            print_relays(state, states, tz, late_only=True, limit=limit)
        if handoffs:
            print_handoffs(state, states, tz, limit=limit)
        return
    try:
        head, chained = store.chain_head()
        recipient_hash = None
        if phone:
            number = parse_phone(phone)
            if number is None:
                raise click.BadParameter(
                    "号码无效 not a mainland mobile or landline number", param_hint="--phone"
                )
            recipient_hash = store.recipient_hash(number)
        filters: dict[str, Any] = {
            "campaign": campaign_id,
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
        areas = store.coverage_by_area(depth=depth, **filters) if by_area and not phone else []
        hops = []
        if coverage and campaign_id and fmt == "table":
            from broadcaster.cli import parse_now
            from broadcaster.cli.relay import relay_states

            hops = relay_states(store, campaign_id, parse_now(now, tz), since=since)
            hops = [h for h in hops if until is None or h.hop.due_at < until]
        screens = [] if (phone or fmt != "table") else _screen_statuses(state.config, store, tz)
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
        for record in records:  # a pruned masked number says so (its hash stays in the log)
            record["recipient_display"] = shown_display(record["recipient_display"])
        if fmt == "json":
            sys.stdout.write(
                json.dumps(
                    {
                        "deliveries": records,
                        "coverage": [
                            {k: _plain(v) for k, v in dataclasses.asdict(c).items()}
                            for c in coverage
                        ],
                        **(
                            {
                                "coverage_by_area": [
                                    {k: _plain(v) for k, v in dataclasses.asdict(a).items()}
                                    for a in areas
                                ]
                            }
                            if by_area
                            else {}
                        ),
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
        print_coverage(state, coverage[-limit:], tz)
        if by_area:
            print_area_coverage(state, areas, tz)
        needs_operator = sum(c.unresolved for c in coverage)
        waiting = sum(c.waiting for c in coverage)
        line = f"待人工 needs an operator: {needs_operator}"
        if needs_operator:
            state.out.print(
                f"[bold red]{line}[/bold red] — 查看 list them: broadcaster log --status"
                " unresolved; 处理 decide: broadcaster resolve KEY --as delivered|failed|resend"
                " --note TEXT --by NAME"
            )
        else:
            state.out.print(line)
        if waiting:
            state.out.print(f"待发送 waiting to be sent (planned, deferred): {waiting}")
        if any(h.hop.level > 0 for h in hops):
            from broadcaster.cli.relay import print_relay_tally

            print_relay_tally(state, hops)
            state.out.print("逾期的转发 late hops: broadcaster log --late-relays")
    keys = status is not None
    table = Table(
        title=("号码查询 lookup by number: " + mask_phone(parse_phone(phone) or phone))
        if phone
        else "投递记录 deliveries",
        title_justify="left",
    )
    columns = [
        "计划时间 scheduled",
        "规则 rule",
        "渠道 channel",
        "对象 target",
        "接收方 recipient",
        "状态 status",
        "原因 reason",
        "模板 template",
    ]
    if keys:  # listing by status is how an operator finds what to `resolve`
        columns.append("键 key")
    for column in columns:
        table.add_column(column)
    from broadcaster.log.relay import handoff_label

    for r in rows[-limit:]:
        cells = [
            f"{r.scheduled_at.astimezone(tz):%m-%d %H:%M}",
            r.rule_id,
            r.channel_id,
            r.target_id,
            shown_display(r.recipient_display),
            handoff_label(r.status, r.reason),
            _reason(r.error_class, r.reason),
            r.template,
        ]
        if keys:
            cells.append(r.key[:KEY_SHOWN])
        table.add_row(*cells)
    state.out.print(fit_table(table, state.out.width, 4, *([8] if keys else [])))
    state.out.print(
        f"共 {len(rows)} 条 {len(rows)} deliveries"
        + (f"; showing the last {limit}" if len(rows) > limit else "")
    )
    stale = [r for r in screens if r.stale]
    if stale:
        from broadcaster.cli.led import print_screen_status

        state.out.print(
            f"[bold red]显示屏失联 stale screens: {len(stale)} / {len(screens)}[/bold red]"
            " — 详情 details: broadcaster led status"
        )
        print_screen_status(state, stale, tz)
    state.out.print(f"链头 chain head: {head}  记录数 records: {chained:,}", highlight=False)
    if status == Status.UNRESOLVED.value and rows:
        state.out.print(
            "处理 decide: broadcaster resolve KEY... --as delivered|failed|resend --note TEXT"
            " --by NAME (键的前 8 位即可 the first 8 characters of a key are enough)"
        )


KEY_SHOWN = 12  # characters of a delivery key shown in tables (resolve takes a prefix)
REASON_SHOWN = 120  # characters of a reason shown in the table (csv/json: all)


def _screen_statuses(config: Path, store: Any, tz: dt.tzinfo) -> list[ScreenStatus]:
    """LED screens and their last fetch, when the config loads (the log works without it)."""
    from broadcaster.engine.led import screen_statuses
    from broadcaster.errors import BroadcasterError
    from broadcaster.model.config.load import load_campaign

    now = dt.datetime.now(tz)
    try:
        campaign = load_campaign(config, today=now.date())
    except (BroadcasterError, OSError):
        return []
    return screen_statuses(store, campaign, now) if campaign.screens else []


def _reason(error_class: ErrorClass | None, reason: str | None) -> str:
    """Why, as the table shows it: the error class's label, then the reason (shortened)."""
    text = reason or ""
    if len(text) > REASON_SHOWN:
        text = text[: REASON_SHOWN - 1] + "…"
    label = error_label(error_class)
    return f"{label}: {text}" if label and text else label or text


def print_coverage(state: State, coverage: list[CoverageRow], tz: dt.tzinfo) -> None:
    """Per send and channel: how many were targeted and how far they got."""
    table = Table(title="每次推送覆盖情况 coverage per send", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("时间 time", "left"),
        ("规则 rule", "left"),
        ("渠道 channel", "left"),
        ("目标 targeted", "right"),
        ("已受理 accepted", "right"),
        ("已送达 delivered", "right"),
        ("失败 failed", "right"),
        ("未知 unknown", "right"),
        ("待人工 unresolved", "right"),
        ("跳过 skipped", "right"),
        ("受理率 rate", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for c in coverage:
        table.add_row(
            f"{c.scheduled_at.astimezone(tz):%m-%d %H:%M}",
            c.rule_id,
            c.channel_id,
            str(c.targeted),
            str(c.accepted),
            str(c.delivered),
            str(c.failed),
            str(c.unknown),
            f"[bold red]{c.unresolved}[/bold red]" if c.unresolved else "0",
            str(c.skipped),
            coverage_rate(c.accepted, c.targeted),
        )
    state.out.print(fit_table(table, state.out.width, 1, 2))


def print_area_coverage(state: State, areas: list[AreaCoverageRow], tz: dt.tzinfo) -> None:
    """Per send, channel and area: the shares an office reports (the 90% figure)."""
    table = Table(title="按区域覆盖率 coverage per area", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("时间 time", "left"),
        ("渠道 channel", "left"),
        ("区域 area", "left"),
        ("目标 targeted", "right"),
        ("受理率 accepted", "right"),
        ("送达率 delivered", "right"),
        ("接听率 answered", "right"),
        ("失败 failed", "right"),
        ("跳过 skipped", "right"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    voice = any(a.answered for a in areas)
    for a in areas:
        table.add_row(
            f"{a.scheduled_at.astimezone(tz):%m-%d %H:%M}",
            a.channel_id,
            a.area,
            str(a.targeted),
            coverage_rate(a.accepted, a.targeted),
            coverage_rate(a.delivered, a.targeted),
            coverage_rate(a.answered, a.targeted) if voice else "—",
            str(a.failed),
            str(a.skipped),
        )
    state.out.print(fit_table(table, state.out.width, 2))


def campaign_zone(config: Path) -> tuple[ZoneInfo, str | None]:
    """The campaign's time zone and id, read without validating the whole config."""
    from broadcaster.model.config.source import load_document

    try:
        doc, _ = load_document(config)
        section = doc.data.get("campaign", {})
        return ZoneInfo(str(section.get("timezone", "Asia/Shanghai"))), section.get("id")
    except Exception:
        return ZoneInfo("Asia/Shanghai"), None


def coverage_rate(part: int, whole: int) -> str:
    """A share as shown: rounded down, so a shortfall never shows as 100% (5,984/6,000 = 99.7%)."""
    if not whole:
        return "—"
    tenths = part * 1000 // whole
    return f"{tenths // 10}.{tenths % 10}%" if tenths % 10 else f"{tenths // 10}%"


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
