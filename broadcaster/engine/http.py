"""The HTTP session handed to channels: a real `requests.Session`, shared by the channel's
threads, pooled to its concurrency.

`requests.Session` is safe to share for sending requests (urllib3's pool is thread
safe); a plugin configures it (headers, auth, adapters) in `__init__`, before any
thread uses it. `ChannelSession` reads proxy and CA settings from the environment once
per origin instead of on every request (requests re-reads them each time: ~75 µs a
delivery), and sends the common request (a body and headers, no redirect to follow,
no proxy, cookie or hook) through its adapter directly: requests' own preparation,
connection, error mapping and body reading, without the session's redirect and hook
machinery, and with the connection pool of each URL looked up once.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import http.client
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from broadcaster.channel import ChannelContext, LinkSigner

__all__ = ["ChannelSession", "channel_context"]


class _CookieJar(RequestsCookieJar):
    """The session's jar: an answer without Set-Cookie (nearly all) skips the cookie parser."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        headers = response.info()
        if headers.get_all("Set-Cookie") or headers.get_all("Set-Cookie2"):
            super().extract_cookies(response, request)


class _Answer(http.client.HTTPResponse):
    """http.client's response, its header block read by a small parser: the email package
    (what http.client uses) costs ~20 µs an answer, most of a fast gateway's parsing. A
    block with anything unusual (a folded line, a line that is not `Name: value`) still
    goes to the email package, so every answer reads as http.client would read it."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:  # as http.client.HTTPResponse.begin: skip 100 Continue answers
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        lines = http.client._read_headers(self.fp)
        self.headers = self.msg = parse_header_lines(lines)
        encoding = self.headers.get("transfer-encoding")
        if encoding and encoding.lower() == "chunked":
            self.chunked, self.chunk_left = True, None
        else:
            self.chunked = False
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


_HEADER_LINE = re.compile(rb"([!-9;-~]+):[ \t]*(.*?)\r?\n", re.DOTALL)


def parse_header_lines(lines: list[bytes]) -> http.client.HTTPMessage:
    """An answer's header lines (as http.client reads them, the blank line last) as the
    HTTPMessage http.client would make of them."""
    message = http.client.HTTPMessage()
    for line in lines:
        if line in (b"\r\n", b"\n", b""):
            break
        found = _HEADER_LINE.fullmatch(line)
        if found is None:  # folded, malformed, or not a header: the email package decides
            text = b"".join(lines).decode("iso-8859-1")
            parsed: http.client.HTTPMessage = email.parser.Parser(
                _class=http.client.HTTPMessage
            ).parsestr(text)
            return parsed
        message[found[1].decode("ascii")] = found[2].decode("iso-8859-1")
    return message


class _OneWrite(urllib3.connection.HTTPConnection):
    """Sends the header block and a body given whole (bytes or text) in one write, as
    http.client does (urllib3 writes them apart): one system call and, for a small
    request, one TCP segment instead of two. A body in pieces goes as urllib3 sends it."""

    _held: bytes | None = None  # b"": hold the next write (the header block)

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        self._held = b"" if isinstance(body, (bytes, str)) and body else None
        try:
            super().request(method, url, body, headers, **kwargs)
            held = self._held
        finally:
            self._held = None
        if held:  # nothing followed the header block
            super().send(held)

    def send(self, data: Any) -> None:
        held = self._held
        if held is None:
            super().send(data)
        elif not held:
            self._held = data  # the header block: it goes with the body's first piece
        elif isinstance(data, bytes):
            self._held = None
            super().send(held + data)
        else:
            self._held = None
            super().send(held)
            super().send(data)


class _Connection(_OneWrite):
    response_class = _Answer


class _TLSConnection(_OneWrite, urllib3.connection.HTTPSConnection):
    response_class = _Answer


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _PoolAdapter(HTTPAdapter):
    """An HTTPAdapter that remembers the connection pool of each URL and skips the cookie
    parser for answers that set no cookie (requests looks both up on every request)."""

    def __init__(self, pool_connections: int, pool_maxsize: int) -> None:
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize)
        self._pools: dict[tuple[str, Any, Any], Any] = {}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # this manager's pools read answers with `_Answer` (the class, not urllib3, changes)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        if proxies or not isinstance(request.url, str) or len(self._pools) > 1_000:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (request.url, verify if isinstance(verify, str | bool) else id(verify), cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # unknown, or closed (the manager dropped it)
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        headers = getattr(resp, "headers", None)
        if headers is None or "set-cookie" in headers or "set-cookie2" in headers:
            return super().build_response(req, resp)
        response = requests.Response()  # as requests builds it, minus the cookie parser
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()


class ChannelSession(requests.Session):
    """A Session pooled to `pool_size` connections per host, environment read once per origin."""

    def __init__(self, pool_size: int = 10) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], dict[str, Any]] = {}
        self._urls: dict[str, str] = {}  # a URL as prepared (parsing it costs ~20 µs each time)
        self.cookies = _CookieJar()
        adapter = _PoolAdapter(pool_connections=16, pool_maxsize=max(1, pool_size))
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
        if allow_redirects or settings.get("proxies") or any(self.hooks.values()):
            return self.send(prepared, timeout=timeout, allow_redirects=allow_redirects, **settings)
        return self._send_direct(prepared, timeout, settings)

    def _send_direct(
        self, prepared: requests.PreparedRequest, timeout: Any, settings: dict[str, Any]
    ) -> requests.Response:
        """What `Session.send` does for a request that follows no redirect and has no hook:
        the adapter sends it (and maps its errors), the body is read, cookies are kept."""
        assert prepared.url is not None
        adapter = self.get_adapter(prepared.url)
        began = time.perf_counter()
        response = adapter.send(
            prepared,
            stream=False,
            timeout=timeout,
            verify=settings.get("verify", True),
            cert=settings.get("cert"),
            proxies={},
        )
        response.elapsed = dt.timedelta(seconds=time.perf_counter() - began)
        extract_cookies_to_jar(self.cookies, prepared, response.raw)
        response.content  # noqa: B018 - read now, as Session.send does without `stream`
        return response

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
