"""Relay hops and hand-offs on the command line: `broadcaster log --late-relays` and
`--handoffs` (called from `log`), and `broadcaster confirm` (an operator confirms a hop or
hand-off forwarded, e.g. after a phone call).

Read from the log alone (its `relay_hops` table), so an auditor needs no working config.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from broadcaster.cli import State, cli
from broadcaster.cli.campaign import pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.cli.output import fit_table
from broadcaster.engine.app import open_log, state_dir_for
from broadcaster.vocab import ErrorClass, Status

if TYPE_CHECKING:  # the log (SQLAlchemy) is imported when a command reads it, not by `plan`
    from broadcaster.log import DeliveryLog
    from broadcaster.log.relay import HopState, RelayTally

__all__ = [
    "confirm",
    "print_handoffs",
    "print_relay_tally",
    "print_relays",
    "relay_states",
]

MIN_PREFIX = 8


def relay_states(
    store: DeliveryLog, campaign: str | None, now: dt.datetime, **kw: object
) -> list[HopState]:
    from broadcaster.log.relay import hop_states

    if campaign is None:
        raise click.UsageError("需要活动 --campaign is needed (no config here to read it from)")
    return store.read(lambda conn: hop_states(conn, campaign, now, **kw))  # type: ignore[arg-type]


def _tally_line(level: str, t: RelayTally) -> list[str]:
    return [
        level,
        str(t.total),
        str(t.in_time),
        str(t.done_late),
        str(t.waiting),
        f"[bold red]{t.overdue}[/bold red]" if t.overdue else "0",
        str(t.not_done),
    ]


def print_relay_tally(state: State, states: list[HopState]) -> None:
    """Hops per level: counted apart from the direct deliveries of the coverage table."""
    from broadcaster.log.relay import relay_tally

    hops = [s for s in states if s.hop.level > 0]
    tally = relay_tally(hops)
    table = Table(
        title="逐级转发 relay hops (counted apart from direct deliveries)", title_justify="left"
    )
    for column in (
        "层级 level",
        "转发 hops",
        "按时 in time",
        "逾期完成 done late",
        "待确认 waiting",
        "逾期未确认 overdue",
        "未完成 not done",
    ):
        table.add_column(column, justify="left" if column.startswith("层级") else "right")
    levels = sorted({(s.hop.level, s.hop.level_tag) for s in hops})
    for level, tag in levels:
        table.add_row(*_tally_line(f"{level} {tag}", tally[level]))
    if hops:
        table.add_row(*_tally_line("合计 all", tally[-1]))
    state.out.print(fit_table(table, state.out.width, 0))


def print_relays(
    state: State, states: list[HopState], tz: dt.tzinfo, *, late_only: bool, limit: int
) -> None:
    """Hops counted per level apart from direct deliveries, then the hops (late ones)."""
    hops = [s for s in states if s.hop.level > 0]
    print_relay_tally(state, states)
    shown = [s for s in hops if s.late] if late_only else hops
    listing = Table(
        title="逾期的转发 late hops" if late_only else "转发 hops", title_justify="left"
    )
    for column in (
        "截止 due",
        "层级 level",
        "对象 target",
        "负责人 person",
        "结果 outcome",
        "完成于 done at",
        "上一级 depends on",
        "键 key",
    ):
        listing.add_column(column)
    for s in shown[-limit:]:
        listing.add_row(
            f"{s.hop.due_at.astimezone(tz):%m-%d %H:%M}",
            f"{s.hop.level} {s.hop.level_tag}",
            s.recipient_display,
            s.hop.person or "—",
            s.outcome,
            f"{s.done_at.astimezone(tz):%m-%d %H:%M}" if s.done_at else "—",
            s.hop.parent_key[:12],
            s.key[:12],
        )
    state.out.print(fit_table(listing, state.out.width, 2, 3))
    state.out.print(
        f"逾期 late: {sum(1 for s in hops if s.late)} / {len(hops)} 次转发 hops"
        + (f"; showing the last {limit}" if len(shown) > limit else "")
    )
    if any(s.waiting for s in shown):
        state.out.print(
            "人工确认 confirm by hand: broadcaster confirm KEY... --by NAME --note TEXT"
        )


def print_handoffs(state: State, states: list[HopState], tz: dt.tzinfo, *, limit: int) -> None:
    """Hand-offs by person: unconfirmed past their deadline listed, confirmed counted apart."""
    handoffs = [s for s in states if s.hop.confirm]
    confirmed = [s for s in handoffs if s.done]
    overdue = [s for s in handoffs if s.waiting and s.late]
    expired = [s for s in handoffs if s.error_class is ErrorClass.EXPIRED]
    by_person: dict[str, list[HopState]] = defaultdict(list)
    for s in overdue:
        by_person[s.hop.person or "—"].append(s)
    table = Table(title="逾期未确认的转发 hand-offs overdue, by person", title_justify="left")
    for column in ("负责人 person", "群 group", "截止 due", "层级 level", "键 key"):
        table.add_column(column)
    for person in sorted(by_person):
        for s in by_person[person][:limit]:
            table.add_row(
                person,
                s.recipient_display,
                f"{s.hop.due_at.astimezone(tz):%m-%d %H:%M}",
                str(s.hop.level),
                s.key[:12],
            )
    state.out.print(fit_table(table, state.out.width, 1))
    state.out.print(
        f"已确认 confirmed: {len(confirmed)}"
        f" (逾期确认 late: {sum(1 for s in confirmed if s.late)}); "
        f"逾期未确认 overdue: {len(overdue)} ({len(by_person)} 人 people); "
        f"已过期 expired: {len(expired)}; "
        f"待确认 waiting in time: {sum(1 for s in handoffs if s.waiting and not s.late)}"
        f" — 共 {len(handoffs)} 次转发 hand-offs (转发确认不是群成员的送达回执"
        " a confirmation is not a receipt from the group's members)"
    )


@cli.command("confirm")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.option("--note", required=True, help="依据 how it was confirmed (e.g. 电话确认已转发).")
@click.option("--by", "operator", required=True, help="确认人 who confirms (operator:NAME).")
@click.option(
    "--campaign",
    "campaign_id",
    help="活动 campaign id (default: the config's; a log may hold several campaigns).",
)
@DB_OPTION
@STATE_OPTION
@pass_state
def confirm(
    state: State,
    keys: tuple[str, ...],
    note: str,
    operator: str,
    campaign_id: str | None,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """人工确认已转发 an operator confirms a relay hop or hand-off was forwarded.

    KEY is the key of a hop or hand-off waiting for its confirmation (or its first 8+
    characters), as `broadcaster log --late-relays` and `--handoffs` list them. Recorded
    as operator:NAME with the note; late when after the deadline. Nothing is written
    unless every KEY names one waiting hop or hand-off.
    """
    from broadcaster.cli.log import campaign_zone
    from broadcaster.log import Event

    note, operator = note.strip(), operator.strip()
    if not note:
        raise click.BadParameter("依据不能为空 a note is required", param_hint="--note")
    if not operator or len(operator) > 64 or not operator.isprintable():
        raise click.BadParameter(
            f"确认人无效 expected a name of 1 to 64 printable characters; got {operator!r}",
            param_hint="--by",
        )
    if state.config.exists():
        campaign_id = campaign_id or campaign_zone(state.config)[1]
    store, _ = open_log(db, state_dir_for(state.config, state_dir))
    try:
        now = dt.datetime.now(dt.UTC)
        waiting = [
            s
            for s in relay_states(store, campaign_id, now)
            if s.waiting and s.status is Status.ACCEPTED
        ]
        chosen: dict[str, HopState] = {}
        problems: list[str] = []
        for given in keys:
            prefix = given.strip().lower()
            found = [s for s in waiting if s.key.startswith(prefix)]
            if len(prefix) < MIN_PREFIX:
                problems.append(f"{given!r}: 太短 at least {MIN_PREFIX} characters of the key")
            elif len(found) == 1:
                chosen[found[0].key] = found[0]
            elif found:
                problems.append(f"{given!r}: 不唯一 names {len(found)} hops; give more characters")
            else:
                problems.append(
                    f"{given!r}: 没有待确认的转发 no hop or hand-off waits for this key"
                )
        if problems:
            raise click.BadParameter("; ".join(problems), param_hint="KEY")
        actor = f"operator:{operator}"
        refused = store.append(
            [
                Event(
                    s.key,
                    Status.DELIVERED,
                    now,
                    ErrorClass.OPERATOR,
                    f"forwarded_confirmed 人工确认已转发 confirmed by {actor}: {note}",
                    actor=actor,
                )
                for s in chosen.values()
            ]
        )
        done = sum(1 for why in refused if why is None)
        state.out.print(f"已记录 recorded: {done} 次转发已确认 hops confirmed ({actor})")
        for s, why in zip(chosen.values(), refused, strict=True):
            if why is not None:
                state.err.print(f"未记录 not recorded {s.key[:12]}: {why}", highlight=False)
        if done < len(chosen):
            raise click.exceptions.Exit(1)
    finally:
        store.close()
