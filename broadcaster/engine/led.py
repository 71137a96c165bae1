"""LED feeds: each screen's playlist built from the delivery log and the calendar, handed
to screens (`/led/{screen}/playlist`), files and bridges, and recorded.

What a screen is offered comes from the log, not from process memory, so `serve`, `run`
and `led export` agree wherever they run: the warnings and alerts the `led` channels
accepted for it (their text is logged), the slogan of the day's theme, the hotline.
A screen that fetches a version it has not had before is recorded in `led_fetches`
(screen, version, time, items; append-only) and the deliveries it carried become
delivered; every fetch refreshes `led_seen`, from which stale screens are reported.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from broadcaster.led.files import playlist_json, playlist_text
from broadcaster.led.offer import FeedSettings, Sent, is_alert, items_at
from broadcaster.led.playlist import FeedItem, Playlist, ScreenSpec, build_playlist
from broadcaster.led.text import unencodable
from broadcaster.log import DeliveryLog, Event
from broadcaster.log.models import (
    deliveries,
    delivery_events,
    delivery_state,
    led_fetches,
    led_seen,
    messages,
)
from broadcaster.model.themes import ThemeBook
from broadcaster.vocab import Status

if TYPE_CHECKING:
    from broadcaster.engine.app import App
    from broadcaster.model.campaign import Campaign

__all__ = [
    "FetchRecord",
    "LedFeed",
    "PushOutcome",
    "ScreenStatus",
    "Served",
    "feed_settings",
    "push_all",
]

log = logging.getLogger("broadcaster.led")
SEEN_EVERY = 60.0  # seconds: a screen's unchanged fetches refresh its led_seen row this often
SEEN_FLUSH = 5.0  # seconds: those refreshes are written in one batch this often


def feed_settings(app: App, channel_id: str) -> FeedSettings:
    profile = app.channels.get(channel_id)
    settings = getattr(profile, "settings", None)
    feed = getattr(settings, "feed", None)
    return feed() if callable(feed) else FeedSettings()


def _refresh_seconds(app: App) -> float:
    found = [
        float(getattr(p.settings, "refresh_seconds", 5.0))
        for p in app.channels.values()
        if p.type == "led"
    ]
    return min(found) if found else 5.0


@dataclass(frozen=True)
class Served:
    """A playlist with its bodies rendered once, as served until it changes."""

    playlist: Playlist
    json: bytes
    text: bytes
    etag: str
    built_at: dt.datetime
    generation: int
    day: dt.date
    dropped: tuple[str, ...] = ()  # items left out: not encodable in the screen's charset

    def fresh(self, now: dt.datetime, generation: int, day: dt.date) -> bool:
        until = self.playlist.valid_until
        return self.generation == generation and self.day == day and (until is None or now < until)


@dataclass(frozen=True)
class ScreenStatus:
    screen: ScreenSpec
    last_seen: dt.datetime | None
    version: str | None
    stale: bool


@dataclass(frozen=True)
class FetchRecord:
    screen_id: str
    version: str
    at: dt.datetime
    via: str
    items: list[dict[str, Any]]


class LedFeed:
    """Playlists of the current campaign's screens; safe to share between threads."""

    def __init__(self, store: DeliveryLog | None) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._app: App | None = None
        self._themes: ThemeBook | None = None
        self._sent: dict[str, list[Sent]] = {}
        self._sent_mark: int | None = None
        self._sent_read: dt.datetime | None = None
        self._generation = 0
        self._served: dict[str, Served] = {}
        self._seen: dict[tuple[str, str], tuple[str, dt.datetime]] = {}
        self._seen_loaded: set[str] = set()
        self._reading = False  # a thread is reading the log
        self._recording: set[tuple[tuple[str, str], str]] = set()  # versions being written
        self._pending: dict[tuple[str, str], tuple[str, dt.datetime, str]] = {}
        self._flushed = dt.datetime.min.replace(tzinfo=dt.UTC)
        self._ready = threading.Event()  # the current config's first read is done

    # -- building

    def _follow(self, app: App, now: dt.datetime) -> int:
        """Re-read what was sent when the config changed or `refresh_seconds` passed. One
        thread reads; the others go on with what was read before, or wait for the first
        read of a new config (never build a playlist from nothing)."""
        due, ready = self._due(app, now)
        if due:
            self._refresh(app, now, ready)
        else:
            ready.wait()
        return self._generation

    def _due(self, app: App, now: dt.datetime) -> tuple[bool, threading.Event]:
        """Whether this caller should read the log now (and is marked as the reader)."""
        with self._lock:
            if app is not self._app:
                self._app, self._themes = app, ThemeBook(app.campaign)
                self._served.clear()
                self._sent, self._sent_mark, self._sent_read = {}, None, None
                self._ready = threading.Event()
                self._generation += 1
            due = not self._reading and (
                self._sent_read is None
                or (now - self._sent_read).total_seconds() >= _refresh_seconds(app)
            )
            if due:
                self._sent_read, self._reading = now, True
            return due, self._ready

    def _refresh(self, app: App, now: dt.datetime, ready: threading.Event) -> None:
        """Read what was sent, unless the log's mark says nothing changed since last time."""
        try:
            mark = self.sent_mark(app, now)
            changed = mark is None or mark != self._sent_mark
            sent = self.read_sent(app, now) if changed else self._sent
        except BaseException:
            with self._lock:
                self._sent_read, self._reading = None, False
            ready.set()  # the waiting requests fail on their own read
            raise
        with self._lock:
            if changed and (sent != self._sent or not ready.is_set()):
                self._sent = sent
                self._generation += 1
            self._sent_mark = mark
            self._reading = False
        ready.set()

    def sent_mark(self, app: App, now: dt.datetime) -> int | None:
        """The newest event of the led channels' deliveries in the window: when it has not
        moved, nothing sent to a screen changed (none: nothing to read)."""
        led, since = self._window(app, now)
        if self.store is None or not led:
            return None
        query = (
            sa.select(sa.func.max(delivery_events.c.id))
            .select_from(
                deliveries.join(delivery_events, delivery_events.c.delivery_id == deliveries.c.id)
            )
            .where(
                deliveries.c.campaign == app.campaign.id,
                deliveries.c.channel_id.in_(led),
                deliveries.c.scheduled_at >= since,
                deliveries.c.scheduled_at <= now,
            )
        )
        mark = self.store.read(lambda conn: conn.execute(query).scalar())
        return int(mark) if mark is not None else 0

    def _window(self, app: App, now: dt.datetime) -> tuple[list[str], dt.datetime]:
        led = [cid for cid, p in app.channels.items() if p.type == "led"]
        window = max(
            (
                max(feed_settings(app, c).warning_seconds, feed_settings(app, c).alert_seconds)
                for c in led
            ),
            default=0.0,
        )
        return led, now - dt.timedelta(seconds=window)

    def read_sent(self, app: App, now: dt.datetime) -> dict[str, list[Sent]]:
        """Warnings and alerts the led channels accepted for each screen, still in force."""
        if self.store is None:
            return {}
        led, since = self._window(app, now)
        screens = app.campaign.screens
        if not led or not screens:
            return {}
        query = (
            sa.select(
                deliveries.c.key,
                deliveries.c.target_id,
                deliveries.c.template,
                deliveries.c.scheduled_at,
                messages.c.text,
            )
            .join(delivery_state, delivery_state.c.delivery_id == deliveries.c.id)
            .join(messages, messages.c.sha256 == deliveries.c.text_sha256)
            .where(
                deliveries.c.campaign == app.campaign.id,
                deliveries.c.channel_id.in_(led),
                deliveries.c.scheduled_at >= since,
                deliveries.c.scheduled_at <= now,
                delivery_state.c.status.in_([Status.ACCEPTED.value, Status.DELIVERED.value]),
            )
        )
        rows = self.store.read(lambda conn: conn.execute(query).all())
        tz = app.campaign.tz
        out: dict[str, list[Sent]] = {}
        for key, target, template, at, text in rows:
            if target in screens:
                out.setdefault(target, []).append(
                    Sent(key, at.astimezone(tz), text, template, None, is_alert(template))
                )
        return out

    def theme_of(self, app: App, screen: ScreenSpec, day: dt.date) -> str:
        """The theme in force for the screen's target on `day` (occasion, phase, default)."""
        book = self._themes if self._themes is not None and self._app is app else None
        book = book or ThemeBook(app.campaign)
        target = app.campaign.targets[screen.id]
        for span in book.on(day):
            if book.applies(span.occasion, target):
                return span.occasion.theme
        phase = app.campaign.phase_on(day)
        return phase.theme if phase and phase.theme else app.campaign.config.default_theme

    def build(
        self, app: App, screen: ScreenSpec, now: dt.datetime, sent: Sequence[Sent] = ()
    ) -> Served:
        tz = app.campaign.tz
        day = now.astimezone(tz).date()
        midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        settings = feed_settings(app, screen.channel)
        items = items_at(sent, self.theme_of(app, screen, day), midnight, settings)
        shown, dropped = _showable(screen, items)
        playlist = build_playlist(screen, shown, now)
        return Served(
            playlist,
            playlist_json(playlist, now),
            playlist_text(playlist),
            f'"{playlist.version}"',
            now,
            self._generation,
            day,
            tuple(dropped),
        )

    def cached(self, app: App, screen_id: str, now: dt.datetime) -> Served | None:
        """The cached playlist when nothing needs reading or building (else None). When the
        log is due to be read again, the request that notices reads it (`served()`); the
        requests arriving meanwhile are answered from the cache."""
        if app is not self._app or self._sent_read is None or not self._ready.is_set():
            return None
        if not self._reading and (now - self._sent_read).total_seconds() >= _refresh_seconds(app):
            return None
        hit = self._served.get(screen_id)
        if hit is None:
            return None
        day = now.astimezone(app.campaign.tz).date()
        return hit if hit.fresh(now, self._generation, day) else None

    def seen_lately(self, app: App, served: Served, now: dt.datetime, remote: str = "") -> bool:
        """For a fetch of the version the screen already had: note it (its led_seen row is
        refreshed at most every SEEN_EVERY seconds, in a batch every SEEN_FLUSH seconds,
        without waiting) and answer True. False when
        the version is new to the screen (or unknown here): call `fetched()`."""
        key = (app.campaign.id, served.playlist.screen.id)
        version = served.playlist.version
        with self._lock:
            last = self._seen.get(key)
            if last is None or last[0] != version:
                return False
            if (now - last[1]).total_seconds() >= SEEN_EVERY:  # else nothing worth writing
                self._seen[key] = (version, now)
                self._pending[key] = (version, now, remote)
            due = bool(self._pending) and (now - self._flushed).total_seconds() >= SEEN_FLUSH
            batch = self._pending if due else {}
            if due:
                self._pending, self._flushed = {}, now
        if batch and self.store is not None:
            self.store.write(lambda conn: _upsert_seen_many(conn, batch), wait=False)
        return True

    def served(self, app: App, screen_id: str, now: dt.datetime) -> Served | None:
        """The screen's current playlist (None: no such screen), rebuilt only when it changed."""
        screen = app.campaign.screens.get(screen_id)
        if screen is None:
            return None
        generation = self._follow(app, now)
        day = now.astimezone(app.campaign.tz).date()
        hit = self._served.get(screen_id)
        if hit is not None and hit.fresh(now, generation, day):
            return hit
        built = self.build(app, screen, now, self._sent.get(screen_id, ()))
        if built.dropped:
            log.warning("screen %s: items left out: %s", screen_id, "; ".join(built.dropped))
        self._served[screen_id] = built
        return built

    def rebuild_all(self, app: App, now: dt.datetime) -> dict[str, Served]:
        """Every screen's playlist, recomputed now (after a calendar or template change)."""
        self._follow(app, now)
        with self._lock:
            self._served.clear()
        return {sid: s for sid in app.campaign.screens if (s := self.served(app, sid, now))}

    # -- records

    def _load_seen(self, campaign: str) -> None:
        if campaign in self._seen_loaded or self.store is None:
            return
        query = sa.select(led_seen.c.screen_id, led_seen.c.version, led_seen.c.at).where(
            led_seen.c.campaign == campaign
        )
        rows = self.store.read(lambda conn: conn.execute(query).all())
        with self._lock:
            for sid, version, at in rows:
                self._seen.setdefault((campaign, sid), (version, at))
            self._seen_loaded.add(campaign)

    def fetched(
        self, app: App, served: Served, now: dt.datetime, *, via: str = "fetch", remote: str = ""
    ) -> bool:
        """Record that the screen got this version; True when it was new to the screen."""
        if self.store is None:
            return False
        campaign = app.campaign.id
        screen = served.playlist.screen
        self._load_seen(campaign)
        key = (campaign, screen.id)
        version = served.playlist.version
        with self._lock:
            last = self._seen.get(key)
            new = (last is None or last[0] != version) and (key, version) not in self._recording
            if new:
                self._recording.add((key, version))  # a concurrent fetch does not record it too
        if not new:
            self.seen_lately(app, served, now, remote)
            return False
        try:
            self.record_version(app, served.playlist, now, via=via, remote=remote)
            with self._lock:  # only once written: a failed write is tried again next fetch
                self._seen[key] = (version, now)
        finally:
            with self._lock:
                self._recording.discard((key, version))
        return True

    def flush_seen(self) -> None:
        """Write the fetches noted since the last batch (on shutdown, and in tests)."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if batch and self.store is not None:
            self.store.write(lambda conn: _upsert_seen_many(conn, batch))

    def record_version(
        self, app: App, playlist: Playlist, now: dt.datetime, *, via: str, remote: str = ""
    ) -> None:
        """A new version reached the screen: the fetch row, last seen, delivered deliveries."""
        assert self.store is not None
        campaign, screen = app.campaign.id, playlist.screen
        items = json.dumps(
            [{**e.as_json(), "delivery_key": e.delivery_key} for e in playlist.entries],
            ensure_ascii=False,
            separators=(",", ":"),
        )

        def work(conn: Any) -> None:
            conn.execute(
                led_fetches.insert().values(
                    campaign=campaign,
                    screen_id=screen.id,
                    channel_id=screen.channel,
                    version=playlist.version,
                    at=now,
                    via=via[:64],
                    remote=remote[:64],
                    items=items,
                )
            )
            if via == "fetch":
                _upsert_seen(conn, campaign, screen.id, now, playlist.version, remote)

        self.store.write(work)
        keys = sorted({e.delivery_key for e in playlist.entries if e.delivery_key})
        if keys:
            reason = f"显示屏已取得 fetched by the screen ({via}), version {playlist.version}"
            self.store.record_outcomes(
                screen.channel,
                [(Event("", Status.DELIVERED, now, reason=reason), k, None, None) for k in keys],
                now,
            )

    def statuses(self, app: App, now: dt.datetime) -> list[ScreenStatus]:
        """Every screen with when it last fetched, and whether that is too long ago."""
        return screen_statuses(self.store, app.campaign, now)

    def fetches(
        self,
        campaign: str,
        screen_ids: Iterable[str] | None,
        since: dt.datetime | None,
        until: dt.datetime,
        *,
        carried_in: bool = True,
    ) -> list[FetchRecord]:
        """Versions recorded in [since, until), oldest first; with `carried_in`, also the one
        each screen had at `since` (recorded before it)."""
        if self.store is None:
            return []
        wanted = list(screen_ids) if screen_ids is not None else None
        f = led_fetches.c
        base = sa.select(f.screen_id, f.version, f.at, f.via, f["items"]).where(
            f.campaign == campaign
        )
        if wanted is not None:
            base = base.where(f.screen_id.in_(wanted))
        query = base.where(f.at < until)
        if since is not None:
            query = query.where(f.at >= since)
        rows = list(self.store.read(lambda conn: conn.execute(query.order_by(f.at, f.id)).all()))
        if carried_in and since is not None:
            latest = (
                sa.select(f.screen_id, sa.func.max(f.id).label("id"))
                .where(f.campaign == campaign, f.at < since, f.via == "fetch")
                .group_by(f.screen_id)
            )
            if wanted is not None:
                latest = latest.where(f.screen_id.in_(wanted))
            sub = latest.subquery()
            before = base.join(sub, f.id == sub.c.id)
            rows = list(self.store.read(lambda conn: conn.execute(before).all())) + rows
        return [FetchRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def last_pushed(self, campaign: str, via: str) -> dict[str, str]:
        """Screen id -> the last version pushed through one bridge."""
        if self.store is None:
            return {}
        f = led_fetches.c
        sub = (
            sa.select(sa.func.max(f.id).label("id"))
            .where(f.campaign == campaign, f.via == via)
            .group_by(f.screen_id)
            .subquery()
        )
        query = sa.select(f.screen_id, f.version).join(sub, f.id == sub.c.id)
        rows = self.store.read(lambda conn: conn.execute(query).all())
        return {sid: version for sid, version in rows}


def screen_statuses(
    store: DeliveryLog | None, campaign: Campaign, now: dt.datetime
) -> list[ScreenStatus]:
    """Every screen of the campaign with its last fetch (from `led_seen`) and whether it is
    stale (no fetch for longer than its `stale_after`, or never)."""
    seen: dict[str, tuple[dt.datetime, str]] = {}
    if store is not None:
        query = sa.select(led_seen.c.screen_id, led_seen.c.at, led_seen.c.version).where(
            led_seen.c.campaign == campaign.id
        )
        rows = store.read(lambda conn: conn.execute(query).all())
        seen = {sid: (at, version) for sid, at, version in rows}
    out = []
    for sid, screen in campaign.screens.items():
        at, version = seen.get(sid, (None, None))
        stale = at is None or (now - at).total_seconds() > screen.stale_after
        out.append(ScreenStatus(screen, at, version, stale))
    return out


def _showable(screen: ScreenSpec, items: Sequence[FeedItem]) -> tuple[list[FeedItem], list[str]]:
    """Items the screen's charset can show; the others are left out, with why (a send-now
    alert with an emoji, say: the config checks cannot see its variables)."""
    shown, dropped = [], []
    for item in items:
        bad = unencodable(item.text, screen.charset)
        if bad:
            dropped.append(f"{item.id}: {bad[0].describe()}")
        else:
            shown.append(item)
    return shown, dropped


def _upsert_seen_many(
    conn: Any, batch: Mapping[tuple[str, str], tuple[str, dt.datetime, str]]
) -> None:
    """One statement, executed for every row (executemany)."""
    if not batch:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(led_seen)
    stmt = stmt.on_conflict_do_update(
        index_elements=["campaign", "screen_id"],
        set_={
            "at": stmt.excluded.at,
            "version": stmt.excluded.version,
            "remote": stmt.excluded.remote,
        },
    )
    rows = [
        {"campaign": c, "screen_id": sid, "at": at, "version": v, "remote": remote[:64]}
        for (c, sid), (v, at, remote) in batch.items()
    ]
    conn.execute(stmt, rows)


def _upsert_seen(
    conn: Any, campaign: str, screen_id: str, at: dt.datetime, version: str, remote: str
) -> None:
    _upsert_seen_many(conn, {(campaign, screen_id): (version, at, remote)})


@dataclass(frozen=True)
class PushOutcome:
    bridge: str
    screen_id: str
    version: str
    status: str  # pushed, unchanged, failed, retry
    reason: str = ""


def push_all(
    feed: LedFeed,
    app: App,
    http: Any,
    now: dt.datetime,
    screens: Iterable[str] | None = None,
) -> list[PushOutcome]:
    """Push every screen's current playlist through its channel's bridges; a version a
    bridge already took is not pushed again, an accepted push is recorded like a fetch."""
    from broadcaster.led.bridge import load_bridge

    wanted = set(screens) if screens is not None else None
    out: list[PushOutcome] = []
    environ = dict(app.environ)
    for cid, profile in app.channels.items():
        if profile.type != "led" or not profile.enabled:
            continue
        for spec in getattr(profile.settings, "bridges", []):
            via = f"bridge:{spec.label}"
            bridge = load_bridge(spec.type)(dict(spec.options), http, environ)
            problem = bridge.check()
            done = feed.last_pushed(app.campaign.id, via)
            for sid, screen in app.campaign.screens.items():
                if screen.channel != cid or (wanted is not None and sid not in wanted):
                    continue
                if spec.screens is not None and sid not in spec.screens:
                    continue
                served = feed.served(app, sid, now)
                assert served is not None
                version = served.playlist.version
                if problem is not None:
                    out.append(PushOutcome(spec.label, sid, version, "failed", problem))
                    continue
                if done.get(sid) == version:
                    out.append(PushOutcome(spec.label, sid, version, "unchanged"))
                    continue
                text = getattr(spec, "options", {}).get("format") == "text"
                body = served.text if text else served.json
                media = f"text/plain; charset={screen.charset}" if text else "application/json"
                result = bridge.push(served.playlist, body, media)
                if result.ok:
                    feed.record_version(app, served.playlist, now, via=via)
                    out.append(PushOutcome(spec.label, sid, version, "pushed"))
                else:
                    status = "retry" if result.retryable else "failed"
                    out.append(PushOutcome(spec.label, sid, version, status, result.reason))
    return out
