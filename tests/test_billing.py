"""Billing length: the mainland rule and the 3GPP rule, at their boundaries."""

from __future__ import annotations

import pytest

from broadcaster.billing import billed, signed_text


def test_signature_counts_with_its_brackets() -> None:
    assert signed_text("反诈中心", "你好") == "【反诈中心】你好"
    assert signed_text("【反诈中心】", "你好") == "【反诈中心】你好"
    assert billed(signed_text("反诈中心", "你好")).length == 8


@pytest.mark.parametrize(("n", "parts"), [(70, 1), (71, 2), (134, 2), (135, 3), (160, 3)])
def test_mainland_bills_70_then_67(n: int, parts: int) -> None:
    assert billed("诈" * n).parts == parts


@pytest.mark.parametrize(
    ("text", "encoding", "length", "parts"),
    [
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),
        ("€" * 80, "gsm7", 160, 1),  # extension characters count 2
        ("€" * 81, "gsm7", 162, 2),
        ("a" * 69 + "诈", "ucs2", 70, 1),
        ("诈" * 71, "ucs2", 71, 2),
        ("😀" * 35, "ucs2", 70, 1),  # outside the BMP: 2 code units each
        ("😀" * 36, "ucs2", 72, 2),
    ],
)
def test_3gpp_rule(text: str, encoding: str, length: int, parts: int) -> None:
    b = billed(text, "3gpp")
    assert (b.encoding, b.length, b.parts) == (encoding, length, parts)
