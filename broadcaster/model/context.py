"""The variables a message template sees; the list in the README is this function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broadcaster.model.calendar import lunar_label
from broadcaster.model.render import WEEKDAY_NAMES

if TYPE_CHECKING:
    from broadcaster.model.campaign import Campaign
    from broadcaster.model.plan import Occurrence

__all__ = ["message_context"]


def message_context(
    campaign: Campaign,
    occurrence: Occurrence,
    channel_id: str,
    target_id: str,
    theme: str | None,
    occasion: str | None,
    topic: str | None,
    extra_vars: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Template context for one message. Values are plain data: dicts, strings, dates."""
    config = campaign.config
    d = occurrence.at.date()
    target = campaign.targets[target_id]
    channel = campaign.channels[channel_id]
    rule = next((r.rule for r in campaign.rules if r.id == occurrence.rule_id), None)
    phase = campaign.phase_on(d)
    topics = campaign.renderer.topics
    return {
        "campaign": {
            "id": config.campaign.id,
            "name": config.campaign.name,
            "office": config.campaign.office,
        },
        "target": target.as_context(),
        "vars": {**campaign.vars_by_target.get(target_id, {}), **(extra_vars or {})},
        "theme": {"id": theme, "name": config.themes[theme].name}
        if theme in config.themes
        else None,
        "topic": topics[topic].as_context() if topic in topics else None,
        "occasion": (
            {"id": occasion, "name": campaign.occasion(occasion).name}
            if occasion is not None
            else None
        ),
        "phase": {"id": phase.id, "name": phase.name} if phase else None,
        "date": d,
        "weekday": WEEKDAY_NAMES[d.weekday()],
        "lunar": lunar_label(d),
        "time": f"{occurrence.at:%H:%M}",
        "channel": {
            "id": channel_id,
            "kind": channel.kind.value,
            "name": channel.name or channel_id,
        },
        "rule": {
            "id": occurrence.rule_id,
            "name": (rule.name if rule else "") or occurrence.rule_id,
        },
    }
