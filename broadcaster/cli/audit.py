"""Tamper evidence on the command line: `verify-log`, `log anchor`, `log prune`."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broadcaster.cli import State, cli, parse_date
from broadcaster.cli.campaign import pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.cli.log import log_command
from broadcaster.engine.app import open_log, private_folder, state_dir_for

if TYPE_CHECKING:  # the log is imported only when a command needs it (validate stays light)
    from broadcaster.log.chain import Anchor, Verdict

__all__ = ["anchor_text", "read_anchor"]

HEX64 = re.compile(r"^[0-9a-f]{64}$")
# the labels of an anchor file, each with its English key (what the parser reads)
ANCHOR_LABELS = (
    ("log_id", "日志标识 log id"),
    ("key_id", "密钥标识 key id"),
    ("seq", "链接序号 link seq"),
    ("head", "链头 chain head"),
    ("records", "记录数 records"),
    ("at", "时间 time"),
)


def anchor_text(anchor: Anchor, where: str) -> str:
    """The printable anchor: what an office files, e-mails or hands to its superior."""
    lines = [
        "broadcaster 投递日志锚点 delivery-log anchor",
        "",
        f"日志 log: {where}",
        *(f"{label}: {getattr(anchor, key)}" for key, label in ANCHOR_LABELS),
        "",
        "核验 verify: broadcaster verify-log --anchor <本文件 this file>",
        "日志若在此之后被改写，核验将失败 if the log is rewritten after this, verification fails.",
    ]
    return "\n".join(lines) + "\n"


def read_anchor(path: Path) -> Anchor:
    """An anchor from its text or JSON file; a malformed one names the file, line and key."""
    from broadcaster.log.chain import Anchor

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(
            f"无法读取锚点 cannot read {path}: {exc}", param_hint="--anchor"
        ) from None
    values: dict[str, tuple[str, int]] = {}
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(
                f"{path} line {exc.lineno}: 锚点不是有效的 JSON not valid JSON ({exc.msg})",
                param_hint="--anchor",
            ) from None
        if not isinstance(data, dict):
            raise click.BadParameter(
                f"{path}: 需要一个对象 expected a JSON object", param_hint="--anchor"
            )
        values = {k: (str(v), 1) for k, v in data.items()}
    else:
        by_label = {label.split(" ", 1)[1]: key for key, label in ANCHOR_LABELS}
        for number, line in enumerate(text.splitlines(), start=1):
            name, sep, value = line.partition(":")
            english = name.strip().split(" ", 1)[-1] if sep else ""
            if english in by_label:
                values[by_label[english]] = (value.strip(), number)
    for key, label in ANCHOR_LABELS:
        if key not in values and key not in ("key_id", "at"):
            raise click.BadParameter(
                f"{path}: 缺少 missing '{label}: …' (key {key})", param_hint="--anchor"
            )

    def field(key: str, pattern: re.Pattern[str], expected: str) -> str:
        value, line = values.get(key, ("", 0))
        if not pattern.match(value):
            raise click.BadParameter(
                f"{path} line {line}: {key} 应为 expected {expected}; got {value!r}",
                param_hint="--anchor",
            )
        return value

    return Anchor(
        log_id=field("log_id", re.compile(r"^[0-9a-f-]{36}$"), "a log id (uuid)"),
        key_id=values.get("key_id", ("", 0))[0],
        seq=int(field("seq", re.compile(r"^\d+$"), "a link number")),
        head=field("head", HEX64, "64 hex digits"),
        records=int(field("records", re.compile(r"^\d+$"), "a record count")),
        at=values.get("at", ("", 0))[0],
    )


def print_head(state: State, verdict: Verdict | None, head: str, records: int) -> None:
    state.out.print(f"链头 chain head: {head}", highlight=False)
    line = f"记录数 records: {records:,}"
    if verdict is not None:
        line += f"  (链接 links: {verdict.links:,})"
    state.out.print(line, highlight=False)


@cli.command("verify-log")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="锚点文件 an anchor written by `log anchor` (repeatable): the log must still extend it.",
)
@DB_OPTION
@STATE_OPTION
@pass_state
def verify_log(
    state: State, anchors: tuple[Path, ...], db: str | None, state_dir: Path | None
) -> None:
    """核验投递日志 verify the whole delivery log against its hash chain.

    Names the first record that was edited, deleted, inserted or reordered behind the
    log's back. Exit 0: intact; 1: broken.
    """
    parsed = [read_anchor(path) for path in anchors]
    store, _ = open_log(db, state_dir_for(state.config, state_dir))
    try:
        state.out.print(f"日志 log: {store.url_display}", highlight=False, markup=False)
        verdict = store.verify(parsed)
        head, records = store.chain_head()
    finally:
        store.close()
    print_head(state, verdict, verdict.head or head, verdict.records)
    if parsed:
        state.out.print(f"锚点 anchors: {verdict.anchors}/{len(parsed)} 已核验 verified")
    if verdict.broken is None:
        state.out.print(
            "完好 intact: 哈希链完整，未发现篡改 the hash chain holds; nothing was edited,"
            " deleted, inserted or reordered."
        )
        return
    state.err.print(
        f"已被篡改 BROKEN: 首个断点 first break: {verdict.broken}", markup=False, highlight=False
    )
    if records != verdict.records:
        state.err.print(
            f"当前链头 the stored head is {head} ({records:,} records); 在此之前的部分完好"
            f" verified up to {verdict.records:,} records",
            markup=False,
            highlight=False,
        )
    raise click.exceptions.Exit(1)


@log_command.command("anchor")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="锚点文件 where to write it (default: anchors/ in the state folder); FILE.json beside it.",
)
@DB_OPTION
@STATE_OPTION
@pass_state
def log_anchor(state: State, out: Path | None, db: str | None, state_dir: Path | None) -> None:
    """写下链头 write the chain head to a small file to print, e-mail or hand on.

    Whoever keeps it can later prove the log was not rewritten since:
    broadcaster verify-log --anchor FILE.
    """
    from broadcaster.log.chain import Anchor

    folder = state_dir_for(state.config, state_dir)
    store, _ = open_log(db, folder)
    try:
        store.flush()
        log_id, seq, head, records = store.chain_identity()
        key_id, where = store.key_id, store.url_display
    finally:
        store.close()
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    anchor = Anchor(log_id, key_id, seq, head, records, at)
    if out is None:
        out = private_folder(folder / "anchors") / f"anchor-{at.replace(':', '')}-{seq}.txt"
    text = anchor_text(anchor, where)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(
            json.dumps(anchor.__dict__, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    except OSError as exc:
        raise click.BadParameter(
            f"无法写入 cannot write {out}: {exc.strerror}", param_hint="--out"
        ) from None
    state.out.print(text, highlight=False, markup=False)
    state.out.print(f"已写入 written: {out} (+ {out.with_suffix('.json').name})", highlight=False)


@log_command.command("prune")
@click.option(
    "--before",
    metavar="DATE",
    help="删除此日期之前的正文 drop texts of deliveries scheduled before DATE"
    " (default: today minus log.retention_days).",
)
@click.option("--by", "actor", default="cli", show_default=True, help="操作人 who prunes.")
@click.option("--yes", is_flag=True, help="确认 confirm: a prune cannot be undone.")
@DB_OPTION
@STATE_OPTION
@pass_state
def log_prune(
    state: State,
    before: str | None,
    actor: str,
    yes: bool,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """按保留期删除正文 drop expired message texts and masked numbers.

    Hashes, counts and the hash chain stay: verify-log still passes. Never earlier than
    the config's log.retention_days allows.
    """
    from broadcaster.cli.campaign import load

    campaign, now = load(state, None)
    retention = campaign.config.log.retention_days
    tz = campaign.tz
    day = parse_date(before, "--before")
    if retention is None and day is None:
        raise click.UsageError(
            "未配置保留期 no retention configured: set log.retention_days in the config,"
            " or give --before DATE"
        )
    latest = (now - dt.timedelta(days=retention)).date() if retention is not None else None
    if day is None:
        assert latest is not None
        day = latest
    elif latest is not None and day > latest:
        raise click.BadParameter(
            f"{day} 仍在保留期内 is within the retention period (log.retention_days:"
            f" {retention}); the latest allowed is {latest}",
            param_hint="--before",
        )
    elif day > now.date():
        raise click.BadParameter(f"{day} 在将来 is in the future", param_hint="--before")
    if not yes:
        raise click.UsageError(
            f"删除 {day} 之前的正文不可撤销 dropping texts before {day} cannot be undone: add --yes"
        )
    cutoff = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    store, _ = open_log(db, state_dir_for(state.config, state_dir))
    try:
        tally = store.prune(cutoff, now, actor)
        head, records = store.chain_head()
    finally:
        store.close()
    state.out.print(
        f"已删除 dropped (before {day}): 正文 texts {tally.texts}, 附加内容 payloads"
        f" {tally.payloads}, 号码显示 masked numbers {tally.displays}",
        highlight=False,
    )
    print_head(state, None, head, records)
