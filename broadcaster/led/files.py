"""The forms a playlist is handed out in: JSON (the vendor-neutral feed) and plain text
in the screen's charset (one item per line, for controller software that imports files).

Text form: each line is `<seconds>` TAB `<text>`, the item's own line breaks replaced by
a space, lines ending CRLF (the controllers' software runs on Windows), encoded in the
screen's charset (GB2312 and GBK screens get GBK bytes inside GB2312's range).
"""

from __future__ import annotations

import datetime as dt
import json

from broadcaster.led.playlist import Playlist
from broadcaster.led.text import encode

__all__ = ["playlist_json", "playlist_text"]


def playlist_json(playlist: Playlist, now: dt.datetime) -> bytes:
    data = playlist.as_json(now)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def playlist_text(playlist: Playlist) -> bytes:
    lines = []
    for e in playlist.entries:
        flat = " ".join(line.strip() for line in e.text.splitlines() if line.strip())
        lines.append(f"{e.seconds:g}\t{flat}\r\n")
    return encode("".join(lines), playlist.screen.charset)
