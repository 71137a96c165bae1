"""A campaign after validation: the objects planning, rendering and dispatch work from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from broadcaster.errors import ConfigIssue
from broadcaster.led.playlist import ScreenSpec
from broadcaster.model.calendar import ChinaCalendar
from broadcaster.model.render import Renderer
from broadcaster.model.targets import TargetTree
from broadcaster.vocab import Addressing, MessageKind, QuietHours, RateLimit

if TYPE_CHECKING:
    from broadcaster.model.config.schema import Config, Occasion, Phase, Rule
    from broadcaster.model.config.source import Document

__all__ = ["Campaign", "ChannelSpec", "RuleSpec", "Variant"]


@dataclass(frozen=True)
class ChannelSpec:
    """A configured channel instance as the model sees it: what the config says, no plugin.

    The engine resolves it against its plugin (`broadcaster.engine.channels`): validated
    settings, capabilities, whether it is ready.
    """

    id: str
    type: str
    kind: MessageKind
    name: str
    addressing: Addressing
    enabled: bool | Literal["auto"]
    quiet_hours: QuietHours | None = None
    max_length: int | None = None
    rate_limit: RateLimit | None = None
    concurrency: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def env_names(self) -> list[str]:
        """Environment variables its settings read (`{env: NAME}` anywhere in them)."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, Mapping):
                if set(value) == {"env"} and isinstance(value["env"], str):
                    found.append(value["env"])
                else:
                    for v in value.values():
                        walk(v)
            elif isinstance(value, list | tuple):
                for v in value:
                    walk(v)

        walk(self.settings)
        return found

    def ready(self, environ: Mapping[str, str]) -> bool:
        """Whether it will send, as far as the config tells (enabled, its variables set)."""
        if self.enabled is False:
            return False
        return self.enabled is True or all(name in environ for name in self.env_names())


@dataclass(frozen=True)
class RuleSpec:
    """A rule with its index in the config and the targets its selector resolved to."""

    index: int
    rule: Rule
    targets: tuple[str, ...]

    @property
    def id(self) -> str:
        return self.rule.id


@dataclass(frozen=True)
class Variant:
    """One text a rule can send, rendered at load so `validate` can check it per channel."""

    rule_id: str
    channel_id: str
    target_id: str
    template: str
    template_file: str  # as shown in messages: relative to the campaign folder when inside it
    template_sha: str
    theme: str | None
    topic: str | None
    text: str
    params: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


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
    variants: list[Variant] = field(default_factory=list)  # rendered at load, for channel checks
    contact_files: set[Path] = field(default_factory=set)  # watched by `run` beside the YAML

    @property
    def calendar_stale(self) -> bool:
        """A holiday file is missing that validate must fail on (this year, or next from 1 Oct)."""
        return any(serious for _, serious in self.calendar_warnings)

    @property
    def id(self) -> str:
        return self.config.campaign.id

    @cached_property
    def screens(self) -> dict[str, ScreenSpec]:
        """LED screens by target id, in tree order."""
        return {n.id: n.screen for n in self.targets if n.screen is not None}

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
