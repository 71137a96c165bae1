"""The LED rotation bound over a planned period, for `plan` (pure: no plugin, no log).

Each screen's planned sends (rendered), the feed's texts from its channel's settings, and
`broadcaster.led.playlist.prove` over the period: the same proof the `led` plugin's
`check_schedule()` makes at `validate`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from broadcaster.led.offer import Sent, feed_settings_from, is_alert, items_over
from broadcaster.led.playlist import ScreenSpec, prove, text_problems
from broadcaster.model.plan import PlanItem, Planner

__all__ = ["prove_screens"]


def prove_screens(
    planner: Planner, items: Iterable[PlanItem], start: dt.datetime, end: dt.datetime
) -> dict[str, list[str]]:
    """Screen id -> problems with its rotation over [start, end) (empty list: the bound holds)."""
    campaign = planner.campaign
    screens = campaign.screens
    sent: dict[str, list[Sent]] = {sid: [] for sid in screens}
    for item in items:
        screen = screens.get(item.target_id)
        if screen is None or item.template is None or item.channel_id != screen.channel:
            continue
        text, _ = planner.text_and_params(
            item.template,
            item.occurrence,
            item.channel_id,
            item.target_id,
            item.theme,
            item.occasion,
            item.topic,
        )
        key = f"{item.occurrence.rule_id}@{item.occurrence.at.isoformat(timespec='minutes')}"
        sent[screen.id].append(
            Sent(key, item.occurrence.at, text, item.template, item.theme, is_alert(item.template))
        )
    out: dict[str, list[str]] = {}
    for sid, screen in screens.items():
        channel = campaign.channels.get(screen.channel)
        feed = feed_settings_from(channel.settings if channel else {})
        problems = _settings_problems(screen, feed.hotline, feed.slogans, feed.default_slogan)
        problems += prove(screen, items_over(sent[sid], feed, start), start, end)
        out[sid] = problems
    return out


def _settings_problems(
    screen: ScreenSpec, hotline: str, slogans: dict[str, str] | object, default: str
) -> list[str]:
    who = f"显示屏 screen '{screen.id}' ({screen.name})"
    texts = [("hotline", hotline), ("default_slogan", default)]
    if isinstance(slogans, dict):
        texts += [(f"slogans.{k}", v) for k, v in slogans.items()]
    return [f"{who}: settings.{name}: {p}" for name, t in texts for p in text_problems(screen, t)]
