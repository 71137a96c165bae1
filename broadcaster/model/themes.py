"""Which theme a message carries on a day, and which fraud-type topic within it.

Occasions (春节, 3·15, 开学季 …) are resolved to date spans per year. On a given
day the highest-priority occasion that applies to the target decides the theme
(ties: the one written first); without one, the phase's theme, else the
campaign's default. Within a theme, topics rotate by the rule's occurrence
ordinal, offset per target, so consecutive pushes of a rule to the same group
carry different topics and neighbouring groups do not all get the same one.
"""

from __future__ import annotations

import calendar as pycal
import datetime as dt
import zlib
from dataclasses import dataclass
from functools import cache

from broadcaster.model.calendar import lunar_dates_in_year, solar_term_date
from broadcaster.model.campaign import Campaign, RuleSpec
from broadcaster.model.config.schema import Occasion
from broadcaster.model.targets import TargetNode

__all__ = ["Choice", "OccasionSpan", "ThemeBook", "target_offset"]


@dataclass(frozen=True)
class OccasionSpan:
    occasion: Occasion
    start: dt.date
    end: dt.date
    estimated: bool = False


@dataclass(frozen=True)
class Choice:
    """The theme, occasion and topic list in force for one rule, day and target."""

    theme: str | None
    occasion: str | None
    topics: tuple[str, ...]
    template: str | None  # a fixed template replaces topics
    estimated: bool = False


@cache
def target_offset(target_id: str) -> int:
    """A stable per-target offset for topic rotation."""
    return zlib.crc32(target_id.encode("utf-8"))


class ThemeBook:
    """Resolves occasions and themes for a campaign; caches per day."""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self._years: dict[int, list[OccasionSpan]] = {}
        self._days: dict[dt.date, tuple[OccasionSpan, ...]] = {}
        self._choices: dict[tuple[object, ...], Choice] = {}

    # -- occasions

    def spans(self, year: int) -> list[OccasionSpan]:
        """Every occasion's span anchored in `year` (windows may spill into the next one)."""
        if year in self._years:
            return self._years[year]
        cal = self.campaign.calendar
        out: list[OccasionSpan] = []
        for occ in self.campaign.config.occasions:
            bases: list[tuple[dt.date, dt.date, bool]] = []
            if occ.date is not None:
                m, d = occ.date
                try:
                    start = dt.date(year, m, d)
                except ValueError:  # 02-29 outside leap years
                    start = None
                if start is not None:
                    end = start
                    if occ.until is not None:
                        um, ud = occ.until
                        end_year = year if (um, ud) >= (m, d) else year + 1
                        # "until 02-29" ends on the last day of February in any year
                        end = dt.date(end_year, um, min(ud, pycal.monthrange(end_year, um)[1]))
                    bases.append((start, end, False))
            elif occ.lunar is not None:
                bases += [(day, day, False) for day in lunar_dates_in_year(year, *occ.lunar)]
            elif occ.solar_term is not None:
                term = solar_term_date(year, occ.solar_term)
                bases.append((term, term, False))
            elif occ.holiday is not None:
                known = cal.is_known(year)
                bases += [
                    (p.start, p.end, not known) for p in cal.holidays(year) if p.name == occ.holiday
                ]
            elif occ.dates is not None:
                bases += [
                    (r.start, r.end or r.start, False) for r in occ.dates if r.start.year == year
                ]
            for start, end, estimated in bases:
                out.append(
                    OccasionSpan(
                        occ,
                        start - dt.timedelta(days=occ.before),
                        end + dt.timedelta(days=occ.after),
                        estimated,
                    )
                )
        self._years[year] = out
        return out

    def on(self, d: dt.date) -> tuple[OccasionSpan, ...]:
        """Occasions in force on d, highest priority first (ties: config order)."""
        hit = self._days.get(d)
        if hit is None:
            order = {o.id: i for i, o in enumerate(self.campaign.config.occasions)}
            found = [
                s for y in (d.year - 1, d.year) for s in self.spans(y) if s.start <= d <= s.end
            ]
            found.sort(key=lambda s: (-s.occasion.priority, order[s.occasion.id]))
            hit = tuple(found)
            self._days[d] = hit
        return hit

    # -- themes

    @staticmethod
    def applies(occ: Occasion, target: TargetNode) -> bool:
        if not occ.audiences:
            return True
        wanted = set(occ.audiences)
        return target.audience in wanted or bool(wanted & target.tags)

    def choose(self, spec: RuleSpec, d: dt.date, target: TargetNode) -> Choice:
        """The theme and topics for one rule on one day for one target."""
        rule = spec.rule
        # rules that choose alike share the cache: only their overrides set them apart
        topics = tuple(rule.topics) if rule.topics else None
        key = (rule.theme, topics, rule.template, d, target.audience, target.tags)
        hit = self._choices.get(key)
        if hit is not None:
            return hit
        config = self.campaign.config
        if rule.template:
            choice = Choice(rule.theme, None, (), rule.template)
        else:
            occasion = None
            estimated = False
            theme = rule.theme
            if theme is None:
                for span in self.on(d):
                    if self.applies(span.occasion, target):
                        occasion, theme, estimated = (
                            span.occasion.id,
                            span.occasion.theme,
                            span.estimated,
                        )
                        break
            if theme is None:
                phase = self.campaign.phase_on(d)
                theme = phase.theme if phase and phase.theme else config.default_theme
            topics = tuple(rule.topics) if rule.topics else tuple(config.themes[theme].topics)
            choice = Choice(theme, occasion, topics, None, estimated)
        self._choices[key] = choice
        return choice

    @staticmethod
    def topic(choice: Choice, ordinal: int, target_id: str) -> str | None:
        """The topic of the `ordinal`-th firing of a rule for a target."""
        if not choice.topics:
            return None
        return choice.topics[(ordinal + target_offset(target_id)) % len(choice.topics)]
