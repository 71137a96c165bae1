"""Sessions in signed cookies, and CSRF tokens (signed double submit) for every form.

The session cookie holds the account name, the account's version (it changes with the
password, the role or disabling, ending older sessions), an expiry and a random nonce,
signed with the service secret; it is HttpOnly, SameSite=Lax, and Secure when the
service runs behind TLS. The CSRF cookie holds a random value and its HMAC bound to the
session nonce; every form repeats it in a hidden field and a POST whose field and
cookie differ, or whose signature does not match this session, is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer

from broadcaster.engine.clock import Clock
from broadcaster.web.accounts import User
from broadcaster.web.errors import CSRFError

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "SESSION_COOKIE", "Session", "Sessions"]

SESSION_COOKIE = "bc_session"
CSRF_COOKIE = "bc_csrf"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    name: str
    version: str
    nonce: str
    expires: dt.datetime


class Sessions:
    def __init__(self, secret: bytes, clock: Clock, *, hours: float = 8.0):
        self._secret = secret
        self._serializer = URLSafeSerializer(secret, salt="broadcaster.session")
        self.clock = clock
        self.lifetime = dt.timedelta(hours=hours)

    # -- the session cookie

    def issue(self, user: User) -> tuple[str, Session]:
        expires = self.clock.now() + self.lifetime
        session = Session(user.name, user.version, secrets.token_urlsafe(16), expires)
        value = self._serializer.dumps(
            {"u": user.name, "v": user.version, "n": session.nonce, "e": int(expires.timestamp())}
        )
        return str(value), session

    def read(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            body = self._serializer.loads(value)
            session = Session(
                str(body["u"]),
                str(body["v"]),
                str(body["n"]),
                dt.datetime.fromtimestamp(int(body["e"]), dt.UTC),
            )
        except (BadData, KeyError, TypeError, ValueError, OverflowError):
            return None
        return session if self.clock.now() < session.expires else None

    # -- CSRF

    def _mac(self, value: str, nonce: str) -> str:
        blob = f"csrf|{value}|{nonce}".encode()
        return hmac.new(self._secret, blob, hashlib.sha256).hexdigest()[:32]

    def csrf_token(self, nonce: str) -> str:
        """A fresh token bound to the session nonce ("" before login)."""
        value = secrets.token_urlsafe(16)
        return f"{value}.{self._mac(value, nonce)}"

    def csrf_valid(self, token: str | None, nonce: str) -> bool:
        if not token or "." not in token:
            return False
        value, _, mac = token.partition(".")
        return hmac.compare_digest(mac, self._mac(value, nonce))

    def check_csrf(self, cookie: str | None, field: str | None, nonce: str) -> None:
        """Raise CSRFError unless the form field equals the cookie and is this session's."""
        if not cookie or not field:
            raise CSRFError(
                "表单缺少安全令牌 the form came without its security token: reload the page and try again"
            )
        if not hmac.compare_digest(cookie, field) or not self.csrf_valid(cookie, nonce):
            raise CSRFError(
                "表单安全令牌不符 the form's security token does not match: reload the page and try again"
            )
