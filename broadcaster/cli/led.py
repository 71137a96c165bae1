"""`broadcaster led`: export playlists as files, push them through bridges, list stale
screens, print which anti-fraud items each screen carried on a day."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

if TYPE_CHECKING:
    from broadcaster.engine.led import ScreenStatus

from broadcaster.cli import State, cli, parse_date
from broadcaster.cli.campaign import NOW_OPTION, load_app, pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.cli.output import fit_table

__all__ = ["led"]


@cli.group("led")
def led() -> None:
    """LED 显示屏 screens: export, push, status, history."""


@led.command("export")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("led-export"),
    show_default=True,
    help="输出目录 folder for the files.",
)
@NOW_OPTION
@DB_OPTION
@STATE_OPTION
@pass_state
def export(
    state: State, out: Path, now: str | None, db: str | None, state_dir: Path | None
) -> None:
    """导出每块屏的播放列表 write each screen's playlist: <screen>.json and <screen>.txt (in
    the screen's charset), for controller software that imports files."""
    from broadcaster.engine.led import LedFeed

    app, when = load_app(state, now, state_dir)
    if not app.campaign.screens:
        state.out.print("没有显示屏 no screens in the config (targets with screen:)")
        return
    store, _ = app.open_log(db)
    try:
        built = LedFeed(store).rebuild_all(app, when)
    finally:
        store.close()
    out.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"已导出 exported to {out}", title_justify="left")
    for column in (
        "显示屏 screen",
        "字符集 charset",
        "版本 version",
        "条目 items",
        "最长间隔 longest gap",
    ):
        table.add_column(column)
    for sid, served in built.items():
        (out / f"{sid}.json").write_bytes(served.json)
        (out / f"{sid}.txt").write_bytes(served.text)
        gap = served.playlist.longest_gap()
        table.add_row(
            f"{sid} {served.playlist.screen.name}",
            served.playlist.screen.charset,
            served.playlist.version,
            str(len(served.playlist.entries)),
            f"{gap.seconds:g} s" if gap else "—",
        )
        for problem in served.playlist.problems:
            state.err.print(f"[yellow]警告 warning[/yellow] {problem}", highlight=False)
        for dropped in served.dropped:
            state.err.print(
                f"[yellow]警告 warning[/yellow] {sid}: 未导出 left out {dropped}", highlight=False
            )
    state.out.print(fit_table(table, state.out.width, 0))


@led.command("push")
@click.option(
    "--screen", "screens", multiple=True, help="只推这块屏 only this screen (repeatable)."
)
@NOW_OPTION
@DB_OPTION
@STATE_OPTION
@pass_state
def push(
    state: State,
    screens: tuple[str, ...],
    now: str | None,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """通过推送桥推送播放列表 push playlists to vendor platforms (bridges); a version a
    bridge already took is not pushed again. Exits 1 when a push failed."""
    import requests

    from broadcaster.engine.led import LedFeed, push_all

    app, when = load_app(state, now, state_dir)
    unknown = [s for s in screens if s not in app.campaign.screens]
    if unknown:
        raise click.BadParameter(
            f"没有此显示屏 no such screen: {', '.join(unknown)}", param_hint="--screen"
        )
    store, _ = app.open_log(db)
    try:
        with requests.Session() as http:
            outcomes = push_all(LedFeed(store), app, http, when, screens or None)
    finally:
        store.close()
    labels = {
        "pushed": "已推送 pushed",
        "unchanged": "未变化 unchanged",
        "failed": "失败 failed",
        "retry": "稍后重试 retry later",
    }
    table = Table(title="推送 pushes", title_justify="left")
    for column in ("推送桥 bridge", "显示屏 screen", "版本 version", "结果 result", "原因 reason"):
        table.add_column(column)
    for o in outcomes:
        table.add_row(o.bridge, o.screen_id, o.version, labels[o.status], o.reason)
    state.out.print(fit_table(table, state.out.width, 4))
    if not outcomes:
        state.out.print("没有推送桥 no bridges configured (channels.<led>.settings.bridges)")
    if any(o.status in ("failed", "retry") for o in outcomes):
        sys.exit(1)


@led.command("status")
@NOW_OPTION
@DB_OPTION
@STATE_OPTION
@pass_state
def status(state: State, now: str | None, db: str | None, state_dir: Path | None) -> None:
    """每块屏最近一次拉取 when each screen last fetched; stale screens in red. Exits 1 when
    a screen is stale."""
    from broadcaster.engine.led import LedFeed

    app, when = load_app(state, now, state_dir)
    store, _ = app.open_log(db)
    try:
        rows = LedFeed(store).statuses(app, when)
    finally:
        store.close()
    print_screen_status(state, rows, app.campaign.tz)
    if any(r.stale for r in rows):
        sys.exit(1)


def print_screen_status(state: State, rows: list[ScreenStatus], tz: dt.tzinfo) -> None:
    table = Table(title="显示屏 screens", title_justify="left")
    for column in (
        "显示屏 screen",
        "位置 place",
        "最近拉取 last fetch",
        "版本 version",
        "状态 state",
    ):
        table.add_column(column)
    for r in rows:
        place = " / ".join(r.screen.path[:-1])
        last = f"{r.last_seen.astimezone(tz):%m-%d %H:%M}" if r.last_seen else "从未 never"
        mark = (
            f"[bold red]失联 stale (>{r.screen.stale_after / 60:g} min)[/bold red]"
            if r.stale
            else "正常 ok"
        )
        table.add_row(f"{r.screen.id} {r.screen.name}", place, last, r.version or "—", mark)
    state.out.print(fit_table(table, state.out.width, 1))
    stale = sum(1 for r in rows if r.stale)
    state.out.print(f"失联 stale: {stale} / {len(rows)}")


HISTORY_FIELDS = (
    "day",
    "screen",
    "screen_name",
    "place",
    "version",
    "since",
    "via",
    "role",
    "item",
    "text",
    "seconds",
    "valid_from",
    "valid_until",
)


@led.command("history")
@click.option(
    "--screen", "screens", multiple=True, help="显示屏 screen id (repeatable; default all)."
)
@click.option("--day", required=True, metavar="DATE", help="日期 the day, YYYY-MM-DD.")
@click.option("--to", metavar="DATE", help="到此日期 through this day (inclusive).")
@click.option("--all-items", is_flag=True, help="含屏幕自有内容 include the screen's own content.")
@DB_OPTION
@STATE_OPTION
@pass_state
def history(
    state: State,
    screens: tuple[str, ...],
    day: str,
    to: str | None,
    all_items: bool,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """每块屏每天播放了哪些反诈内容 which anti-fraud items each screen carried on each day
    (CSV, UTF-8 with BOM for Excel): every version in force that day, from the log."""
    from broadcaster.engine.led import LedFeed

    first = parse_date(day, "--day")
    last = parse_date(to, "--to") or first
    if first is None or last is None or last < first:
        raise click.BadParameter("--to 早于 --day is before --day", param_hint="--to")
    app, _ = load_app(state, None, state_dir)
    campaign, tz = app.campaign, app.campaign.tz
    unknown = [s for s in screens if s not in campaign.screens]
    if unknown:
        raise click.BadParameter(
            f"没有此显示屏 no such screen: {', '.join(unknown)}", param_hint="--screen"
        )
    wanted = list(screens) or list(campaign.screens)
    store, _ = app.open_log(db)
    writer = csv.DictWriter(sys.stdout, fieldnames=HISTORY_FIELDS, lineterminator="\r\n")
    sys.stdout.write("\ufeff")
    writer.writeheader()
    try:
        feed = LedFeed(store)
        d = first
        while d <= last:
            start = dt.datetime.combine(d, dt.time(), tzinfo=tz)
            end = start + dt.timedelta(days=1)
            for record in feed.fetches(campaign.id, wanted, start, end):
                if not record.via.startswith(("fetch", "bridge:")):
                    continue
                screen = campaign.screens.get(record.screen_id)
                for item in record.items:
                    if item["role"] == "own" and not all_items:
                        continue
                    if not _valid_during(item, start, end):
                        continue  # the screen dropped it on its own before this day
                    writer.writerow(
                        {
                            k: _csv_safe(v)
                            for k, v in {
                                "day": d.isoformat(),
                                "screen": record.screen_id,
                                "screen_name": screen.name if screen else "",
                                "place": " / ".join(screen.path[:-1]) if screen else "",
                                "version": record.version,
                                "since": record.at.astimezone(tz).isoformat(timespec="seconds"),
                                "via": record.via,
                                "role": item["role"],
                                "item": item["id"],
                                "text": item["text"],
                                "seconds": item["seconds"],
                                "valid_from": item.get("valid_from") or "",
                                "valid_until": item.get("valid_until") or "",
                            }.items()
                        }
                    )
            d += dt.timedelta(days=1)
    finally:
        store.close()


def _valid_during(item: dict[str, object], start: dt.datetime, end: dt.datetime) -> bool:
    since, until = item.get("valid_from"), item.get("valid_until")
    if isinstance(until, str) and dt.datetime.fromisoformat(until) <= start:
        return False
    return not (isinstance(since, str) and dt.datetime.fromisoformat(since) >= end)


def _csv_safe(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
