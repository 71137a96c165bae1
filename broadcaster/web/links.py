"""Per-person signed links that expire and, when the route says so, work once.

A link carries a purpose (which page it opens), a subject (whom it is for: a person's
id in the config, never a phone number: the link is signed, not encrypted), optional
data, an expiry and a random id. It is refused with a reason when its signature does
not match (forged, or made for another purpose), when it expired, when it is another
person's (`subject=`), or when a single-use link was used before (recorded in the log's database, `link_uses`).

    links = service.links
    url = "/confirm/handoff/" + links.sign("handoff", "teacher-3", ttl=dt.timedelta(days=2),
                                           data={"delivery": key})
    claims = links.verify("handoff", token)        # raises LinkError (forged, expired, used)
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from broadcaster.engine.clock import Clock
from broadcaster.web.errors import LinkError
from broadcaster.web.store import ConsoleStore

__all__ = ["LinkClaims", "SignedLinks"]

REFUSALS = {
    "forged": "链接无效 this link is not valid (it was changed, or made for another page)",
    "expired": "链接已过期 this link has expired",
    "used": "链接已使用过 this link was already used",
    "person": "此链接属于另一个人 this link belongs to someone else",
}


@dataclass(frozen=True)
class LinkClaims:
    """What a valid link says."""

    purpose: str
    subject: str
    jti: str
    expires: dt.datetime
    single_use: bool
    data: Mapping[str, Any] = field(default_factory=dict)


class SignedLinks:
    """Signs and checks links; single use is recorded in the console store."""

    def __init__(self, secret: bytes, store: ConsoleStore | None, clock: Clock):
        """`store` None: a signer only (the scheduler's side), which cannot tell a used link."""
        self._secret = secret
        self.store = store
        self.clock = clock

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        return URLSafeSerializer(self._secret, salt=f"broadcaster.link.{purpose}")

    def sign(
        self,
        purpose: str,
        subject: str,
        *,
        ttl: dt.timedelta | None = None,
        data: Mapping[str, Any] | None = None,
        single_use: bool = True,
        jti: str | None = None,
        expires: dt.datetime | None = None,
    ) -> str:
        """A URL-safe token for `subject`, valid for `ttl` from now (or until `expires`).

        Given `jti` and `expires`, the same link comes out every time (a hand-off link
        made again after a restart is the one already sent)."""
        if expires is None:
            if ttl is None:
                raise ValueError("sign() needs ttl or expires")
            expires = self.clock.now() + ttl
        body = {
            "s": subject,
            "e": int(expires.timestamp()),
            "j": jti or secrets.token_urlsafe(12),
            "u": 1 if single_use else 0,
            "d": dict(data or {}),
        }
        return str(self._serializer(purpose).dumps(body))

    def peek(self, purpose: str, token: str) -> LinkClaims:
        """Check signature and expiry without using the link up (to show a confirm page)."""
        try:
            body = self._serializer(purpose).loads(token)
            claims = LinkClaims(
                purpose,
                str(body["s"]),
                str(body["j"]),
                dt.datetime.fromtimestamp(int(body["e"]), dt.UTC),
                bool(body["u"]),
                dict(body.get("d") or {}),
            )
        except (BadData, KeyError, TypeError, ValueError, OverflowError):
            raise LinkError("forged", REFUSALS["forged"]) from None
        if self.clock.now() >= claims.expires:
            raise LinkError("expired", REFUSALS["expired"])
        if claims.single_use and self.store is not None and self.store.link_used(claims.jti):
            raise LinkError("used", REFUSALS["used"])
        return claims

    def verify(self, purpose: str, token: str, *, subject: str | None = None) -> LinkClaims:
        """Check the link (and, given `subject`, that it is that person's) and, when it is
        single-use, use it up (atomically: of two requests with the same link, one wins).
        A link shown to the wrong person is refused without being used up."""
        claims = self.peek(purpose, token)
        if subject is not None and claims.subject != subject:
            raise LinkError("person", REFUSALS["person"])
        if claims.single_use:
            if self.store is None:
                raise RuntimeError("a signer without the console store cannot use links up")
            if not self.store.use_link(claims.jti, purpose, claims.subject):
                raise LinkError("used", REFUSALS["used"])
        return claims
