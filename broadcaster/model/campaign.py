"""A campaign after validation: the objects planning, rendering and dispatch work from."""

from __future__ import annotations

import builtins
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from broadcaster.channel import (
    Capabilities,
    Channel,
    ChannelContext,
    ChannelSettings,
    Message,
    MessageKind,
)
from broadcaster.errors import ConfigIssue
from broadcaster.model.calendar import ChinaCalendar
from broadcaster.model.render import Renderer
from broadcaster.model.targets import TargetTree

if TYPE_CHECKING:
    from broadcaster.model.config.schema import Config, Occasion, Phase, Rule
    from broadcaster.model.config.source import Document

__all__ = ["Campaign", "ChannelSpec", "RuleSpec"]


@dataclass(frozen=True)
class ChannelSpec:
    """A configured channel instance: plugin, validated settings, effective capabilities."""

    id: str
    type: str
    kind: MessageKind
    name: str
    plugin: builtins.type[Channel]  # `type` is also a field name here
    settings: ChannelSettings
    capabilities: Capabilities
    enabled: bool
    disabled_reason: str | None = None

    def open(self, context: ChannelContext) -> Channel:
        return self.plugin(self.settings, context)

    def message_problems(self, channel: Channel, message: Message) -> list[str]:
        """What is wrong with sending `message` here: the length budget, then the plugin's checks."""
        problems = []
        limit = self.capabilities.max_length
        if limit is not None and len(message.text) > limit:
            problems.append(
                f"超出长度预算 {len(message.text)} characters, over channel '{self.id}' max_length {limit}"
            )
        try:
            problems += channel.check_message(message)
        except Exception as exc:  # a plugin bug is reported, not raised
            problems.append(f"渠道检查失败 channel check failed: {exc!r}")
        return problems


@dataclass(frozen=True)
class RuleSpec:
    """A rule with its index in the config and the targets its selector resolved to."""

    index: int
    rule: Rule
    targets: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass
class Campaign:
    """Everything `plan`, `preview`, `run` need, validated and cross-checked."""

    path: Path
    config: Config
    doc: Document
    tz: ZoneInfo
    calendar: ChinaCalendar
    targets: TargetTree
    channels: dict[str, ChannelSpec]
    rules: list[RuleSpec]
    renderer: Renderer
    warnings: list[ConfigIssue] = field(default_factory=list)
    vars_by_target: dict[str, dict[str, Any]] = field(default_factory=dict)
    calendar_warnings: list[tuple[str, bool]] = field(
        default_factory=list
    )  # (message, fails validate)

    @property
    def calendar_stale(self) -> bool:
        """A holiday file is missing that validate must fail on (this year, or next from 1 Oct)."""
        return any(serious for _, serious in self.calendar_warnings)

    @property
    def id(self) -> str:
        return self.config.campaign.id

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def rule(self, rule_id: str) -> RuleSpec:
        return next(r for r in self.rules if r.id == rule_id)

    def span(self) -> tuple[dt.date | None, dt.date | None]:
        """First phase start and last phase end (None: open-ended or no phases)."""
        phases = self.config.phases
        if not phases:
            return None, None
        start = min(p.start for p in phases)
        end = None if any(p.end is None for p in phases) else max(p.end for p in phases if p.end)
        return start, end

    def phase_on(self, d: dt.date) -> Phase | None:
        for phase in self.config.phases:
            if phase.start <= d and (phase.end is None or d <= phase.end):
                return phase
        return None

    def occasion(self, occasion_id: str) -> Occasion:
        return next(o for o in self.config.occasions if o.id == occasion_id)
