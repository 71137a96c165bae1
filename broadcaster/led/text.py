"""What a screen can show: characters in its charset, lines of its width.

A screen's width is counted in full-width characters (one Han character, 16 px on a
192 px module gives 12); an ASCII letter or digit takes half of one. GB2312 is checked
as channels.md §9 says: encode with GBK and accept a double-byte pair only inside
GB2312's rows (lead 0xA1–0xF7, trail 0xA1–0xFE), so that "—" and "·" (which Python's
gb2312 codec maps elsewhere) pass and 喆 or 〇 do not.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "CHARSETS",
    "BadCharacter",
    "codec_of",
    "columns_of",
    "encode",
    "unencodable",
    "wrap",
]

CHARSETS = ("gb2312", "gbk", "utf-8")

# what an office usually means by a character no old controller has
_SUGGESTIONS = {
    "⚠": "注意",
    "☎": "电话",
    "✅": "√",
    "✔": "√",
    "❌": "×",
    "€": "欧元",
    "〇": "零",
    "㎡": "平方米",
    "❗": "！",
    "❓": "？",
    "📞": "电话",
    "🚫": "禁止",
    "💰": "钱",
}


@dataclass(frozen=True)
class BadCharacter:
    """A character a screen's charset cannot show, with what to do about it."""

    char: str
    index: int
    charset: str

    @property
    def code(self) -> str:
        return f"U+{ord(self.char):04X}"

    @property
    def name(self) -> str:
        return unicodedata.name(self.char, "?")

    def suggestion(self) -> str:
        better = _SUGGESTIONS.get(self.char)
        if better is not None:
            return f"改写为 write '{better}' instead"
        emoji = ord(self.char) > 0xFFFF or unicodedata.category(self.char) == "So"
        if emoji:
            return "删除表情符号 remove the emoji or symbol: LED controllers cannot show it"
        if self.charset == "gb2312" and _in_gbk(self.char):
            return (
                "换用常用字，或屏幕支持时设 charset: gbk "
                "use a common character, or set the screen's charset: gbk if its controller has it"
            )
        return (
            "换用常用字，或屏幕支持时设 charset: utf-8 "
            "use a common character, or set charset: utf-8 if the controller supports it"
        )

    def describe(self) -> str:
        return f"'{self.char}' ({self.code} {self.name}) 不在 {self.charset.upper()} 字符集中 is not in {self.charset.upper()}"


def codec_of(charset: str) -> str:
    """The Python codec that writes bytes for a charset (GB2312 screens get GBK's bytes,
    which are GB2312's for every character `unencodable` lets through)."""
    return "utf-8" if charset == "utf-8" else "gbk"


@lru_cache(maxsize=65536)
def _in_gbk(char: str) -> bool:
    try:
        data = char.encode("gbk")
    except UnicodeEncodeError:
        return False
    return len(data) == 2 or data[0] < 0x80  # cp936's single byte 0x80 (€) is not GBK


@lru_cache(maxsize=65536)
def _in_gb2312(char: str) -> bool:
    try:
        data = char.encode("gbk")
    except UnicodeEncodeError:
        return False
    if len(data) == 1:
        return data[0] < 0x80
    return 0xA1 <= data[0] <= 0xF7 and 0xA1 <= data[1] <= 0xFE


def unencodable(text: str, charset: str) -> list[BadCharacter]:
    """Every character of `text` the charset cannot show, in order (once each)."""
    return list(_unencodable(text, charset))


@lru_cache(maxsize=16384)
def _unencodable(text: str, charset: str) -> tuple[BadCharacter, ...]:
    if charset == "utf-8" or text.isascii():
        return ()
    check = _in_gb2312 if charset == "gb2312" else _in_gbk
    seen: set[str] = set()
    out: list[BadCharacter] = []
    for i, ch in enumerate(text):
        if ch in "\n\r\t" or ch in seen:
            continue
        if not check(ch):
            seen.add(ch)
            out.append(BadCharacter(ch, i, charset))
    return tuple(out)


def encode(text: str, charset: str) -> bytes:
    """Bytes in the screen's charset; raises ValueError naming the first bad character."""
    bad = unencodable(text, charset)
    if bad:
        raise ValueError(bad[0].describe())
    return text.encode(codec_of(charset))


def columns_of(text: str) -> int:
    """Half-width columns: ASCII takes one, everything else two."""
    if len(text) == 1:
        return 1 if ord(text) < 0x80 else 2
    return 2 * len(text) - sum(1 for ch in text if ord(ch) < 0x80)


# no line starts with these (Chinese line-breaking: 避头): they stay with the character before
_NO_START = set("，。！？；：、）》」』”’…,.!?;:)%")


def _tokens(line: str) -> list[str]:
    """Characters, with ASCII words and numbers (96110) kept whole."""
    out: list[str] = []
    for ch in line:
        if (
            out
            and ch.isascii()
            and ch.isalnum()
            and out[-1][-1:].isascii()
            and out[-1][-1:].isalnum()
        ):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` full-width characters; see `_wrap`."""
    return list(_wrap(text, width))


@lru_cache(maxsize=16384)
def _wrap(text: str, width: int) -> tuple[str, ...]:
    """Lines of at most `width` full-width characters (2 × width columns), never cutting a
    character, keeping ASCII words whole when they fit a line and punctuation off line starts.
    The text's own line breaks are kept; blank lines dropped."""
    limit = 2 * width
    lines: list[str] = []
    for source in text.splitlines():
        source = source.strip()
        if not source:
            continue
        current, used = "", 0
        for token in _tokens(source):
            size = columns_of(token)
            if size > limit:  # a word longer than a line: split between characters
                for ch in token:
                    if used + columns_of(ch) > limit:
                        lines.append(current)
                        current, used = "", 0
                    current += ch
                    used += columns_of(ch)
                continue
            if used + size > limit and current:
                if (
                    token in _NO_START
                    and len(current) > 1
                    and columns_of(current[-1]) + size <= limit
                ):
                    # carry the last character down with the punctuation
                    carry = current[-1]
                    lines.append(current[:-1])
                    current, used = carry, columns_of(carry)
                else:
                    lines.append(current)
                    current, used = "", 0
            current += token
            used += size
        if current:
            lines.append(current)
    return tuple(lines)
