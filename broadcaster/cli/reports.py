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
