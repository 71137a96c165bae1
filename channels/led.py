"""led: LED screens that fetch their playlist from `broadcaster serve`.

Plugin alias: led. No open protocol exists for LED controllers (channels.md §9), so a
screen (a target with a `screen:` block) fetches a vendor-neutral feed,
`GET /led/{screen}/playlist` (JSON, or text in its charset), or its controller software
imports the files `broadcaster led export` writes; bridges push the same playlist to a
vendor platform (`broadcaster led push`). Sending a warning or an alert to a screen
publishes it to the screen's feed: the delivery is accepted at once and delivered when
the screen fetches a playlist version carrying it. The settings hold the feed's own
texts: the hotline line, the slogan per theme, and how long sent items stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from broadcaster.channel import (
    Addressing,
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    MessageKind,
    Result,
    ScheduledSend,
)
from broadcaster.led.bridge import load_bridge
from broadcaster.led.offer import FeedSettings, Sent, is_alert, items_over
from broadcaster.led.playlist import ScreenSpec, prove, text_problems

__all__ = ["LedChannel", "LedSettings"]


class BridgeSpec(ChannelSettings):
    """A vendor platform the playlists are pushed to (`broadcaster led push`)."""

    type: str = "http"  # a bridge name: http, or one from the broadcaster.led_bridges group
    name: str = ""  # how it is shown and recorded (default: the type)
    screens: list[str] | None = None  # only these screens (default: all of this channel)
    options: dict[str, Any] = Field(default_factory=dict)  # the bridge's own settings

    @property
    def label(self) -> str:
        return self.name or self.type

    @model_validator(mode="after")
    def _known(self) -> BridgeSpec:
        try:
            cls = load_bridge(self.type)
        except (LookupError, ImportError) as exc:
            raise ValueError(str(exc)) from None
        options_model = getattr(cls, "Options", None)
        if options_model is not None:
            options_model.model_validate(self.options)  # its errors carry their keys
        return self


class LedSettings(ChannelSettings):
    hotline: str = "反诈专线96110 报警电话110"  # shown in every loop ("" for none)
    slogans: dict[str, str] = Field(default_factory=dict)  # theme id -> seasonal slogan
    default_slogan: str = "全民反诈，共创平安"  # themes without a slogan of their own
    warning_hours: float = Field(default=26, gt=0, le=24 * 31)  # a warning stays this long
    alert_hours: float = Field(default=24, gt=0, le=24 * 31)  # an alert pre-empts this long
    refresh_seconds: float = Field(default=5, ge=0, le=3600)  # the feed re-reads the log
    bridges: list[BridgeSpec] = Field(default_factory=list)  # push to vendor platforms

    @field_validator("hotline", "default_slogan")
    @classmethod
    def _one_line(cls, v: str) -> str:
        return v.strip()

    def feed(self) -> FeedSettings:
        return FeedSettings(
            hotline=self.hotline,
            slogans=dict(self.slogans),
            default_slogan=self.default_slogan,
            warning_seconds=self.warning_hours * 3600,
            alert_seconds=self.alert_hours * 3600,
        )


class LedChannel(BaseChannel):
    """Publishes warnings and alerts to the screens' feeds."""

    name = "led"
    Settings = LedSettings
    contract_example: ClassVar[dict[str, Any]] = {"hotline": "反诈专线96110"}
    settings: LedSettings

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            kinds=frozenset({MessageKind.LED}),
            addressing=Addressing.TARGET,
            batch_size=500,
            concurrency=1,
            settle_seconds=0,  # publishing is a write of our own: it happened or not
            outcome_window=3 * 24 * 3600.0,  # a screen's fetch confirms it (delivered)
            outcome_poll=3600.0,
        )

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        # the delivery log holds the text: the feed reads it from there
        return [Result.ok(d, raw="published to the screen's feed") for d in batch]

    def check_schedule(self, sends: Sequence[ScheduledSend]) -> list[str]:
        """Over the period: every text in each screen's charset and width, and the gap
        between anti-fraud items within the screen's bound at every moment the loop changes."""
        by_screen: dict[str, tuple[ScreenSpec, list[ScheduledSend]]] = {}
        for s in sends:
            if s.screen is not None:
                by_screen.setdefault(s.screen.id, (s.screen, []))[1].append(s)
        feed = self.settings.feed()
        problems: list[str] = []
        for screen, planned in by_screen.values():
            who = f"显示屏 screen '{screen.id}' ({screen.name})"
            for label, text in (("hotline", feed.hotline), *self._slogans(feed)):
                for p in text_problems(screen, text):
                    problems.append(f"{who}: settings.{label}: {p}")
            planned.sort(key=lambda s: s.at)
            sent = [
                Sent(
                    f"{s.rule_id}@{s.at.isoformat(timespec='minutes')}",
                    s.at,
                    s.message.text,
                    s.message.template,
                    s.message.theme,
                    is_alert(s.message.template),
                )
                for s in planned
            ]
            start = planned[0].at
            end = planned[-1].at + max(_seconds(feed.warning_seconds), _seconds(feed.alert_seconds))
            problems += prove(screen, items_over(sent, feed, start), start, end)
        return problems

    def _slogans(self, feed: FeedSettings) -> list[tuple[str, str]]:
        out = [(f"slogans.{k}", v) for k, v in feed.slogans.items()]
        return [*out, ("default_slogan", feed.default_slogan)]


def _seconds(value: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=value)
