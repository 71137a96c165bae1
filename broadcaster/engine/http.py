"""HTTP sessions handed to channels: one `requests.Session` per worker thread."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

__all__ = ["SessionPerThread"]


class _Session(requests.Session):
    """A Session that reads proxy and CA settings from the environment once per origin,
    not on every request (requests re-reads them each time: ~75 µs a delivery)."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}

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


class SessionPerThread:
    """A `requests.Session` per worker thread, each pooled to the channel's concurrency."""

    def __init__(self, pool_size: int):
        self._pool_size = pool_size
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = _Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def request(
        self,
        method: str,
        url: str,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """`Session.request`, with a shorter path for the common case (no cookies, auth, files):
        the same request prepared directly, the environment's proxy settings still applied."""
        session = self._session()
        if kwargs or session.cookies or session.auth:
            return session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=allow_redirects,
                **kwargs,
            )
        merged = {**session.headers, **(headers or {})}
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(), url=url, headers=merged, data=data, hooks=session.hooks
        )
        settings = session.merge_environment_settings(prepared.url, {}, None, None, None)
        return session.send(prepared, timeout=timeout, allow_redirects=allow_redirects, **settings)

    def get(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._session().get(*args, **kwargs)

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._session().post(*args, **kwargs)

    def close(self) -> None:
        with self._lock:
            for session in self._all:
                session.close()
            self._all.clear()
