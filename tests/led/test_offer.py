"""What a screen is offered: a warning until the next replaces it (or it runs out), alerts
for their own window, the slogan of each send's theme, the hotline always."""

from __future__ import annotations

import datetime as dt

from broadcaster.led.offer import (
    FeedSettings,
    Sent,
    feed_settings_from,
    is_alert,
    items_at,
    items_over,
)
from tests.conftest import TZ

T8 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=TZ)
H = dt.timedelta(hours=1)
FEED = FeedSettings(
    hotline="反诈专线96110",
    slogans={"festive": "春节返乡防骗"},
    default_slogan="全民反诈",
    warning_seconds=3 * 3600,
    alert_seconds=3600,
)


def test_warnings_replace_each_other_and_run_out() -> None:
    sent = [
        Sent("a", T8, "甲", "led/alpha.j2"),
        Sent("b", T8 + 2 * H, "乙", "led/beta.j2"),
        Sent("c", T8 + 10 * H, "丙", "led/alpha.j2"),
    ]
    items = {i.id: i for i in items_at(sent, None, None, FEED)}
    assert (items["a"].valid_from, items["a"].valid_until) == (T8, T8 + 2 * H)
    assert items["b"].valid_until == T8 + 5 * H  # 3 h, before "c" came
    assert items["c"].valid_until == T8 + 13 * H
    assert items["slogan:default"].text == "全民反诈"
    assert items["hotline"].valid_until is None


def test_alerts_keep_their_own_window_and_warnings_go_on_beneath() -> None:
    sent = [
        Sent("w", T8, "甲", "led/alpha.j2"),
        Sent("x", T8 + H, "预警", "led/alert.j2", alert=True),
    ]
    items = {i.id: i for i in items_at(sent, "festive", T8 + 16 * H, FEED)}
    assert items["x"].role == "alert" and items["x"].valid_until == T8 + 2 * H
    assert items["w"].valid_until == T8 + 3 * H
    assert items["slogan:festive"].text == "春节返乡防骗"
    assert items["slogan:festive"].valid_until == T8 + 16 * H
    assert is_alert("led/alert.parents.j2") and not is_alert("led/alerting_topic.j2")


def test_over_a_period_each_sends_theme_sets_the_slogan_until_the_theme_changes() -> None:
    sent = [
        Sent("a", T8, "甲", "t", theme="routine"),
        Sent("b", T8 + 2 * H, "乙", "t", theme="festive"),
        Sent("c", T8 + 4 * H, "丙", "t", theme="festive"),
    ]
    slogans = [
        (i.text, i.valid_from, i.valid_until)
        for i in items_over(sent, FEED, T8 - H)
        if i.role == "slogan"
    ]
    assert slogans == [
        ("全民反诈", T8 - H, T8),
        ("全民反诈", T8, T8 + 2 * H),
        ("春节返乡防骗", T8 + 2 * H, None),
    ]


def test_settings_from_the_raw_config() -> None:
    feed = feed_settings_from(
        {
            "hotline": " 96110 ",
            "slogans": {"festive": "春节"},
            "warning_hours": 2,
            "alert_hours": "x",
        }
    )
    assert feed.hotline == "96110" and feed.slogan("festive") == "春节"
    assert feed.slogan("other") == FeedSettings().default_slogan
    assert feed.warning_seconds == 7200 and feed.alert_seconds == FeedSettings().alert_seconds
    assert items_at([], None, None, FeedSettings(hotline="", default_slogan="")) == []
