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

    INDEXED = 32  # with more secrets than this (a bot key per group), look them up by prefix

    def __init__(self, secrets: Iterable[str] = ()):
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._by_prefix: dict[str, tuple[str, ...]] = {}
        self._prefix = 4
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register secret values (configured tokens, keys) to replace wherever they appear."""
        with self._lock:
            found = set(self._secrets) | {s for s in secrets if s and len(s) >= 4}
            self._secrets = tuple(sorted(found, key=len, reverse=True))
            index: dict[str, list[str]] = {}
            # the longest prefix every secret has: keys that share a start still spread out
            self._prefix = min(16, min((len(s) for s in self._secrets), default=4))
            if len(self._secrets) > self.INDEXED:
                for secret in self._secrets:  # longest first, as in the plain scan
                    index.setdefault(secret[: self._prefix], []).append(secret)
            self._by_prefix = {k: tuple(v) for k, v in index.items()}

    def _present(self, text: str) -> list[str]:
        """The registered secrets occurring in `text`, longest first."""
        if not self._by_prefix:
            return [s for s in self._secrets if s in text]
        found: set[str] = set()
        n = self._prefix
        for i in range(len(text) - n + 1):
            for secret in self._by_prefix.get(text[i : i + n], ()):
                if text.startswith(secret, i):
                    found.add(secret)
        return sorted(found, key=len, reverse=True)

    def __call__(self, text: str, limit: int = 500) -> str:
        if not text:
            return text
        for secret in self._present(text):
            text = text.replace(secret, "***")
        text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
        text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}***", text)
        text = _OPAQUE.sub("***", text)
        text = mask_number(text)
        return text if len(text) <= limit else text[: limit - 1] + "…"
