"""The HTTP session handed to channels: a real `requests.Session`, shared by the channel's
threads, pooled to its concurrency.

`requests.Session` is safe to share for sending requests (urllib3's pool is thread
safe); a plugin configures it (headers, auth, adapters) in `__init__`, before any
thread uses it. `ChannelSession` only reads proxy and CA settings from the environment
once per origin instead of on every request (requests re-reads them each time: ~75 µs
a delivery).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from broadcaster.channel import ChannelContext

__all__ = ["ChannelSession", "channel_context"]


class ChannelSession(requests.Session):
    """A Session pooled to `pool_size` connections per host, environment read once per origin."""

    def __init__(self, pool_size: int = 10) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=max(1, pool_size))
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if proxies or cert is not None or verify not in (None, True):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        found: Any = self._environment.get(key)
        if found is None:
            found = dict(super().merge_environment_settings(url, {}, None, None, None))
            self._environment[key] = found
        return {**found, "stream": stream if stream is not None else found.get("stream")}


def channel_context(
    instance_id: str,
    *,
    concurrency: int,
    clock: Callable[[], dt.datetime],
    data_dir: Path,
    base_dir: Path,
) -> ChannelContext:
    """The context the engine hands a channel instance (the contract suite uses it too)."""
    return ChannelContext(instance_id, ChannelSession(concurrency), clock, data_dir, base_dir)
