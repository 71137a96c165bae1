"""One-off sends (`send-now`): a rule that is not in the config, written down when it fires
so that a restart can rebuild and finish it (deliveries held back by quiet hours, say)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.config.schema import Rule, Selector, When
from broadcaster.model.plan import Occurrence

__all__ = ["ADHOC_PREFIX", "AdHoc"]

ADHOC_PREFIX = "now-"


@dataclass(frozen=True)
class AdHoc:
    """What a one-off send sends, to whom, through which channels."""

    label: str  # the rule or template it was started from
    channels: tuple[str, ...]
    targets: tuple[str, ...]
    rule: str | None = None  # send a configured rule's message ...
    template: str | None = None  # ... or a template (e.g. alert)
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def rule_id(self) -> str:
        return f"{ADHOC_PREFIX}{self.label}".lower().replace("_", "-")

    def note(self) -> str:
        return json.dumps({"send_now": asdict(self)}, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_note(cls, text: str | None) -> AdHoc | None:
        try:
            data = json.loads(text or "")["send_now"]
            data["channels"], data["targets"] = tuple(data["channels"]), tuple(data["targets"])
            return cls(**data)
        except (ValueError, KeyError, TypeError):
            return None

    def spec(self, campaign: Campaign, at: dt.datetime) -> RuleSpec:
        """The ad-hoc rule, taking theme and topics from the configured rule it names."""
        base = campaign.rule(self.rule).rule if self.rule else None
        rule = Rule(
            id=self.rule_id,
            name=f"立即发送 send-now {self.label}",
            channels=list(self.channels),
            targets=Selector(ids=list(self.targets)),
            when=When(dates=[at.date()], at=[at.time().replace(second=0, microsecond=0)]),
            theme=base.theme if base else None,
            topics=base.topics if base else None,
            template=base.template if base else self.template,
        )
        return RuleSpec(-1, rule, tuple(t for t in self.targets if t in campaign.targets))

    def occurrence(self, at: dt.datetime) -> Occurrence:
        minute = at.replace(second=0, microsecond=0)
        return Occurrence(self.rule_id, minute, int(minute.timestamp() // 60), minute.date())
