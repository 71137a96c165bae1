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
from requests.cookies import RequestsCookieJar

from broadcaster.channel import ChannelContext, LinkSigner

__all__ = ["ChannelSession", "channel_context"]


class _CookieJar(RequestsCookieJar):
    """The session's jar: an answer without Set-Cookie (nearly all) skips the cookie parser."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        headers = response.info()
        if headers.get_all("Set-Cookie") or headers.get_all("Set-Cookie2"):
            super().extract_cookies(response, request)


class ChannelSession(requests.Session):
    """A Session pooled to `pool_size` connections per host, environment read once per origin."""

    def __init__(self, pool_size: int = 10) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}
        self._urls: dict[str, str] = {}  # a URL as prepared (parsing it costs ~20 µs each time)
        self.cookies = _CookieJar()
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=max(1, pool_size))
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: Any = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        """`Session.request`; the common case (a body, headers, no cookies, auth, files or
        params anywhere) is prepared directly: the same request, a third of the work."""
        plain = not (
            params
            or cookies
            or files
            or auth
            or proxies
            or hooks
            or stream
            or cert
            or json
            or self.cookies
            or self.auth
            or self.params
            or verify not in (None, True)
        )
        if not plain:
            return super().request(
                method,
                url,
                params,
                data,
                headers,
                cookies,
                files,
                auth,
                timeout,
                allow_redirects,
                proxies,
                hooks,
                stream,
                verify,
                cert,
                json,
            )
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        known = self._urls.get(url)
        if known is None:
            prepared.prepare_url(url, None)
            if len(self._urls) < 10_000:
                self._urls[url] = prepared.url or url
        else:
            prepared.url = known
        prepared.prepare_headers({**self.headers, **(headers or {})})
        # no cookies to add: the jar is empty here (a jar with cookies takes the path above)
        prepared.prepare_body(data, None)
        prepared.prepare_hooks(self.hooks)
        settings = self.merge_environment_settings(prepared.url, {}, None, None, None)
        return self.send(prepared, timeout=timeout, allow_redirects=allow_redirects, **settings)

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
    pace: Callable[[str], bool] | None = None,
    links: LinkSigner | None = None,
) -> ChannelContext:
    """The context the engine hands a channel instance (the contract suite uses it too)."""
    session = ChannelSession(concurrency)
    if pace is None:
        return ChannelContext(instance_id, session, clock, data_dir, base_dir, links=links)
    return ChannelContext(instance_id, session, clock, data_dir, base_dir, pace, links)
