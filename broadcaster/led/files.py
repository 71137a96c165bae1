"""The forms a playlist is handed out in: JSON (the vendor-neutral feed) and plain text
in the screen's charset (one item per line, for controller software that imports files).

Text form: each line is `<seconds>` TAB `<text>`, the item's own line breaks replaced by
a space, lines ending CRLF (the controllers' software runs on Windows), encoded in the
screen's charset (GB2312 and GBK screens get GBK bytes inside GB2312's range).
"""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache

from broadcaster.led.playlist import Playlist
from broadcaster.led.text import encode

__all__ = ["playlist_json", "playlist_text"]


def playlist_json(playlist: Playlist, now: dt.datetime) -> bytes:
    """`playlist.as_json(now)` as compact UTF-8 JSON; each item's text is made once per
    distinct item (10,000 screens share most of theirs)."""
    head = playlist.as_json(now, items=False)
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    return (text[:-1] + ',"items":' + playlist.items_json + "}").encode("utf-8")


def playlist_text(playlist: Playlist) -> bytes:
    lines = "".join(_line(e.text, e.seconds) for e in playlist.entries)
    return encode(lines, playlist.screen.charset)


@lru_cache(maxsize=65536)
def _line(text: str, seconds: float) -> str:
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return f"{seconds:g}\t{flat}\r\n"
