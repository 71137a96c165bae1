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

    from broadcaster.log import CoverageRow

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
    for r in rows[-limit:]:
        cells = [
            f"{r.scheduled_at.astimezone(tz):%m-%d %H:%M}",
            r.rule_id,
            r.channel_id,
            r.target_id,
            shown_display(r.recipient_display),
            r.status.label,
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
    state.out.print(f"链头 chain head: {head}  记录数 records: {chained:,}", highlight=False)
    if status == Status.UNRESOLVED.value and rows:
        state.out.print(
            "处理 decide: broadcaster resolve KEY... --as delivered|failed|resend --note TEXT"
            " --by NAME (键的前 8 位即可 the first 8 characters of a key are enough)"
        )


KEY_SHOWN = 12  # characters of a delivery key shown in tables (resolve takes a prefix)
REASON_SHOWN = 120  # characters of a reason shown in the table (csv/json: all)


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
