"""`broadcaster resolve`: an operator decides what became of deliveries nobody can find out
about (待人工 unresolved: the outcome was unknown and the channel cannot look it up)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broadcaster.cli import State, cli
from broadcaster.cli.campaign import pass_state
from broadcaster.cli.delivery import DB_OPTION, STATE_OPTION
from broadcaster.cli.log import campaign_zone
from broadcaster.engine.app import open_log, state_dir_for
from broadcaster.vocab import ErrorClass, Status

if TYPE_CHECKING:
    from broadcaster.log import DeliveryLog, DeliveryState

__all__ = ["MIN_PREFIX", "resolve"]

MIN_PREFIX = 8  # characters of a delivery key that name it (the log lists 12)
DECISIONS = {"delivered": Status.DELIVERED, "failed": Status.FAILED}  # and resend


@cli.command("resolve")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@click.option(
    "--as",
    "decision",
    type=click.Choice([*DECISIONS, "resend"]),
    required=True,
    help="决定 delivered: it arrived; failed: it did not; resend: send it again.",
)
@click.option("--note", required=True, help="理由 why (kept in the log, e.g. 已电话确认收到).")
@click.option(
    "--by", "operator", required=True, help="处理人 who decides (logged as operator:NAME)."
)
@click.option(
    "--campaign",
    "campaign_id",
    help="活动 campaign id (default: the config's; a log may hold several campaigns).",
)
@DB_OPTION
@STATE_OPTION
@pass_state
def resolve(
    state: State,
    keys: tuple[str, ...],
    decision: str,
    note: str,
    operator: str,
    campaign_id: str | None,
    db: str | None,
    state_dir: Path | None,
) -> None:
    """人工处理待人工的投递 record an operator's decision on unresolved deliveries.

    KEY is a delivery key or its first 8+ characters, as `broadcaster log --status
    unresolved` lists them. delivered and failed are written to the log as events by
    operator:NAME with the note; resend makes the deliveries due again, for the next
    sweep of `broadcaster run`. Nothing is written unless every KEY names one
    unresolved delivery.
    """
    note, operator = note.strip(), operator.strip()
    if not note:
        raise click.BadParameter("理由不能为空 a note is required", param_hint="--note")
    if not operator or len(operator) > 64 or not operator.isprintable():
        raise click.BadParameter(
            f"处理人无效 expected a name of 1 to 64 printable characters; got {operator!r}",
            param_hint="--by",
        )
    if state.config.exists():  # only the id: a broken config does not stop an operator
        campaign_id = campaign_id or campaign_zone(state.config)[1]
    store, _ = open_log(db, state_dir_for(state.config, state_dir))
    try:
        chosen = _match(store, campaign_id, keys)
        now = dt.datetime.now(dt.UTC)
        actor = f"operator:{operator}"
        from broadcaster.log import Event

        if decision == "resend":
            reason = f"人工决定重发 resend decided by {actor}: {note}"
            refused = store.append(
                [
                    Event(
                        s.key,
                        Status.DEFERRED,
                        now,
                        ErrorClass.OPERATOR,
                        reason,
                        actor=actor,
                        next_check=now,
                    )
                    for s in chosen
                ]
            )
            _report(
                state,
                chosen,
                refused,
                f"已安排重发 due again → {Status.DEFERRED.label}"
                f" ({actor}); `broadcaster run` sends them at its next sweep",
            )
            return
        status = DECISIONS[decision]
        reason = f"人工处理 decided by {actor}: {note}"
        refused = store.append(
            [Event(s.key, status, now, ErrorClass.OPERATOR, reason, actor=actor) for s in chosen]
        )
        _report(state, chosen, refused, f"{status.label} ({actor})")
    finally:
        store.close()


def _report(
    state: State, chosen: list[DeliveryState], refused: list[str | None], outcome: str
) -> None:
    """Say what was recorded; exit 1 when a delivery changed meanwhile and was left alone."""
    done = [s for s, why in zip(chosen, refused, strict=True) if why is None]
    state.out.print(f"已记录 recorded: {len(done)} 次投递 deliveries → {outcome}", markup=False)
    for s, why in zip(chosen, refused, strict=True):
        if why is not None:
            state.err.print(
                f"[yellow]未记录 not recorded[/yellow] {s.key[:12]}: 状态已变 its status changed"
                f" meanwhile ({why})",
                highlight=False,
            )
    if len(done) < len(chosen):
        raise click.exceptions.Exit(1)


def _match(store: DeliveryLog, campaign: str | None, keys: tuple[str, ...]) -> list[DeliveryState]:
    """The unresolved delivery each KEY names; a usage error naming every KEY that names none
    or several."""
    waiting = store.deliveries(campaign=campaign, status=Status.UNRESOLVED)
    chosen: dict[str, DeliveryState] = {}
    problems: list[str] = []
    for given in keys:
        prefix = given.strip().lower()
        if len(prefix) < MIN_PREFIX:
            problems.append(f"{given!r}: 太短 at least {MIN_PREFIX} characters of the key")
            continue
        found = [s for s in waiting if s.key.startswith(prefix)]
        if len(found) == 1:
            chosen[found[0].key] = found[0]
            continue
        if found:
            problems.append(
                f"{given!r}: 不唯一 names {len(found)} unresolved deliveries; give more characters"
            )
            continue
        other = store.latest([prefix]).get(prefix)
        problems.append(
            f"{given!r}: 状态是 its status is {other.status.label}, not 待人工 unresolved"
            if other is not None
            else f"{given!r}: 没有这个待人工的投递 no unresolved delivery has this key"
            + ("" if campaign is None else f" in campaign {campaign!r}")
        )
    if problems:
        raise click.BadParameter(
            "; ".join(problems) + " (broadcaster log --status unresolved lists them)",
            param_hint="KEY",
        )
    return list(chosen.values())
