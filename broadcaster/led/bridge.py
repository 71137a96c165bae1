"""Bridges: push a screen's playlist to a vendor platform (NovaStar VNNOX, a Huidu or
Onbon gateway, an office's own controller server) for screens that cannot fetch.

A bridge is a class with a `name`, built from its settings and an HTTP session, whose
`push()` answers one `PushResult` per screen and version; the engine records every
accepted push like a fetch, so a version is pushed once. Built-in: `http` (channels/
led_http.py). Others register in the `broadcaster.led_bridges` entry-point group.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from broadcaster.led.playlist import Playlist

__all__ = ["BRIDGES", "Bridge", "PushResult", "load_bridge"]

ENTRY_POINT_GROUP = "broadcaster.led_bridges"
BRIDGES: dict[str, str] = {"http": "broadcaster.channels.led_http:HttpPushBridge"}


@dataclass(frozen=True)
class PushResult:
    ok: bool
    retryable: bool = False  # refused, timed out before sending, 429, 5xx: try on the next push
    reason: str = ""  # never a secret: the engine stores it


class Bridge(Protocol):
    """Pushes playlists to one vendor platform."""

    name: ClassVar[str]
    Options: ClassVar[Any]  # a pydantic model of its options (checked at validate)

    def __init__(self, options: dict[str, Any], http: Any, environ: dict[str, str]) -> None: ...

    def check(self) -> str | None: ...  # None when ready, else why not

    def push(self, playlist: Playlist, body: bytes, media_type: str) -> PushResult: ...


def load_bridge(name: str) -> type[Bridge]:
    """The bridge class registered under `name`; LookupError names the known ones."""
    target = BRIDGES.get(name)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                target = ep.value
                break
    if target is None:
        known = sorted({*BRIDGES, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
        raise LookupError(
            f"未知的推送桥 unknown bridge '{name}': expected one of {', '.join(known)}"
        )
    module, _, attr = target.partition(":")
    cls: type[Bridge] = getattr(importlib.import_module(module), attr)
    return cls
