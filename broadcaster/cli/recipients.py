"""`broadcaster recipients`: import recipient lists and opt-outs, show them masked."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import click
from rich.table import Table

from broadcaster.cli import State, cli
from broadcaster.cli.campaign import pass_state
from broadcaster.cli.delivery import STATE_OPTION
from broadcaster.cli.output import fit_table
from broadcaster.engine.app import state_dir_for
from broadcaster.model.targets import mask_phone
from broadcaster.recipients.reader import read_list, write_rejects
from broadcaster.recipients.store import RecipientStore

__all__ = ["recipients_group"]

SHOWN_PROBLEMS = 200  # bad rows printed at most; the rejects file holds them all


@cli.group("recipients")
def recipients_group() -> None:
    """接收人名单 recipient lists: import (CSV/GBK/XLSX), opt-outs, show (masked).

    \b
    Numbers stay in the recipient store (var/recipients.sqlite3, 0600), never in the log.
    A target names an imported list in schedules.yaml:
      recipients: {list: dongcun, tags: [老年人]}
    """


def _store(state: State, state_dir: Path | None) -> RecipientStore:
    return RecipientStore.in_folder(state_dir_for(state.config, state_dir))


@recipients_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--list",
    "list_name",
    metavar="NAME",
    help="名单名称 the list's name (default: the file name without its suffix).",
)
@click.option(
    "--optout",
    is_flag=True,
    help="这是退订名单 the file lists numbers that opted out: never send to them again.",
)
@click.option(
    "--accept-good",
    is_flag=True,
    help="只导入合格行 import the good rows even if some are bad (needs --rejects).",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="不合格行写入此文件 write the bad rows to this CSV (with row number and reason).",
)
@STATE_OPTION
@pass_state
def import_command(
    state: State,
    file: Path,
    list_name: str | None,
    optout: bool,
    accept_good: bool,
    rejects: Path | None,
    state_dir: Path | None,
) -> None:
    """导入名单 import a recipient list (or, with --optout, an opt-out list).

    A file with any bad row is refused whole, every bad row listed; --accept-good
    --rejects FILE imports the good rows and writes the bad ones to FILE.
    """
    if accept_good and rejects is None:
        raise click.UsageError(
            "--accept-good 需要 --rejects FILE: the bad rows must go somewhere, never dropped"
        )
    raw = file.read_bytes()
    read = read_list(raw)
    shown = str(file)
    state.out.print(
        f"读取 read {shown} ({read.encoding}): {read.data_rows} 行 rows, {len(read.rows)} 人"
        f" people ({read.merged} 重复已合并 duplicates merged), {read.mobiles} 手机 mobiles,"
        f" {read.landlines} 座机 landlines",
        markup=False,
        highlight=False,
    )
    if read.problems:
        for p in read.problems[:SHOWN_PROBLEMS]:
            where = f"{shown}:{p.line}" if p.line is not None else shown
            state.err.print(f"{where}: {p.reason}", markup=False, highlight=False)
        if len(read.problems) > SHOWN_PROBLEMS:
            state.err.print(
                f"… {len(read.problems) - SHOWN_PROBLEMS} more bad rows"
                + (f" (all in {rejects})" if rejects else ""),
                markup=False,
            )
        if rejects is not None:
            rejects.write_bytes(write_rejects(read.problems, read.header))
            state.err.print(
                f"不合格行已写入 bad rows written to {rejects}", markup=False, highlight=False
            )
        if not accept_good:
            state.err.print(
                f"✘ 名单未导入 not imported: {len(read.problems)} bad row(s). Fix them, or import"
                " the good rows with --accept-good --rejects rejects.csv",
                markup=False,
            )
            raise click.exceptions.Exit(1)
    if not read.rows:
        state.err.print("✘ 没有可导入的行 no good rows to import", markup=False)
        raise click.exceptions.Exit(1)
    store = _store(state, state_dir)
    now = dt.datetime.now(dt.UTC)
    if optout:
        numbers = [n for r in read.rows for n in (r.mobile, r.landline) if n is not None]
        added = store.add_optouts(numbers, reason="office opt-out list", source=shown, at=now)
        state.out.print(
            f"✔ 退订名单已导入 opt-outs imported: {added} new, {len(numbers) - added} already"
            f" there; {store.optout_count()} in all",
            markup=False,
        )
        return
    name = list_name or file.stem
    store.replace_list(
        name,
        read.rows,
        source=shown,
        source_sha256=hashlib.sha256(raw).hexdigest(),
        at=now,
    )
    skipped = f", {len(read.problems)} bad rows left out" if read.problems else ""
    state.out.print(
        f"✔ 名单已导入 list '{name}' imported: {len(read.rows)} people{skipped}. Use it in"
        f" schedules.yaml: recipients: {{list: {name}}}",
        markup=False,
    )


@recipients_group.command("show")
@click.option("--list", "list_name", metavar="NAME", help="显示此名单 show this list's people.")
@click.option("--limit", type=int, default=20, show_default=True, help="最多行数 rows at most.")
@STATE_OPTION
@pass_state
def show_command(state: State, list_name: str | None, limit: int, state_dir: Path | None) -> None:
    """显示名单（号码已脱敏）show the lists, or one list's people, numbers masked."""
    store = _store(state, state_dir)
    lists = store.lists()
    if list_name is None:
        table = Table(title="接收人名单 recipient lists", title_justify="left")
        for column in (
            "名单 list",
            "人数 people",
            "手机 mobiles",
            "座机 landlines",
            "导入 imported",
            "来源 source",
        ):
            table.add_column(column)
        for s in lists:
            table.add_row(
                s.name,
                str(s.people),
                str(s.mobiles),
                str(s.landlines),
                s.imported_at,
                s.source,
            )
        state.out.print(fit_table(table, state.out.width, 5))
        state.out.print(
            f"退订 opt-outs: {store.optout_count() if store.exists() else 0}", markup=False
        )
        return
    rows = store.rows(list_name)
    if rows is None:
        known = ", ".join(s.name for s in lists) or "none imported yet"
        raise click.BadParameter(
            f"没有此名单 no list {list_name!r}; lists: {known}", param_hint="--list"
        )
    optouts = store.optouts()
    table = Table(title=f"名单 list {list_name}: {len(rows)} 人 people", title_justify="left")
    for column in (
        "行 row",
        "姓名 name",
        "手机 mobile",
        "座机 landline",
        "区域 area",
        "标签 tags",
        "",
    ):
        table.add_column(column)
    for r in rows[:limit]:
        out = any(n in optouts for n in (r.mobile, r.landline) if n)
        table.add_row(
            str(r.line),
            r.name,
            mask_phone(r.mobile) if r.mobile else "",
            mask_phone(r.landline) if r.landline else "",
            r.area,
            "、".join(r.tags),
            "已退订 opted out" if out else "",
        )
    state.out.print(fit_table(table, state.out.width, 1))
    if len(rows) > limit:
        state.out.print(f"… {len(rows) - limit} more (--limit)", markup=False)
