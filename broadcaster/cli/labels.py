"""How the commands name things for people: Chinese first, the English or the id beside.

Statuses, error classes and message kinds carry their own labels (`broadcaster.vocab`);
this module adds weekdays, themes and topics, and the words of `run`'s activity lines.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from broadcaster.model.render import WEEKDAY_NAMES
from broadcaster.vocab import ErrorClass, Status

__all__ = [
    "activity_kind",
    "activity_text",
    "error_label",
    "occasion_label",
    "theme_label",
    "topic_label",
    "weekday",
    "when",
]

WEEKDAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ACTIVITY = {
    "fired": "触发 fired",
    "done": "完成 done",
    "missed": "错过 missed",
    "error": "错误 error",
    "pruned": "清理 pruned",
    "start": "启动 start",
    "stop": "停止 stop",
    "reload": "重载 reload",
    "resumed": "续发 resumed",
    "standby": "待命 standby",
}
_COUNT = re.compile(r"\b([a-z]+)×(\d+)")


def weekday(day: dt.date) -> str:
    """星期二 Tue."""
    return f"{WEEKDAY_NAMES[day.weekday()]} {WEEKDAYS_EN[day.weekday()]}"


def when(at: dt.datetime, date_format: str = "%m-%d") -> str:
    """A time with its weekday: 03-03 星期二 Tue 10:00."""
    return f"{at:{date_format}} {weekday(at)} {at:%H:%M}"


def theme_label(campaign: Any, theme_id: str | None) -> str:
    """A theme by name with its id: 常态化防骗提醒 (routine); '—' for none."""
    if not theme_id:
        return "—"
    theme = campaign.config.themes.get(theme_id)
    return f"{theme.name} ({theme_id})" if theme is not None else theme_id


def occasion_label(campaign: Any, occasion_id: str | None) -> str:
    """An occasion by name with its id: 春节 (spring_festival)."""
    if not occasion_id:
        return "—"
    found = next((o for o in campaign.config.occasions if o.id == occasion_id), None)
    return f"{found.name} ({occasion_id})" if found is not None else occasion_id


def topic_label(campaign: Any, topic_id: str | None) -> str:
    """A fraud type by name with its id: 冒充公检法 (fake_police)."""
    if not topic_id:
        return "—"
    topic = campaign.renderer.topics.get(topic_id)
    return f"{topic.name} ({topic_id})" if topic is not None else topic_id


def error_label(error_class: ErrorClass | str | None) -> str:
    if not error_class:
        return ""
    try:
        return ErrorClass(error_class).label
    except ValueError:
        return str(error_class)


def activity_kind(kind: str) -> str:
    return ACTIVITY.get(kind, kind)


def activity_text(text: str) -> str:
    """An activity line with its status counts labelled: accepted×2 → 已受理 accepted×2."""

    def label(m: re.Match[str]) -> str:
        try:
            return f"{Status(m[1]).label}×{m[2]}"
        except ValueError:
            return m[0]

    return _COUNT.sub(label, text)
