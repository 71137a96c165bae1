"""Charsets and wrapping: the table of channels.md §9, and lines never cut mid-character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.led.text import columns_of, encode, unencodable, wrap

IN_ALL = "“”…①￥《》℃●★—·"
GBK_ONLY = "〇㎡喆镕堃犇瑄"
NEITHER = "⚠☎✅😀€"


def chars(text: str, charset: str) -> str:
    return "".join(b.char for b in unencodable(text, charset))


def test_the_encodability_table() -> None:
    assert chars(IN_ALL, "gb2312") == ""
    assert chars(IN_ALL, "gbk") == ""
    assert chars(GBK_ONLY, "gb2312") == GBK_ONLY
    assert chars(GBK_ONLY, "gbk") == ""
    assert chars(NEITHER, "gb2312") == NEITHER
    assert chars(NEITHER, "gbk") == NEITHER
    assert chars(NEITHER + GBK_ONLY, "utf-8") == ""


def test_dash_and_middle_dot_get_gb2312_bytes() -> None:
    """Python's gb2312 codec refuses them; the GB2312 bytes are A1AA and A1A4."""
    assert encode("—·", "gb2312") == b"\xa1\xaa\xa1\xa4"
    with pytest.raises(UnicodeEncodeError):
        "—".encode("gb2312")


def test_a_bad_character_is_named_once_with_a_suggestion() -> None:
    bad = unencodable("注意⚠注意⚠😀", "gb2312")
    assert [(b.char, b.index, b.code) for b in bad] == [("⚠", 2, "U+26A0"), ("😀", 6, "U+1F600")]
    assert "注意" in bad[0].suggestion()
    assert "emoji" in bad[1].suggestion()
    rare = unencodable("张喆", "gb2312")[0]
    assert rare.describe().startswith("'喆' (U+5586")
    assert "charset: gbk" in rare.suggestion()
    with pytest.raises(ValueError, match=r"U\+1F600"):
        encode("好😀", "gbk")


def test_wrap_keeps_numbers_whole_and_punctuation_off_line_starts() -> None:
    assert wrap("凡是网络兼职刷单返还佣金就是诈骗！可疑请拨96110或110", 12) == [
        "凡是网络兼职刷单返还佣金",
        "就是诈骗！可疑请拨96110",
        "或110",
    ]
    # "！" would start line 2: the character before it comes down with it
    assert wrap("一二三四五六！七八", 6) == ["一二三四五", "六！七八"]
    assert wrap("第一行\n\n第二行", 12) == ["第一行", "第二行"]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("反诈专线报警电话ab12，。！ 《》96110"), max_size=80),
    st.integers(min_value=1, max_value=16),
)
def test_wrap_never_loses_a_character_and_never_overflows(text: str, width: int) -> None:
    lines = wrap(text, width)
    assert all(columns_of(line) <= 2 * width for line in lines)
    squeeze = "".join(text.split())
    assert "".join("".join(lines).split()) == squeeze
    for line in lines:  # each line encodes and decodes whole: no half character
        assert encode(line, "gb2312").decode("gbk") == line
