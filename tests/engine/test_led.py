"""The LED feed over a real log (SQLite and PostgreSQL): what was sent becomes the
playlist, a new version is recorded once, alerts pre-empt and expire, stale screens are
found, and bridges push each version once through a local fake platform."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from broadcaster.engine.led import LedFeed, push_all
from broadcaster.log import DeliveryLog
from broadcaster.vocab import Status
from tests.conftest import TZ
from tests.fakes.http import serving
from tests.fakes.led_platform import LedPlatformFake, PlatformMode
from tests.led.conftest import SCREENS, write_screens
from tests.led.helpers import fire, load

T8 = dt.datetime(2026, 3, 3, 8, 0, tzinfo=TZ)
MIN = dt.timedelta(minutes=1)


@pytest.fixture
def platform() -> Iterator[LedPlatformFake]:
    yield from serving(LedPlatformFake("S3cr3t-Token-XYZ"))  # type: ignore[misc]


def with_bridge(url: str, fmt: str = "json") -> str:
    return SCREENS.replace(
        "      default_slogan: 全民反诈，共创平安\n",
        "      default_slogan: 全民反诈，共创平安\n"
        "      alert_hours: 2\n"
        "      bridges:\n"
        "        - type: http\n"
        "          name: vnnox\n"
        "          options:\n"
        f"            url: {url}/screens/{{screen}}/playlist\n"
        f"            format: {fmt}\n"
        "            token_env: TEST_SECRET_BRIDGE\n"
        "            timeout: [1, 1]\n"
        "            success: {json_path: code, equals: 0}\n",
    )


@pytest.fixture
def feed_setup(tmp_path: Path, log_url: str, platform: LedPlatformFake) -> Iterator[tuple]:  # type: ignore[type-arg]
    path = write_screens(tmp_path / "c", with_bridge(platform.url))
    app = load(path, T8)
    store, key = app.open_log(log_url)
    yield app, store, key
    store.close()


def test_sent_items_make_the_playlist_and_a_fetch_is_recorded_once(feed_setup: tuple) -> None:  # type: ignore[type-arg]
    app, store, key = feed_setup
    keys = fire(app, store, key, "led-rotation", T8)
    feed = LedFeed(store)
    served = feed.served(app, "door", T8 + MIN)
    assert served is not None
    warning = served.playlist.entries[0]
    assert warning.role == "warning" and warning.delivery_key in keys
    assert feed.fetched(app, served, T8 + MIN, remote="10.0.0.7") is True
    assert feed.fetched(app, served, T8 + 2 * MIN) is False  # same version: not a new record
    # another process (a second `serve`) knows it too: from the log, not from memory
    other = LedFeed(store)
    assert other.fetched(app, served, T8 + 3 * MIN) is False
    records = feed.fetches(app.campaign.id, ["door"], None, T8 + dt.timedelta(hours=1))
    assert [(r.screen_id, r.version, r.via) for r in records] == [
        ("door", served.playlist.version, "fetch")
    ]
    assert [i["role"] for i in records[0].items][:1] == ["warning"]
    states = store.latest(keys)
    assert states[warning.delivery_key].status is Status.DELIVERED
    assert {s.status for k, s in states.items() if k != warning.delivery_key} == {Status.ACCEPTED}


def test_an_alert_pre_empts_then_expires(feed_setup: tuple) -> None:  # type: ignore[type-arg]
    app, store, key = feed_setup
    fire(app, store, key, "led-rotation", T8)
    from broadcaster.model.adhoc import AdHoc

    alert = AdHoc(
        "alert",
        ("screens",),
        ("door",),
        template="alert",
        vars={"alert_text": "冒充公检法诈骗高发"},
    )
    spec = alert.spec(app.campaign, T8 + 10 * MIN)
    app.campaign.rules.append(spec)
    try:
        keys = fire(app, store, key, spec.id, T8 + 10 * MIN)
    finally:
        app.campaign.rules.remove(spec)
    feed = LedFeed(store)
    during = feed.served(app, "door", T8 + 11 * MIN)
    assert during is not None
    assert [e.role for e in during.playlist.entries] == ["alert", "hotline"]
    assert during.playlist.entries[0].delivery_key == keys[0]
    assert during.playlist.valid_until == T8 + 130 * MIN  # alert_hours: 2
    after = feed.served(app, "door", T8 + 131 * MIN)
    assert after is not None
    assert "alert" not in [e.role for e in after.playlist.entries]
    assert after.playlist.version != during.playlist.version


def test_stale_screens(feed_setup: tuple) -> None:  # type: ignore[type-arg]
    app, store, _ = feed_setup
    feed = LedFeed(store)
    door = feed.served(app, "door", T8)
    assert door is not None
    feed.fetched(app, door, T8)
    by_id = {s.screen.id: s for s in feed.statuses(app, T8 + 29 * MIN)}
    assert (by_id["door"].stale, by_id["gate"].stale) == (False, True)  # gate never fetched
    assert by_id["door"].last_seen == T8
    assert feed.statuses(app, T8 + 31 * MIN)[0].stale is True  # stale_after: 30m


def test_bridges_push_each_version_once_and_retry_failures(
    feed_setup: tuple,
    platform: LedPlatformFake,  # type: ignore[type-arg]
) -> None:
    app, store, key = feed_setup
    fire(app, store, key, "led-rotation", T8)
    feed = LedFeed(store)
    with requests.Session() as http:
        platform.modes.extend([PlatformMode.THROTTLED, PlatformMode.OK])
        first = push_all(feed, app, http, T8 + MIN)
        assert [(o.screen_id, o.status) for o in first] == [("door", "retry"), ("gate", "pushed")]
        second = push_all(feed, app, http, T8 + 2 * MIN)
        assert [(o.screen_id, o.status) for o in second] == [
            ("door", "pushed"),
            ("gate", "unchanged"),
        ]
        platform.modes.extend([PlatformMode.ERROR_CODE])
        fire(app, store, key, "led-rotation", T8 + dt.timedelta(hours=2))
        third = push_all(LedFeed(store), app, http, T8 + dt.timedelta(hours=2, minutes=1))
        assert [(o.screen_id, o.status, o.reason) for o in third] == [
            ("door", "failed", "code = 40001"),
            ("gate", "pushed", ""),  # the new warning: a new version
        ]
        platform.modes.extend([PlatformMode.HANG])
        fourth = push_all(
            LedFeed(store), app, http, T8 + dt.timedelta(hours=2, minutes=2), ["door"]
        )
        assert [(o.status, o.reason) for o in fourth] == [("retry", "超时 timed out")]
    assert platform.problems == []
    assert {s: len(v) for s, v in platform.accepted.items()} == {"door": 1, "gate": 2}
    body = json.loads(platform.bodies["door"])
    assert body["screen"]["id"] == "door"
    assert all(r.headers["Authorization"] == "Bearer S3cr3t-Token-XYZ" for r in platform.requests)
    pushed = feed.fetches(app.campaign.id, None, None, T8 + dt.timedelta(days=1))
    assert sorted((r.screen_id, r.via) for r in pushed) == [
        ("door", "bridge:vnnox"),
        ("gate", "bridge:vnnox"),
        ("gate", "bridge:vnnox"),
    ]


def test_a_refused_or_wrong_token_platform(tmp_path: Path, log_url: str) -> None:
    with LedPlatformFake("another-token") as platform:
        path = write_screens(tmp_path / "c", with_bridge(platform.url, "text"))
        app = load(path, T8)
        store, _ = app.open_log(log_url)
        try:
            with requests.Session() as http:
                out = push_all(LedFeed(store), app, http, T8)
            assert {(o.status, o.reason) for o in out} == {
                ("failed", "HTTP 403: 令牌被拒绝 the token was refused")
            }
            url = platform.url
        finally:
            store.close()
    refused = write_screens(tmp_path / "c", with_bridge(url))  # the same state folder and key
    app = load(refused, T8)
    store2: DeliveryLog
    store2, _ = app.open_log(log_url)
    try:
        with requests.Session() as http:
            out = push_all(LedFeed(store2), app, http, T8)
        assert {o.status for o in out} == {"retry"}
        assert all("连接失败 connection failed" in o.reason for o in out)
    finally:
        store2.close()


def test_a_changed_config_recomputes_the_playlists(feed_setup: tuple) -> None:  # type: ignore[type-arg]
    """A calendar, template or settings change reaches the app as a new config: every
    screen's playlist is rebuilt from it (the slogan here), nothing stale is served."""
    app, store, key = feed_setup
    fire(app, store, key, "led-rotation", T8)
    feed = LedFeed(store)
    before = feed.served(app, "door", T8 + MIN)
    assert before is not None
    config = app.config_path
    config.write_text(
        config.read_text(encoding="utf-8").replace("全民反诈，共创平安", "反诈宣传月，人人都参与"),
        encoding="utf-8",
    )
    changed = load(config, T8)
    after = feed.served(changed, "door", T8 + MIN)
    assert after is not None and after.playlist.version != before.playlist.version
    slogans = [e.text for e in after.playlist.entries if e.role == "slogan"]
    assert slogans == ["反诈宣传月，人人都参与"]
    assert [e.id for e in after.playlist.entries if e.role == "warning"] == [
        e.id for e in before.playlist.entries if e.role == "warning"
    ]


def test_fetch_records_cannot_be_changed(feed_setup: tuple, log_url: str) -> None:  # type: ignore[type-arg]
    """led_fetches is append-only: the database refuses UPDATE and DELETE."""
    import sqlalchemy as sa

    from tests.log.fixtures import raw_connection

    app, store, _ = feed_setup
    feed = LedFeed(store)
    served = feed.served(app, "door", T8)
    assert served is not None
    feed.fetched(app, served, T8)
    for sql in ("UPDATE led_fetches SET version = 'forged'", "DELETE FROM led_fetches"):
        with (
            raw_connection(log_url) as conn,
            pytest.raises(sa.exc.DBAPIError) as refused,
            conn.begin(),
        ):
            conn.execute(sa.text(sql))
        assert "append-only" in str(refused.value) or "只能追加" in str(refused.value)
    records = feed.fetches(app.campaign.id, ["door"], None, T8 + MIN)
    assert [r.version for r in records] == [served.playlist.version]
