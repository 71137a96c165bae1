"""Audit commands: `lookup` (一案三查), `approve` and `approvals` (审核把关), `report`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from broadcaster.cli import State, cli, parse_now
from broadcaster.cli.campaign import NOW_OPTION, pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.engine.app import open_log, state_dir_for
from broadcaster.model.campaign import Campaign
from broadcaster.model.config import load_campaign
from broadcaster.reports import lookup as lk
from broadcaster.reports.chain import seal
from broadcaster.reports.pages import lookup_record

__all__ = ["lookup_command"]


def _campaign(state: State, when: dt.datetime) -> Campaign:
    return load_campaign(state.config, today=when.date())


@cli.command("lookup")
@click.option("--phone", help="号码 a mobile or landline number (hashed before the search).")
@click.option("--name", help="姓名 a person's name on a contact list (with --village).")
@click.option("--village", help="村/区域 the village or area (id or name) of --name.")
@click.option("--group", help="群/对象 a group or other target (id or name).")
@click.option("--screen", help="显示屏 a screen (id or name).")
@click.option("--area", help="区域 an area (id or name): its groups, screens and loudspeakers.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="导出一页可打印记录 write a one-page printable record (HTML) with the chain head.",
)
@click.option(
    "--limit",
    type=int,
    default=20,
    show_default=True,
    help="每部分显示行数 rows shown per section.",
)
@DB_OPTION
@STATE_OPTION
@NOW_OPTION
@pass_state
def lookup_command(
    state: State,
    phone: str | None,
    name: str | None,
    village: str | None,
    group: str | None,
    screen: str | None,
    area: str | None,
    out: Path | None,
    limit: int,
    db: str | None,
    state_dir: Path | None,
    now: str | None,
) -> None:
    """一案三查 was this person, household, group, screen or area reached: when, how, with what.

    \b
    broadcaster lookup --phone 13800138000
    broadcaster lookup --name 张三 --village hexi --out record.html
    broadcaster lookup --group hexi-affairs | --screen dongfeng-center-led | --area hexi
    """
    when = parse_now(now, ZoneInfo("Asia/Shanghai"))
    # a number alone can be looked up without a config
    no_config = bool(phone) and not state.config.exists()
    campaign: Campaign | None = None if no_config else _campaign(state, when)
    store, _ = open_log(db, state_dir_for(state.config, state_dir))
    try:
        try:
            subject = lk.subject_for(
                campaign,
                store.recipient_hash,
                phone=phone,
                name=name,
                village=village,
                group=group,
                screen=screen,
                area=area,
            )
        except lk.LookupError_ as exc:
            raise click.BadParameter(str(exc)) from None
        names = lk.names_of(campaign)
        cid = campaign.id if campaign else None
        store.read(lambda conn: lk.read_sections(conn, subject, campaign=cid, names=names))
        sealed = seal(store)
    finally:
        store.close()
    tz = campaign.tz if campaign else ZoneInfo("Asia/Shanghai")

    def local(at: dt.datetime) -> str:
        return f"{at.astimezone(tz):%Y-%m-%d %H:%M}"

    out_ = state.out
    out_.print(f"一案三查 lookup: [bold]{subject.shown}[/bold]", highlight=False)
    for note in subject.notes:
        out_.print(f"  {note}", markup=False, highlight=False)
    first, last = subject.first_reached(), subject.last_reached()
    if first and last:
        out_.print(
            f"[green]已触达 reached[/green]: 首次 first {local(first.scheduled_at)} ({first.channel_id}),"
            f" 最近 last {local(last.scheduled_at)} ({last.channel_id})",
            highlight=False,
        )
    else:
        out_.print(
            "[red]未触达 not reached[/red]: 日志中没有送达记录 no accepted or delivered message"
        )
    for section in subject.sections:
        table = Table(title=section.title, title_justify="left")
        for column in (
            "时间 when",
            "渠道 channel",
            "对象 target",
            "接收方 recipient",
            "状态 status",
            "内容 text",
        ):
            table.add_column(column)
        for r in section.rows[:limit]:
            table.add_row(
                local(r.scheduled_at),
                r.channel_id,
                r.target_id,
                r.recipient,
                r.status.label,
                r.text if len(r.text) <= 60 else r.text[:59] + "…",
            )
        if not section.rows:
            table.add_row("—", "", "", "", "无投递 no delivery", "")
        out_.print(table)
        if len(section.rows) > limit or section.truncated:
            out_.print(f"  仅显示 {limit} 条 showing {limit}; more: --limit", highlight=False)
    out_.print(sealed.line(), highlight=False, markup=False)
    if out is not None:
        html = lookup_record(
            subject,
            sealed,
            campaign=campaign.id if campaign else "",
            office=campaign.config.campaign.office if campaign else "",
            tz=tz,
            printed=when,
        )
        out.write_text(html, encoding="utf-8")
        out_.print(f"已导出 written: {out}", highlight=False, markup=False)


# --- report --------------------------------------------------------------------------------------


def default_period(kind: str, today: dt.date) -> str:
    """The last whole period before today: last ISO week, or last month."""
    if kind == "weekly":
        iso = (today - dt.timedelta(days=7)).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"
    first = today.replace(day=1) - dt.timedelta(days=1)
    return f"{first.year}-{first.month:02d}"


@cli.command("report")
@click.argument("kind", type=click.Choice(["weekly", "monthly"]))
@click.option(
    "--period",
    help="周期 2026-11 (monthly) or 2026-W48 (weekly); default: the last whole one.",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["xlsx", "csv", "html", "png"]),
    multiple=True,
    help="格式 output format (repeat for several; default: xlsx and html).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="输出目录 output folder.",
)
@click.option(
    "--offline",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    multiple=True,
    help="线下活动登记表 offline-activity form (CSV or XLSX, 入户宣传登记表); repeatable.",
)
@DB_OPTION
@STATE_OPTION
@NOW_OPTION
@pass_state
def report_command(
    state: State,
    kind: str,
    period: str | None,
    formats: tuple[str, ...],
    out: Path,
    offline: tuple[Path, ...],
    db: str | None,
    state_dir: Path | None,
    now: str | None,
) -> None:
    """周报/月报 weekly or monthly statistics: per channel, area, audience and fraud type;
    duties not met, by name; offline activities; XLSX, CSV (UTF-8 BOM), HTML with charts, PNG.

    \b
    broadcaster report monthly --period 2026-11 --format xlsx --format html --out reports/
    broadcaster report weekly --period 2026-W48 --offline 入户宣传登记表.xlsx --format csv
    """
    from broadcaster.reports.figures import build_report
    from broadcaster.reports.offline import read_activities
    from broadcaster.reports.periods import PeriodError, deadlines, parse_period
    from broadcaster.reports.writers import write_report

    when = parse_now(now, ZoneInfo("Asia/Shanghai"))
    campaign = _campaign(state, when)
    when = when.astimezone(campaign.tz)
    try:
        chosen = parse_period(kind, period or default_period(kind, when.date()))
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="--period") from None
    imported = read_activities(offline)
    if imported.problems:
        for problem in imported.problems:
            state.err.print(f"错误 error: {problem}", markup=False, highlight=False)
        state.err.print(
            f"线下活动登记表有 {len(imported.problems)} 处错误，未生成报表 the offline form has"
            f" {len(imported.problems)} bad rows or cells: fix them and run again (no report written)",
            markup=False,
        )
        raise click.exceptions.Exit(1)
    store, _ = open_log(db, state_dir_for(state.config, state_dir))
    try:
        sealed = seal(store)
        report = build_report(
            store,
            campaign,
            chosen,
            seal=sealed,
            deadlines=deadlines(chosen, campaign.calendar),
            activities=imported.activities,
            generated_at=when,
        )
    finally:
        store.close()
    written: list[Path] = []
    for fmt in formats or ("xlsx", "html"):
        try:
            written += write_report(report, fmt, out)
        except RuntimeError as exc:
            state.err.print(f"错误 error: {exc}", markup=False)
            raise click.exceptions.Exit(1) from None
    o = state.out
    o.print(f"{report.campaign_name} — {chosen.title}", markup=False, highlight=False)
    for note in report.notes:
        o.print(f"[yellow]{note}[/yellow]", highlight=False)
    o.print(
        f"投递 deliveries {report.deliveries:,} · 已触达 reached {report.reached:,} ·"
        f" 线下活动 offline activities {report.offline_count:,}",
        highlight=False,
    )
    for d in report.deadlines:
        o.print(f"报送期限 due: {d.line()}", markup=False, highlight=False)
    o.print(report.seal.line(), markup=False, highlight=False)
    for path in written:
        o.print(f"已写入 written: {path}", markup=False, highlight=False)
