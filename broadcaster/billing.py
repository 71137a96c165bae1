"""How many billed SMS a text costs: the mainland providers' rule and the 3GPP rule.

Mainland providers (Aliyun, Tencent) count the 【签名】 signature with its brackets plus
the body, every character as 1: up to 70 is one billed message, longer ones bill per 67.
A generic gateway may bill by the 3GPP rule instead: GSM-7 (160 septets, 153 per part;
the extension table's characters count 2) when every character fits, else UCS-2 (70
code units, 67 per part; a character outside the BMP takes 2 units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Billed", "BillingRule", "billed", "signed_text"]

BillingRule = Literal["mainland", "3gpp"]

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class Billed:
    """The billing of one text: its length as the rule counts it and the billed parts."""

    length: int  # characters (mainland), septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int
    encoding: Literal["mainland", "gsm7", "ucs2"]
    single: int  # the budget of one billed message under this encoding
    per_part: int  # the budget of each part once split

    def describe(self) -> str:
        return f"{self.length} 字 chars → {self.parts} 条计费 billed ({self.encoding})"


def signed_text(signature: str, body: str) -> str:
    """The text as the handset shows it: 【签名】 then the body (an empty signature adds nothing)."""
    sign = signature.strip().strip("【】")
    return f"【{sign}】{body}" if sign else body


def _parts(length: int, single: int, per_part: int) -> int:
    return 1 if length <= single else math.ceil(length / per_part)


def billed(text: str, rule: BillingRule = "mainland") -> Billed:
    """The billing of `text` (already signed, see `signed_text`) under `rule`."""
    if rule == "mainland":
        n = len(text)
        return Billed(n, _parts(n, 70, 67), "mainland", 70, 67)
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in text):
        n = sum(2 if c in _GSM7_EXTENSION else 1 for c in text)
        return Billed(n, _parts(n, 160, 153), "gsm7", 160, 153)
    n = len(text.encode("utf-16-le")) // 2
    return Billed(n, _parts(n, 70, 67), "ucs2", 70, 67)
