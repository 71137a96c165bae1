"""Rules × calendar → occurrences; occurrences × channels × targets → plan items.

Pure and deterministic: takes `now` as an argument, reads no clock, sends nothing,
touches no network or database. `plan` is the single source of truth: `run` fires
exactly the occurrences `occurrences()` yields and dispatches exactly the items
`expand()` yields for each.

Every iterator here streams in time order, so a year of millions of target
occurrences is never held in memory.
"""

from __future__ import annotations

import calendar as pycal
import datetime as dt
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.config.schema import WEEKDAYS, When
from broadcaster.model.targets import ContactFilter, TargetNode, contact_filter, reachable
from broadcaster.model.themes import ThemeBook
from broadcaster.vocab import Addressing, MessageKind

__all__ = ["Occurrence", "PlanItem", "Planner"]

EPOCH = dt.date(2000, 1, 3)  # a Monday: week and day ordinals count from here
ROLL_MARGIN = dt.timedelta(days=45)  # how far a holiday roll may move a date


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One firing of one rule."""

    rule_id: str
    at: dt.datetime  # aware, campaign time zone
    ordinal: int  # position in the rule's own sequence: drives topic rotation
    nominal: dt.date  # the date before any holiday roll
    estimated: bool = False  # depended on a year without an official holiday file
    id: str = field(default="", compare=False)  # "rule@YYYY-MM-DDTHH:MM", filled in when empty

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"{self.rule_id}@{self.at:%Y-%m-%dT%H:%M}")


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One occurrence for one channel and one target."""

    occurrence: Occurrence
    channel_id: str
    target_id: str
    theme: str | None
    occasion: str | None
    topic: str | None
    template: str | None  # None when no template exists for this kind and audience
    length: int | None  # characters of the rendered text (None when not rendered)
    recipients: int  # deliveries this item fans out to
    estimated: bool


class Planner:
    """Plans one campaign. Holds only caches; every method is a pure function of its inputs."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.themes = ThemeBook(campaign)
        self._read_flags: dict[str, tuple[bool, bool, bool, bool, bool]] = {}
        self._lengths: dict[tuple[object, ...], int] = {}
        self._reach: dict[tuple[str, ContactFilter | None, bool], int] = {}

    # -- dates

    def _nominal_days(
        self, when: When, first: dt.date, last: dt.date
    ) -> Iterator[tuple[dt.date, int, bool]]:
        """(date, ordinal, estimated) for each day the pattern names in [first, last]."""
        cal = self.campaign.calendar
        if when.weekdays is not None:
            days = sorted({WEEKDAYS.index(w) for w in when.weekdays})
            pos = {wd: i for i, wd in enumerate(days)}
            d = first
            while d <= last:
                wd = d.weekday()
                if wd in pos:
                    yield d, ((d - EPOCH).days // 7) * len(days) + pos[wd], False
                d += dt.timedelta(days=1)
        elif when.daily or when.working_days:
            d = first
            while d <= last:
                if not when.working_days:
                    yield d, (d - EPOCH).days, False
                elif cal.is_working_day(d):
                    yield d, (d - EPOCH).days, not cal.is_known(d.year)
                d += dt.timedelta(days=1)
        elif when.monthdays is not None:
            days = sorted(set(when.monthdays), key=lambda x: 99 if x == -1 else x)
            year, month = first.year, first.month
            while (year, month) <= (last.year, last.month):
                month_index = (year - EPOCH.year) * 12 + month - 1
                for i, md in enumerate(days):
                    day = pycal.monthrange(year, month)[1] if md == -1 else md
                    d = dt.date(year, month, day)
                    if first <= d <= last:
                        yield d, month_index * len(days) + i, False
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        else:
            for i, d in enumerate(sorted(set(when.dates or ()))):
                if first <= d <= last:
                    yield d, i, False

    def _days(
        self, spec: RuleSpec, first: dt.date, last: dt.date
    ) -> Iterator[tuple[dt.date, int, dt.date, bool]]:
        """(actual date, ordinal, nominal date, estimated) after the holiday policy."""
        when = spec.rule.when
        policy = when.on_holiday
        cal = self.campaign.calendar
        if policy == "run" or when.working_days:
            for d, ordinal, est in self._nominal_days(when, first, last):
                yield d, ordinal, d, est
            return
        previous: dt.date | None = None
        for d, ordinal, est in self._nominal_days(when, first - ROLL_MARGIN, last + ROLL_MARGIN):
            estimated = est or not cal.is_known(d.year)
            if cal.is_working_day(d):
                actual = d
            elif policy == "skip":
                continue
            else:
                roll = (
                    cal.next_working_day
                    if policy == "next_working_day"
                    else cal.previous_working_day
                )
                answer = roll(d)
                actual, estimated = answer.date, estimated or answer.estimated
            if actual == previous or not (first <= actual <= last):
                continue  # two nominal dates rolled onto one day: it fires once
            previous = actual
            yield actual, ordinal, d, estimated

    @staticmethod
    def times(when: When) -> list[dt.time]:
        """Times of day a rule fires, `repeat` expanded, sorted."""
        out: set[dt.time] = set()
        for t in when.at:
            out.add(t)
            if when.repeat:
                minutes = t.hour * 60 + t.minute + when.repeat.minutes
                end = when.repeat.until.hour * 60 + when.repeat.until.minute
                while minutes <= end and minutes < 24 * 60:
                    out.add(dt.time(minutes // 60, minutes % 60))
                    minutes += when.repeat.minutes
        return sorted(out)

    def _active(self, spec: RuleSpec, d: dt.date) -> bool:
        rule = spec.rule
        if rule.active and (d < rule.active.start or (rule.active.end and d > rule.active.end)):
            return False
        if not self.campaign.config.phases:
            return True
        phase = self.campaign.phase_on(d)
        if phase is None:
            return False  # outside the campaign nothing fires
        return rule.phases is None or phase.id in rule.phases

    # -- occurrences

    def rule_occurrences(
        self, spec: RuleSpec, start: dt.datetime, end: dt.datetime
    ) -> Iterator[Occurrence]:
        """Occurrences of one rule with start <= at < end, in time order."""
        if not spec.rule.enabled:
            return
        tz = self.campaign.tz
        start, end = start.astimezone(tz), end.astimezone(tz)
        times = self.times(spec.rule.when)
        per_day = len(times)
        for d, ordinal, nominal, estimated in self._days(spec, start.date(), end.date()):
            if not self._active(spec, d):
                continue
            for i, t in enumerate(times):
                at = dt.datetime.combine(d, t, tzinfo=tz)
                if start <= at < end:
                    yield Occurrence(spec.rule.id, at, ordinal * per_day + i, nominal, estimated)

    def occurrences(
        self, start: dt.datetime, end: dt.datetime, rules: Iterable[RuleSpec] | None = None
    ) -> Iterator[Occurrence]:
        """Occurrences of all (or the given) rules in [start, end), merged in time order."""
        specs = list(self.campaign.rules if rules is None else rules)
        order = {s.id: s.index for s in specs}
        streams = [self.rule_occurrences(s, start, end) for s in specs]
        return heapq.merge(*streams, key=lambda o: (o.at, order[o.rule_id]))

    # -- items

    @cached_property
    def _rules(self) -> dict[str, RuleSpec]:
        return {s.id: s for s in self.campaign.rules}

    def expand(
        self, occurrence: Occurrence, *, render: bool = True, spec: RuleSpec | None = None
    ) -> Iterator[PlanItem]:
        """The plan items of one occurrence: each channel × each target, theme and template chosen.

        `spec` replaces the configured rule (an ad-hoc `send-now` rule that is not in the config).
        """
        campaign = self.campaign
        spec = spec or self._rules[occurrence.rule_id]
        d = occurrence.at.date()
        renderer = campaign.renderer
        for channel_id in spec.rule.channels:
            channel = campaign.channels[channel_id]
            per_contact = channel.addressing is Addressing.CONTACTS
            only = contact_filter(spec.rule) if per_contact else None
            mobile_only = channel.kind is MessageKind.SMS
            for target_id in spec.targets:
                target = campaign.targets[target_id]
                choice = self.themes.choose(spec, d, target)
                topic = self.themes.topic(choice, occurrence.ordinal, target_id)
                name = choice.template or topic
                template = (
                    renderer.template_name(channel.kind, name, target.audience) if name else None
                )
                length = None
                if render and template is not None:
                    length = self.length(
                        template,
                        occurrence,
                        channel_id,
                        target_id,
                        choice.theme,
                        choice.occasion,
                        topic,
                    )
                yield PlanItem(
                    occurrence,
                    channel_id,
                    target_id,
                    choice.theme,
                    choice.occasion,
                    topic,
                    template,
                    length,
                    (self.reach(target, only, mobile_only=mobile_only) if per_contact else 1),
                    occurrence.estimated or choice.estimated,
                )

    def reach(self, target: TargetNode, only: ContactFilter | None, *, mobile_only: bool) -> int:
        """How many of a target's contacts a channel reaches (SMS: mobiles; a rule's filter)."""
        if only is None and not mobile_only:
            return len(target.contacts)
        key = (target.id, only, mobile_only)
        found = self._reach.get(key)
        if found is None:
            found = self._reach[key] = len(
                reachable(target.contacts, mobile_only=mobile_only, only=only)
            )
        return found

    def items(
        self, start: dt.datetime, end: dt.datetime, *, render: bool = True
    ) -> Iterator[PlanItem]:
        """Every plan item in [start, end), in time order."""
        for occurrence in self.occurrences(start, end):
            yield from self.expand(occurrence, render=render)

    # -- text

    def _reads(self, template: str) -> tuple[bool, bool, bool, bool, bool]:
        """Whether a template reads (target or vars, the date, the time, the channel, the rule)."""
        found = self._read_flags.get(template)
        if found is None:
            reads = self.campaign.renderer.reads(template)
            found = (
                bool(reads & {"target", "vars"}),
                bool(reads & {"date", "weekday", "lunar", "phase"}),
                "time" in reads,
                "channel" in reads,
                "rule" in reads,
            )
            self._read_flags[template] = found
        return found

    def length(
        self,
        template: str,
        occurrence: Occurrence,
        channel_id: str,
        target_id: str,
        theme: str | None,
        occasion: str | None,
        topic: str | None,
    ) -> int:
        """Characters of the rendered text, computed once per distinct set of what it reads."""
        by_target, by_date, by_time, by_channel, by_rule = self._reads(template)
        key = (
            template,
            target_id if by_target else None,
            occurrence.at.date() if by_date else None,
            occurrence.at.time() if by_time else None,
            channel_id if by_channel else None,
            occurrence.rule_id if by_rule else None,
            theme,
            occasion,
            topic,
        )
        found = self._lengths.get(key)
        if found is None:
            found = len(
                self.text(template, occurrence, channel_id, target_id, theme, occasion, topic)
            )
            if len(self._lengths) > 500_000:
                self._lengths.clear()
            self._lengths[key] = found
        return found

    def text(
        self,
        template: str,
        occurrence: Occurrence,
        channel_id: str,
        target_id: str,
        theme: str | None,
        occasion: str | None,
        topic: str | None,
        extra_vars: dict[str, object] | None = None,
    ) -> str:
        """The exact text of one plan item, rendered once per distinct set of what it reads."""
        kind, context, key = self._render_inputs(
            occurrence, channel_id, target_id, theme, occasion, topic, extra_vars
        )
        return self.campaign.renderer.render(template, kind, context, key)

    def text_and_params(
        self,
        template: str,
        occurrence: Occurrence,
        channel_id: str,
        target_id: str,
        theme: str | None,
        occasion: str | None,
        topic: str | None,
        extra_vars: dict[str, object] | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The text and the values the template read (the message's parameters)."""
        kind, context, key = self._render_inputs(
            occurrence, channel_id, target_id, theme, occasion, topic, extra_vars
        )
        return self.campaign.renderer.render_with_params(template, kind, context, key)

    def _render_inputs(
        self,
        occurrence: Occurrence,
        channel_id: str,
        target_id: str,
        theme: str | None,
        occasion: str | None,
        topic: str | None,
        extra_vars: dict[str, object] | None,
    ) -> tuple[MessageKind, Callable[[], Mapping[str, Any]], dict[str, object]]:
        """The kind, a context maker and the render cache key of one plan item."""
        from broadcaster.model.context import message_context

        campaign = self.campaign
        d = occurrence.at.date()
        key: dict[str, object] = {
            "campaign": None,
            "target": target_id,
            "vars": target_id,
            "date": d,
            "weekday": d,
            "lunar": d,
            "time": occurrence.at.time(),
            "theme": theme,
            "occasion": occasion,
            "phase": d,
            "topic": topic,
            "channel": channel_id,
            "rule": occurrence.rule_id,
        }
        if extra_vars:
            key["vars"] = (target_id, tuple(sorted(extra_vars.items())))

        def context() -> Mapping[str, Any]:
            return message_context(
                campaign, occurrence, channel_id, target_id, theme, occasion, topic, extra_vars
            )

        return campaign.channels[channel_id].kind, context, key
