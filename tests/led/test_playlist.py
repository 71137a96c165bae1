"""The playlist: the ≤ max_gap bound measured on the built loop, alerts pre-empting,
validity windows, versions that follow content only."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.led.files import playlist_json, playlist_text
from broadcaster.led.playlist import (
    FeedItem,
    OwnItem,
    ScreenSpec,
    build_playlist,
    gaps,
    prove,
)
from tests.conftest import TZ

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
H = dt.timedelta(hours=1)

ADS = (
    OwnItem("bank-ad", "本行理财产品热销中", 20),
    OwnItem("notice", "办事大厅周六照常办公", 25),
    OwnItem("weather", "今日晴，最高气温十八度", 15),
    OwnItem("menu", "食堂今日供应饺子", 30),
)


def screen(**kw: object) -> ScreenSpec:
    base: dict[str, object] = {"id": "door", "name": "服务中心门口屏", "own": ADS}
    base.update(kw)
    return ScreenSpec(**base)  # type: ignore[arg-type]


WARNING = FeedItem(
    "k1", "warning", "凡是刷单返佣就是诈骗！", "led/order_brushing.j2", NOW - H, NOW + 24 * H, "k1"
)
SLOGAN = FeedItem("slogan:spring", "slogan", "春节返乡防骗，全民反诈", "slogans.spring")
HOTLINE = FeedItem("hotline", "hotline", "反诈专线96110 报警110", "hotline")


def test_own_content_is_interleaved_within_the_bound() -> None:
    playlist = build_playlist(screen(), [WARNING, SLOGAN, HOTLINE], NOW)
    assert playlist.problems == ()
    roles = [e.role for e in playlist.entries]
    assert roles == ["warning", "own", "own", "own", "slogan", "own", "hotline"]
    # 20+25+15 fill the first gap exactly; 30 s of menu; the hotline runs into the warning
    assert [g.seconds for g in gaps(playlist.entries)] == [60, 30, 0]


def test_anti_fraud_items_repeat_when_the_own_content_needs_it() -> None:
    own = tuple(OwnItem(f"ad{i}", f"广告{i}", 50) for i in range(7))
    playlist = build_playlist(screen(own=own), [WARNING, HOTLINE], NOW)
    assert [e.id for e in playlist.entries if e.anti_fraud] == ["k1", "hotline"] * 3 + ["k1"]
    assert [e.id for e in playlist.entries if not e.anti_fraud] == [f"own:ad{i}" for i in range(7)]
    assert max(g.seconds for g in gaps(playlist.entries)) == 50


def test_the_gap_wraps_round_the_loop() -> None:
    """The stretch after the last anti-fraud item runs into the first one of the next loop."""
    from broadcaster.led.playlist import Entry

    entries = (
        Entry("own:a", "own", "a", (("a",),), 30),
        Entry("w", "warning", "w", (("w",),), 6),
        Entry("own:b", "own", "b", (("b",),), 40),
    )
    assert [(g.seconds, g.own) for g in gaps(entries)] == [(70, (2, 0))]


def test_an_own_item_longer_than_the_bound_is_reported_by_name() -> None:
    long = screen(own=(OwnItem("promo-video", "宣传片", 90), *ADS))
    problems = prove(long, [WARNING, SLOGAN, HOTLINE], NOW, NOW + 24 * H)
    assert len(problems) == 1
    assert "screen 'door' (服务中心门口屏)" in problems[0]
    assert "own item 'promo-video' plays 90 s" in problems[0]
    assert "leaves no room" in problems[0]


def test_no_anti_fraud_item_at_some_moment_is_reported_with_the_moment() -> None:
    only = [WARNING]  # no slogan, no hotline: after the warning expires only ads play
    problems = prove(screen(), only, NOW, NOW + 48 * H)
    assert problems == [
        "显示屏 screen 'door' (服务中心门口屏): 没有有效的反诈内容 no anti-fraud item is valid:"
        " only the screen's own content would play (from 2026-03-03T09:00+08:00)"
    ]
    assert prove(screen(), [WARNING, HOTLINE], NOW, NOW + 48 * H) == []


def test_an_alert_pre_empts_and_expires_on_its_own() -> None:
    alert = FeedItem(
        "k9", "alert", "预警：近期冒充公检法诈骗高发", "led/alert.j2", NOW, NOW + 2 * H, "k9"
    )
    during = build_playlist(screen(), [WARNING, SLOGAN, HOTLINE, alert], NOW + H)
    assert [e.id for e in during.entries] == ["k9", "hotline"]
    assert during.valid_until == NOW + 2 * H
    after = build_playlist(screen(), [WARNING, SLOGAN, HOTLINE, alert], NOW + 2 * H)
    assert "k9" not in [e.id for e in after.entries]
    assert after.valid_until == NOW + 24 * H  # the warning expires next
    before = build_playlist(screen(), [WARNING, HOTLINE, alert], NOW - dt.timedelta(minutes=5))
    assert before.valid_until == NOW  # the alert starts then


def test_version_follows_content_not_time() -> None:
    a = build_playlist(screen(), [WARNING, SLOGAN, HOTLINE], NOW)
    b = build_playlist(screen(), [WARNING, SLOGAN, HOTLINE], NOW + H)
    assert a.version == b.version
    c = build_playlist(screen(), [WARNING, HOTLINE], NOW)
    assert c.version != a.version
    d = build_playlist(screen(width=10), [WARNING, SLOGAN, HOTLINE], NOW)
    assert d.version != a.version


def test_pages_follow_the_geometry() -> None:
    playlist = build_playlist(screen(width=6, lines=2), [WARNING], NOW)
    warning = playlist.entries[0]
    assert warning.pages == (("凡是刷单返佣", "就是诈骗！"),)
    assert warning.seconds == 6
    long = FeedItem(
        "k2", "warning", "凡是以公检法办案名义要求将资金转入安全账户就是诈骗！", valid_until=NOW + H
    )
    entry = build_playlist(screen(width=6, lines=2), [long], NOW).entries[0]
    assert len(entry.pages) == 3 and entry.seconds == 18


def test_json_and_text_forms() -> None:
    playlist = build_playlist(screen(charset="gb2312"), [WARNING, SLOGAN, HOTLINE], NOW)
    import json

    data = json.loads(playlist_json(playlist, NOW))
    assert data["version"] == playlist.version
    assert data["screen"]["encoding"] == "gb2312"
    assert data["items"][0]["valid_until"] == "2026-03-03T09:00:00+08:00"
    assert data["longest_gap_seconds"] == 60
    text = playlist_text(playlist).decode("gbk")
    assert text.splitlines()[0] == "6\t凡是刷单返佣金就是诈骗！".replace("佣金", "佣")
    assert text.endswith("\r\n") and len(text.splitlines()) == len(playlist.entries)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=60), max_size=30),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=20, max_value=120),
)
def test_the_bound_holds_whenever_every_own_item_fits(
    seconds: list[int], anti_count: int, max_gap: int
) -> None:
    own = tuple(OwnItem(f"o{i}", f"内容{i}", s) for i, s in enumerate(seconds))
    spec = screen(own=own, max_gap=float(max_gap))
    items = [FeedItem(f"a{i}", "warning", f"提醒{i}") for i in range(anti_count)]
    playlist = build_playlist(spec, items, NOW)
    fits = all(s <= max_gap for s in seconds)
    assert (playlist.problems == ()) == fits
    assert all(g.seconds <= max_gap for g in gaps(playlist.entries))
    # every own item that fits plays exactly once per loop, in order
    shown = [e.id for e in playlist.entries if not e.anti_fraud]
    assert shown == [f"own:o{i}" for i, s in enumerate(seconds) if s <= max_gap]
