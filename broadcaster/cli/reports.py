"""Audit commands: `lookup` (一案三查), `approve` and `approvals` (审核把关), `report`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from broadcaster.cli import State, cli, parse_now
from broadcaster.cli.campaign import NOW_OPTION, load_app, pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.engine.app import App, open_log, state_dir_for
from broadcaster.model.campaign import Campaign
from broadcaster.model.config import load_campaign

__all__ = [
    "approval_refusals",
    "approvals_command",
    "approve_command",
    "lookup_command",
    "report_command",
]


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
    from broadcaster.reports import lookup as lk
    from broadcaster.reports.chain import seal
    from broadcaster.reports.pages import lookup_record

    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter(
            f"记录为可打印的 HTML the record is printable HTML: name it .html (got {out.name});"
            " print it to PDF from a browser",
            param_hint="--out",
        )
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
    from broadcaster.reports.chain import seal
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


# --- content approval ------------------------------------------------------------------------------


def approval_refusals(app: App, db: str | None = None, *, offline: bool = False) -> list[str]:
    """Why `validate` (offline: the ledger file only) and `run` (the log's approvals table
    and the ledger) refuse the campaign's content; empty when nothing is unapproved or the
    config does not require approval."""
    from broadcaster.reports.ledger import ledger_path, offline_refusals, refusals, versions_of

    campaign = app.campaign
    if not campaign.config.approval.required:
        return []
    if offline:
        return offline_refusals(campaign)
    from broadcaster.reports.approvals import ApprovalStore

    store, _ = app.open_log(db)
    approvals = ApprovalStore(store)
    try:
        versions = approvals.attach(versions_of(campaign), ledger_path(campaign))
    finally:
        approvals.close()
        store.close()
    return refusals(campaign, versions)


def print_refusals(state: State, lines: list[str]) -> None:
    for line in lines:
        state.err.print(f"错误 error: {line}", markup=False, highlight=False)
    state.err.print(
        f"[red]✘ {len(lines)} 个模板版本未审核 template versions not approved: 审核后才能发送"
        " content is sent only once approved (broadcaster approvals)[/red]",
        highlight=False,
    )


@cli.command("approvals")
@click.option(
    "--pending", "only_pending", is_flag=True, help="只看待审核 only versions not approved."
)
@DB_OPTION
@STATE_OPTION
@NOW_OPTION
@pass_state
def approvals_command(
    state: State, only_pending: bool, db: str | None, state_dir: Path | None, now: str | None
) -> None:
    """审核状态 the template versions the rules can send: approved (who, when, note) or pending."""
    from broadcaster.reports.approvals import ApprovalStore
    from broadcaster.reports.ledger import is_urgent, ledger_path, versions_of, when_text

    app, _ = load_app(state, now, state_dir)
    campaign = app.campaign
    store, _ = app.open_log(db)
    approvals = ApprovalStore(store)
    try:
        versions = approvals.attach(versions_of(campaign), ledger_path(campaign))
    finally:
        approvals.close()
        store.close()
    table = Table(title="模板版本审核 template versions", title_justify="left")
    for column in (
        "模板 template",
        "版本 version",
        "状态 state",
        "审核人 by",
        "时间 at",
        "说明 note",
        "规则 rules",
    ):
        table.add_column(column)
    pending = 0
    for v in versions:
        if v.approved and only_pending:
            continue
        a = v.approval
        if a is not None:
            status = "[green]已审核 approved[/green]"
        elif v.urgent is not None:
            status = "[yellow]先发后审 sent urgently, to approve[/yellow]"
        elif is_urgent(campaign, v.template):
            status = "[yellow]待审核 pending (urgent: may send first)[/yellow]"
        else:
            status = "[red]待审核 pending[/red]"
        pending += a is None
        table.add_row(
            v.file,
            v.short,
            status,
            a.by if a else "",
            when_text(a.at, campaign.tz) if a else "",
            a.note if a else "",
            ", ".join(sorted(v.rules)),
        )
    state.out.print(table)
    required = (
        "必须审核 required"
        if campaign.config.approval.required
        else "未要求 not required by the config"
    )
    state.out.print(
        f"共 {len(versions)} 个版本 versions, 待审核 pending {pending} · 审核 approval: {required}",
        highlight=False,
    )


@cli.command("approve")
@click.argument("templates", nargs=-1)
@click.option(
    "--all", "all_pending", is_flag=True, help="审核全部待审核版本 approve every pending version."
)
@click.option("--by", "by", help="审核人 who approves (default: the login name).")
@click.option("--note", default="", help="审核意见 a note (what was checked).")
@DB_OPTION
@STATE_OPTION
@NOW_OPTION
@pass_state
def approve_command(
    state: State,
    templates: tuple[str, ...],
    all_pending: bool,
    by: str | None,
    note: str,
    db: str | None,
    state_dir: Path | None,
    now: str | None,
) -> None:
    """审核通过 approve the current version of templates (sms/loan.j2 or messages/sms/loan.j2).

    The version is the hash of the template and its fragments as they are now: an edit makes
    a new version that needs approving again. Recorded in the log's append-only table and on
    the config's ledger file (approval.file), never changed or deleted.
    """
    import getpass

    from broadcaster.reports.approvals import ApprovalStore, approve
    from broadcaster.reports.ledger import ledger_path, versions_of, when_text

    if not templates and not all_pending:
        raise click.UsageError("请给出模板或 --all name templates to approve, or --all")
    app, when = load_app(state, now, state_dir)
    campaign = app.campaign
    who = (by or getpass.getuser()).strip()[:64]
    if not who:
        raise click.BadParameter("审核人不能为空 who approves must not be empty", param_hint="--by")
    store, _ = app.open_log(db)
    approvals = ApprovalStore(store)
    try:
        versions = approvals.attach(versions_of(campaign), ledger_path(campaign))
        chosen = []
        for name in templates:
            wanted = name.replace("\\", "/")
            found = [
                v
                for v in versions
                if wanted in (v.template, v.file) or v.file.endswith("/" + wanted)
            ]
            if not found:
                known = ", ".join(sorted({v.template for v in versions})[:8])
                raise click.BadParameter(
                    f"没有规则使用这个模板 no rule sends a template {name!r} (e.g. {known} …)",
                    param_hint="TEMPLATES",
                )
            chosen += found
        if all_pending:
            chosen += versions
        done = 0
        for v in {id(v): v for v in chosen}.values():
            if v.approved:
                state.out.print(
                    f"已审核 already approved: {v.file} {v.short} ({v.approval.by},"
                    f" {when_text(v.approval.at, campaign.tz)})",
                    markup=False,
                    highlight=False,
                )
                continue
            approve(approvals, campaign, v, by=who, note=note, at=when)
            done += 1
            state.out.print(
                f"审核通过 approved: {v.file} {v.short} by {who}", markup=False, highlight=False
            )
        state.out.print(f"共审核 {done} 个版本 versions approved", highlight=False)
    finally:
        approvals.close()
        store.close()
