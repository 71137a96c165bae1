"""Relay down the hierarchy (按时派发及时转发): the hops one push becomes. Pure.

A rule with `relay:` pushes to its targets as usual; each level of the relay then
names, by tag, the targets below the level above that must receive it in turn
(township → village → grid group; centre → counsellors → class groups). Each hop is
a delivery of its own on the relay's channel, due a fixed time after the hop above is
due (so a level's deadline never depends on when the level above happened to act).
Every text carries the instruction for the level below it ("请于2小时内转发至…").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from broadcaster.model.config.schema import Relay, RelayLevel
from broadcaster.model.targets import TargetTree

__all__ = ["PlannedHop", "instruction", "plan_hops"]


@dataclass(frozen=True)
class PlannedHop:
    """One hop below a pushed target: where it goes, which target it comes from, when due."""

    target_id: str
    parent_target: str  # the pushed target (level 1) or the hop above
    level: int  # 1: the first level below the push
    tag: str
    due_after: dt.timedelta  # from the push's scheduled time
    say: str  # the instruction this hop's text carries for the level below ("" at the last)


def _below(tree: TargetTree, parent: str, tag: str) -> list[str]:
    """Targets tagged `tag` under `parent` (not itself), in tree order."""
    under = tree.subtree(parent) - {parent}
    return [t for t in tree.order if t in under and tag in tree[t].tags]


def _duration(level: RelayLevel) -> str:
    minutes = level.minutes
    if minutes % 1440 == 0:
        return f"{minutes // 1440}天"
    if minutes % 60 == 0:
        return f"{minutes // 60}小时"
    return f"{minutes}分钟"


def instruction(level: RelayLevel, names: list[str]) -> str:
    """The line a text carries for the people who forward it to `names` (the level below)."""
    if level.say:
        return level.say
    shown = "、".join(names[:3]) + (f"等{len(names)}个群" if len(names) > 3 else "")
    return f"请于{_duration(level)}内转发至{shown or '下一级群'}。"


def plan_hops(tree: TargetTree, root: str, relay: Relay) -> tuple[str, list[PlannedHop]]:
    """The instruction the push to `root` carries, and every hop below it, level by level."""
    hops: list[PlannedHop] = []
    first = relay.levels[0]
    top_children = _below(tree, root, first.to)
    top_say = instruction(first, [tree[t].name for t in top_children]) if top_children else ""

    def walk(parent: str, depth: int, due: dt.timedelta) -> Iterator[PlannedHop]:
        if depth >= len(relay.levels):
            return
        level = relay.levels[depth]
        when = due + dt.timedelta(minutes=level.minutes)
        for child in _below(tree, parent, level.to):
            say = ""
            if depth + 1 < len(relay.levels):
                nxt = relay.levels[depth + 1]
                grandchildren = _below(tree, child, nxt.to)
                if grandchildren:
                    say = instruction(nxt, [tree[t].name for t in grandchildren])
            yield PlannedHop(child, parent, depth + 1, level.to, when, say)
            yield from walk(child, depth + 1, when)

    hops.extend(walk(root, 0, dt.timedelta(0)))
    return top_say, hops
