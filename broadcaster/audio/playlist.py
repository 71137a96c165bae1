"""Playlists: the timed entries of one village or area, as M3U8 and a JSON manifest.

An entry is one MP3 at one air time (a slot), with its validity, repeat and loop; the
manifest (`schedule.json`) carries file, sha256, duration, loudness, slot and validity
for each, `playlist.m3u8` the files in air order (`#EXTINF:<seconds>,<title>`). Routine
publicity is `ebm_class` 5, never an emergency class (GY/T 385-2023).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EBM_CLASS_ROUTINE", "PlaylistEntry", "PlaylistFolder", "m3u8", "manifest"]

EBM_CLASS_ROUTINE = 5


@dataclass(frozen=True)
class PlaylistEntry:
    """One file at one air time for one target."""

    key: str  # the delivery's idempotency key: the correlation id on the platform too
    target: str
    file: str  # file name inside the playlist folder (or the platform's file id)
    sha256: str
    title: str
    seconds: float
    lufs: float | None
    true_peak_dbtp: float | None
    start: str  # ISO air time, with offset
    slot: str  # "07:00"
    valid_from: str  # ISO date
    valid_until: str  # ISO date
    weekdays: str = "1111111"  # Monday first
    plays: int = 1  # times in a row, `gap_seconds` apart
    gap_seconds: int = 5
    loop_until: str | None = None  # a gate speaker: repeat until this time, gap_seconds apart
    zones: list[str] = field(default_factory=list)
    ebm_class: int = EBM_CLASS_ROUTINE


def m3u8(entries: list[PlaylistEntry]) -> str:
    """An extended M3U (UTF-8) of the entries in air order."""
    lines = ["#EXTM3U"]
    for e in sorted(entries, key=lambda e: (e.start, e.key)):
        title = e.title.replace(",", "，").replace("\n", " ")
        lines += [f"#EXTINF:{round(e.seconds)},{title}", e.file]
    return "\n".join(lines) + "\n"


def manifest(target: str, entries: list[PlaylistEntry]) -> dict[str, Any]:
    return {
        "target": target,
        "ebm_class": EBM_CLASS_ROUTINE,
        "entries": [asdict(e) for e in sorted(entries, key=lambda e: (e.start, e.key))],
    }


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class PlaylistFolder:
    """A folder per target holding its MP3s, `playlist.m3u8` and `schedule.json`.

    Adding an entry twice (the same delivery key) replaces it: a resend never makes a
    second play. Writes are atomic, one target at a time.
    """

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def folder(self, target: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target)
        return self.root / safe

    def entries(self, target: str) -> list[PlaylistEntry]:
        path = self.folder(target) / "schedule.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [PlaylistEntry(**e) for e in data["entries"]]

    def add(self, entry: PlaylistEntry, audio: Path) -> Path:
        """Copy the MP3 in (once per content) and write the playlist and the manifest."""
        with self._lock:
            folder = self.folder(entry.target)
            folder.mkdir(parents=True, exist_ok=True)
            target_file = folder / entry.file
            if not target_file.exists():
                _write(target_file, audio.read_bytes())
            entries = [e for e in self.entries(entry.target) if e.key != entry.key] + [entry]
            body = json.dumps(manifest(entry.target, entries), ensure_ascii=False, indent=1)
            _write(folder / "schedule.json", body.encode("utf-8"))
            _write(folder / "playlist.m3u8", m3u8(entries).encode("utf-8"))
            return folder
