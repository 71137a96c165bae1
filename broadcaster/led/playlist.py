"""The playlist of one screen: anti-fraud items interleaved with the screen's own content
so that no two anti-fraud items are ever more than `max_gap` seconds apart.

Inputs are values (the screen, the anti-fraud items with their validity, "now"); the
output is a `Playlist` whose `version` depends on its content only, so a screen that
fetches twice gets the same ETag. `gaps()` measures a built loop independently of how
it was built, and `prove()` runs both over every moment in a period at which an item
starts or expires: that is what `validate` and `plan` report.

The loop, when no alert is in force: the current fraud-type warning(s), the seasonal
slogan, the hotline line, each followed by as many of the screen's own items (in
order) as fit in `max_gap`; the anti-fraud items repeat as often as the own content
needs. An urgent alert pre-empts: while one is valid the loop is the alert(s) and the
hotline only. Every item carries its validity; the playlist is valid until the first
item expires or the next one starts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

from broadcaster.led.text import columns_of, unencodable, wrap

__all__ = [
    "ROLES",
    "Entry",
    "FeedItem",
    "Gap",
    "OwnItem",
    "Playlist",
    "ScreenSpec",
    "build_playlist",
    "gaps",
    "prove",
    "text_problems",
]

Role = Literal["alert", "warning", "slogan", "hotline", "own"]
ROLES: tuple[Role, ...] = ("alert", "warning", "slogan", "hotline")
_ORDER = {r: i for i, r in enumerate(ROLES)}


@dataclass(frozen=True)
class OwnItem:
    """The screen's own content (an ad, a notice), entered by the office."""

    id: str
    text: str
    seconds: float


@dataclass(frozen=True)
class ScreenSpec:
    """A screen: a target with geometry, charset and its own content."""

    id: str
    name: str
    path: tuple[str, ...] = ()  # names, root first (县 → 镇 → this screen)
    charset: str = "gb2312"
    width: int = 12  # full-width characters per line
    lines: int = 2  # lines per page
    overflow: Literal["wrap", "reject"] = "wrap"
    page_seconds: float = 6.0  # how long one page of an anti-fraud item stays
    max_gap: float = 60.0  # seconds at most between two anti-fraud items
    own: tuple[OwnItem, ...] = ()
    token_env: str | None = None  # the environment variable holding its fetch token
    stale_after: float = 7200.0  # seconds without a fetch before it is reported stale
    channel: str = ""  # the led channel serving it

    def geometry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "path": list(self.path),
            "encoding": self.charset,
            "width": self.width,
            "lines": self.lines,
        }


@dataclass(frozen=True)
class FeedItem:
    """An anti-fraud item offered to a screen, valid in [valid_from, valid_until)."""

    id: str  # the delivery key for deliveries; a stable name for slogan and hotline
    role: Role
    text: str
    source: str = ""  # the template or setting it came from
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    delivery_key: str | None = None  # set when the item is a logged delivery

    def valid_at(self, now: dt.datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= now) and (
            self.valid_until is None or now < self.valid_until
        )


@dataclass(frozen=True)
class Entry:
    """One place in the loop."""

    id: str
    role: Role
    text: str
    pages: tuple[tuple[str, ...], ...]
    seconds: float
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    delivery_key: str | None = field(default=None, compare=False)

    @property
    def anti_fraud(self) -> bool:
        return self.role != "own"

    @property
    def sha256(self) -> str:
        return _sha(self.text)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "anti_fraud" if self.anti_fraud else "own",
            "role": self.role,
            "text": self.text,
            "pages": [list(p) for p in self.pages],
            "seconds": self.seconds,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "sha256": self.sha256,
        }

    def json_text(self) -> str:
        """`as_json()` as compact JSON text, made once per distinct content."""
        return _entry_json(
            self.id,
            self.role,
            self.text,
            self.pages,
            self.seconds,
            self.valid_from,
            self.valid_until,
        )


@lru_cache(maxsize=65536)
def _entry_json(
    id: str,
    role: Role,
    text: str,
    pages: tuple[tuple[str, ...], ...],
    seconds: float,
    valid_from: dt.datetime | None,
    valid_until: dt.datetime | None,
) -> str:
    entry = Entry(id, role, text, pages, seconds, valid_from, valid_until)
    return json.dumps(entry.as_json(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Gap:
    """Seconds of own content between two anti-fraud entries (loop positions)."""

    seconds: float
    after: int  # position of the anti-fraud entry before the gap
    before: int  # position of the one after it (wrapping round the loop)
    own: tuple[int, ...]  # positions of the own entries in between


@dataclass(frozen=True)
class Playlist:
    screen: ScreenSpec
    entries: tuple[Entry, ...]
    valid_until: dt.datetime | None  # the first moment the loop changes on its own
    problems: tuple[str, ...] = ()  # why the bound cannot be met (empty: it is met)

    @cached_property
    def version(self) -> str:
        """A hash of what the screen shows: the same content, the same version (ETag)."""
        sc = self.screen
        body = (
            f"{sc.id}\n{sc.name}\n{sc.path!r}\n{sc.charset}\n{sc.width}\n{sc.lines}\n"
            f"{sc.max_gap!r}\n{self.items_json}\n{_iso(self.valid_until) or ''}"
        )
        return hashlib.sha256(body.encode()).hexdigest()[:20]

    @cached_property
    def items_json(self) -> str:
        """The entries as a JSON array (text), each entry's made once per distinct content."""
        return "[" + ",".join(e.json_text() for e in self.entries) + "]"

    @property
    def loop_seconds(self) -> float:
        return sum(e.seconds for e in self.entries)

    @property
    def anti_fraud(self) -> list[Entry]:
        return [e for e in self.entries if e.anti_fraud]

    def longest_gap(self) -> Gap | None:
        found = gaps(self.entries)
        return max(found, key=lambda g: g.seconds) if found else None

    def longest_gap_seconds(self) -> float | None:
        """The longest stretch of own content round the loop (None: no anti-fraud item)."""
        if not any(e.anti_fraud for e in self.entries):
            return None
        longest = run = 0.0
        for e in (*self.entries, *self.entries):  # twice round: the stretch may wrap
            run = 0.0 if e.anti_fraud else run + e.seconds
            longest = max(longest, run)
        return longest

    def as_json(self, now: dt.datetime, *, items: bool = True) -> dict[str, Any]:
        return {
            "screen": self.screen.geometry(),
            "version": self.version,
            "generated_at": _iso(now),
            "valid_until": _iso(self.valid_until),
            "max_gap_seconds": self.screen.max_gap,
            "longest_gap_seconds": self.longest_gap_seconds(),
            "loop_seconds": self.loop_seconds,
            **({"items": [e.as_json() for e in self.entries]} if items else {}),
        }


@lru_cache(maxsize=16384)
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=4096)
def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")


def _pages(screen: ScreenSpec, text: str) -> tuple[tuple[str, ...], ...]:
    return _paged(text, screen.width, screen.lines)


@lru_cache(maxsize=16384)
def _paged(text: str, width: int, n: int) -> tuple[tuple[str, ...], ...]:
    lines = wrap(text, width)
    if not lines:
        return ((),)
    return tuple(tuple(lines[i : i + n]) for i in range(0, len(lines), n))


def text_problems(screen: ScreenSpec, text: str) -> list[str]:
    """What stops `text` from showing on the screen: characters outside its charset, and
    (with overflow: reject) a line wider than the screen."""
    problems = [
        f"{bad.describe()}; {bad.suggestion()}" for bad in unencodable(text, screen.charset)
    ]
    if screen.overflow == "reject":
        for line in text.splitlines():
            if columns_of(line.strip()) > 2 * screen.width:
                problems.append(
                    f"行宽超出屏幕 a line of {math.ceil(columns_of(line.strip()) / 2)} characters is"
                    f" wider than the screen's {screen.width}: '{line.strip()}'"
                    " (shorten it, or set overflow: wrap)"
                )
    return problems


def _entry(screen: ScreenSpec, item: FeedItem) -> Entry:
    pages = _pages(screen, item.text)
    return Entry(
        item.id,
        item.role,
        item.text,
        pages,
        screen.page_seconds * len(pages),
        item.valid_from,
        item.valid_until,
        item.delivery_key,
    )


def _pack(own: Sequence[OwnItem], max_gap: float) -> tuple[list[list[OwnItem]], list[OwnItem]]:
    """Own items in order, in runs of at most max_gap seconds; the items too long for any."""
    runs: list[list[OwnItem]] = []
    too_long = [o for o in own if o.seconds > max_gap]
    current: list[OwnItem] = []
    used = 0.0
    for item in own:
        if item.seconds > max_gap:
            continue
        if current and used + item.seconds > max_gap:
            runs.append(current)
            current, used = [], 0.0
        current.append(item)
        used += item.seconds
    if current:
        runs.append(current)
    return runs, too_long


def build_playlist(screen: ScreenSpec, items: Iterable[FeedItem], now: dt.datetime) -> Playlist:
    """The loop the screen plays from `now` until `valid_until`."""
    offered = list(items)
    active = [i for i in offered if i.valid_at(now)]
    active.sort(key=lambda i: (_ORDER[i.role], i.valid_from or now, i.id))
    alerts = [i for i in active if i.role == "alert"]
    if alerts:
        anti = alerts + [i for i in active if i.role == "hotline"]
        own: tuple[OwnItem, ...] = ()  # an alert pre-empts the screen's own content
    else:
        anti = active
        own = screen.own
    problems: list[str] = []
    who = f"显示屏 screen '{screen.id}' ({screen.name})"
    anti_entries = [_entry(screen, i) for i in anti]
    runs, too_long = _pack(own, screen.max_gap)
    for item in too_long:
        problems.append(
            f"{who}: 自有内容 own item '{item.id}' plays {item.seconds:g} s, longer than the"
            f" {screen.max_gap:g} s allowed between anti-fraud items: 屏幕自有内容没有留出反诈轮播的空间"
            " the screen's own content leaves no room for the rotation (split or shorten it)"
        )
    entries: list[Entry] = []
    if not anti_entries:
        if own:
            problems.append(
                f"{who}: 没有有效的反诈内容 no anti-fraud item is valid:"
                " only the screen's own content would play"
            )
        for run in runs:
            entries += [_own_entry(screen, o) for o in run]
    else:
        slots = max(len(anti_entries), len(runs))
        for i in range(slots):
            entries.append(anti_entries[i % len(anti_entries)])
            if i < len(runs):
                entries += [_own_entry(screen, o) for o in runs[i]]
    changes = [i.valid_until for i in active if i.valid_until is not None]
    changes += [i.valid_from for i in offered if i.valid_from is not None and i.valid_from > now]
    return Playlist(screen, tuple(entries), min(changes) if changes else None, tuple(problems))


def _own_entry(screen: ScreenSpec, item: OwnItem) -> Entry:
    return Entry(f"own:{item.id}", "own", item.text, _pages(screen, item.text), item.seconds)


def gaps(entries: Sequence[Entry]) -> list[Gap]:
    """Every stretch of own content between two anti-fraud entries, round the loop."""
    anti = [i for i, e in enumerate(entries) if e.anti_fraud]
    if not anti:
        return []
    out: list[Gap] = []
    n = len(entries)
    for k, start in enumerate(anti):
        end = anti[(k + 1) % len(anti)]
        between: list[int] = []
        j = (start + 1) % n
        while j != end:
            between.append(j)
            j = (j + 1) % n
        out.append(Gap(sum(entries[j].seconds for j in between), start, end, tuple(between)))
    return out


def prove(
    screen: ScreenSpec,
    items: Sequence[FeedItem],
    start: dt.datetime,
    end: dt.datetime,
) -> list[str]:
    """Problems with the bound at any moment in [start, end) the loop can change: each
    names the screen, the moment and the items. Empty: the bound holds throughout."""
    moments = {start}
    for i in items:
        for t in (i.valid_from, i.valid_until):
            if t is not None and start < t < end:
                moments.add(t)
    problems: list[str] = []
    seen: set[str] = set()
    who = f"显示屏 screen '{screen.id}' ({screen.name})"
    checked: set[tuple[tuple[str, str], ...]] = set()
    # sweep the moments in order, keeping the active items (by position) as they start and end
    starts = sorted(range(len(items)), key=lambda k: items[k].valid_from or start)
    ends = sorted(
        (k for k in range(len(items)) if items[k].valid_until is not None),
        key=lambda k: items[k].valid_until or end,
    )
    live: set[int] = set()
    s_at = e_at = 0
    for now in sorted(moments):
        while s_at < len(starts) and (items[starts[s_at]].valid_from or start) <= now:
            live.add(starts[s_at])
            s_at += 1
        while e_at < len(ends) and (items[ends[e_at]].valid_until or end) <= now:
            live.discard(ends[e_at])
            e_at += 1
        active = [items[k] for k in sorted(live) if items[k].valid_at(now)]
        # the loop's shape depends on the active items' roles and texts only: check each once
        shape = tuple(sorted((i.role, i.text) for i in active))
        if shape in checked:
            continue
        checked.add(shape)
        playlist = build_playlist(screen, active, now)
        found = list(playlist.problems)
        if not playlist.anti_fraud and not found:
            found.append(f"{who}: 没有有效的反诈内容 no anti-fraud item is valid")
        for gap in gaps(playlist.entries):
            if gap.seconds > screen.max_gap:
                names = ", ".join(playlist.entries[j].id for j in gap.own)
                found.append(
                    f"{who}: 反诈内容间隔 {gap.seconds:g} s between anti-fraud items"
                    f" '{playlist.entries[gap.after].id}' and '{playlist.entries[gap.before].id}'"
                    f" exceeds {screen.max_gap:g} s (own items {names})"
                )
        for p in found:
            if p not in seen:
                seen.add(p)
                problems.append(f"{p} (from {now.isoformat(timespec='minutes')})")
    return problems
