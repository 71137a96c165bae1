"""Which anti-fraud items a screen is offered, and when each is valid.

From what was sent to the screen (the rendered fraud-type warnings and alerts, in the
delivery log at run time, or planned over a period at `validate`), the theme of the day
(its slogan) and the hotline line. A warning stays until the next one replaces it or
`warning_seconds` pass; an alert stays `alert_seconds` and pre-empts the loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from broadcaster.led.playlist import FeedItem

__all__ = ["FeedSettings", "Sent", "feed_settings_from", "is_alert", "items_at", "items_over"]


@dataclass(frozen=True)
class FeedSettings:
    """The feed's own texts and how long sent items stay."""

    hotline: str = "反诈专线96110 报警电话110"
    slogans: Mapping[str, str] = field(default_factory=dict)  # theme id -> slogan
    default_slogan: str = "全民反诈，共创平安"
    warning_seconds: float = 26 * 3600.0
    alert_seconds: float = 24 * 3600.0

    def slogan(self, theme: str | None) -> str:
        return self.slogans.get(theme or "", self.default_slogan)


def feed_settings_from(raw: Mapping[str, object]) -> FeedSettings:
    """The feed's texts from a `led` channel's raw `settings:` (as `plan` reads the config:
    without the plugin; the plugin validates the same keys at `validate`)."""
    base = FeedSettings()

    def text(name: str, default: str) -> str:
        value = raw.get(name, default)
        return value.strip() if isinstance(value, str) else default

    def hours(name: str, default: float) -> float:
        value = raw.get(name)
        return float(value) * 3600 if isinstance(value, int | float) and value > 0 else default

    slogans = raw.get("slogans")
    return FeedSettings(
        hotline=text("hotline", base.hotline),
        slogans={str(k): str(v) for k, v in slogans.items()} if isinstance(slogans, dict) else {},
        default_slogan=text("default_slogan", base.default_slogan),
        warning_seconds=hours("warning_hours", base.warning_seconds),
        alert_seconds=hours("alert_hours", base.alert_seconds),
    )


@dataclass(frozen=True)
class Sent:
    """A message sent to a screen (a delivery, or a planned one)."""

    key: str
    at: dt.datetime
    text: str
    template: str
    theme: str | None = None
    alert: bool = False


def is_alert(template: str) -> bool:
    """Alerts are rendered from `alert` templates (`led/alert.j2`, `led/alert.<audience>.j2`)."""
    name = template.rsplit("/", 1)[-1]
    return name.split(".", 1)[0] == "alert"


def _sent_items(sent: Sequence[Sent], settings: FeedSettings) -> list[FeedItem]:
    ordered = sorted(sent, key=lambda s: (s.at, s.key))
    warnings = [s for s in ordered if not s.alert]
    items: list[FeedItem] = []
    for i, s in enumerate(warnings):
        until = s.at + dt.timedelta(seconds=settings.warning_seconds)
        if i + 1 < len(warnings):
            until = min(until, warnings[i + 1].at)
        if until > s.at:
            items.append(FeedItem(s.key, "warning", s.text, s.template, s.at, until, s.key))
    for s in ordered:
        if s.alert:
            until = s.at + dt.timedelta(seconds=settings.alert_seconds)
            items.append(FeedItem(s.key, "alert", s.text, s.template, s.at, until, s.key))
    return items


def _hotline(settings: FeedSettings) -> list[FeedItem]:
    if not settings.hotline.strip():
        return []
    return [FeedItem("hotline", "hotline", settings.hotline, "settings.hotline")]


def items_at(
    sent: Sequence[Sent],
    theme: str | None,
    theme_until: dt.datetime | None,
    settings: FeedSettings,
) -> list[FeedItem]:
    """The items of a screen as the log shows them now: what was sent, today's slogan
    (valid until the theme may change, `theme_until`), the hotline."""
    items = _sent_items(sent, settings)
    slogan = settings.slogan(theme)
    if slogan.strip():
        items.append(
            FeedItem(
                f"slogan:{theme or 'default'}",
                "slogan",
                slogan,
                "settings.slogans",
                None,
                theme_until,
            )
        )
    return items + _hotline(settings)


def items_over(sent: Sequence[Sent], settings: FeedSettings, start: dt.datetime) -> list[FeedItem]:
    """The items of a screen over a planned period: each send's theme sets the slogan until
    the next send (the default slogan before the first)."""
    items = _sent_items(sent, settings)
    ordered = sorted(sent, key=lambda s: (s.at, s.key))
    bounds: list[dt.datetime] = [start]
    themes: list[str | None] = [None]
    for s in ordered:  # one window per run of sends with the same theme
        if s.theme != themes[-1]:
            bounds.append(s.at)
            themes.append(s.theme)
    for i, (since, theme) in enumerate(zip(bounds, themes, strict=True)):
        until = bounds[i + 1] if i + 1 < len(bounds) else None
        slogan = settings.slogan(theme)
        if slogan.strip() and (until is None or until > since):
            items.append(
                FeedItem(
                    f"slogan:{theme or 'default'}",
                    "slogan",
                    slogan,
                    "settings.slogans",
                    since,
                    until,
                )
            )
    return items + _hotline(settings)
