"""Scrub what the log keeps from providers: no secret, no number, no key ever stored.

Provider answers and error texts may echo a token, a `?key=` URL or the phone number
they were about. Before a reason or a provider answer is written, the configured
secret values are replaced by `***`, anything shaped like a credential parameter or a
long opaque token by `***`, and phone numbers by their masked form (138****5678).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

__all__ = ["Scrubber", "mask_number"]

_MOBILE = re.compile(r"(?<![\d\w])(?:\+?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")
_LANDLINE = re.compile(r"(?<![\d\w])(?:\+?86[ -]?)?(0\d{2,3})[ -]?(\d{3,4})[ -]?(\d{4})(?!\d)")
_CREDENTIAL = re.compile(
    r"(?i)\b((?:access_?token|access_?key(?:_?id|_?secret)?|app_?(?:key|secret)|api_?key|"
    r"secret(?:_?id|_?key)?|token|key|sign(?:ature)?|password|passwd|pwd|authorization|"
    r"bearer)[\"']?\s*[:=]\s*[\"']?)([^\s&\"',;}]+)"
)
_BEARER = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")
_OPAQUE = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-Za-z0-9+/_=-]*\d)(?=[A-Za-z0-9+/_=-]*[A-Za-z])[A-Za-z0-9+/_=-]{32,}"
)


def mask_number(text: str) -> str:
    """Mask every phone number in `text` (138****5678, 0571****6666)."""
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


class Scrubber:
    """Replaces registered secret values and anything shaped like a secret or a number."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register secret values (configured tokens, keys) to replace wherever they appear."""
        with self._lock:
            found = set(self._secrets) | {s for s in secrets if s and len(s) >= 4}
            self._secrets = tuple(sorted(found, key=len, reverse=True))

    def __call__(self, text: str, limit: int = 500) -> str:
        if not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
        text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}***", text)
        text = _OPAQUE.sub("***", text)
        text = mask_number(text)
        return text if len(text) <= limit else text[: limit - 1] + "…"
