"""LED screens at the config's edge: each `screen:` block becomes a `ScreenSpec`; its own
content must show in its charset and width and fit the anti-fraud bound; every text a
rule sends to it must be encodable in its charset. Each error names the screen, the
template or item, and the character, with a suggestion."""

from __future__ import annotations

from collections.abc import Callable

from broadcaster.led.playlist import OwnItem, ScreenSpec, text_problems
from broadcaster.model.config.schema import Target
from broadcaster.model.config.source import Path_

__all__ = ["screen_problems", "screen_spec", "variant_problems"]


def screen_spec(target: Target, path: tuple[str, ...], channel: str = "") -> ScreenSpec:
    screen = target.screen
    assert screen is not None
    return ScreenSpec(
        id=target.id,
        name=target.name,
        path=path,
        charset=screen.charset,
        width=screen.width,
        lines=screen.lines,
        overflow=screen.overflow,
        page_seconds=screen.page_seconds,
        max_gap=screen.max_gap,
        own=tuple(OwnItem(o.id, o.text, o.seconds) for o in screen.own),
        token_env=screen.token.env if screen.token else None,
        stale_after=screen.stale_after,
        channel=channel,
    )


def screen_problems(spec: ScreenSpec, path: Path_, error: Callable[[Path_, str], None]) -> None:
    """The screen's own content: charset, width, and each item within the gap bound."""
    who = f"显示屏 screen '{spec.id}' ({spec.name})"
    seen: set[str] = set()
    for j, item in enumerate(spec.own):
        where = (*path, "screen", "own", j)
        if item.id in seen:
            error((*where, "id"), f"{who}: 自有内容标识重复 duplicate own item id '{item.id}'")
        seen.add(item.id)
        for problem in text_problems(spec, item.text):
            error((*where, "text"), f"{who}: own item '{item.id}': {problem}")
        if item.seconds > spec.max_gap:
            error(
                (*where, "seconds"),
                f"{who}: 自有内容 own item '{item.id}' plays {item.seconds:g} s, longer than"
                f" max_gap {spec.max_gap:g} s: 屏幕自有内容没有留出反诈轮播的空间 the screen's own"
                " content leaves no room for the anti-fraud rotation (split or shorten it)",
            )


def variant_problems(spec: ScreenSpec, template_file: str, template: str, text: str) -> list[str]:
    """A rendered text the screen would show: characters outside its charset, lines too wide."""
    who = f"显示屏 screen '{spec.id}' ({spec.name})"
    return [f"{who}: 模板 template '{template}': {p}" for p in text_problems(spec, text)]
