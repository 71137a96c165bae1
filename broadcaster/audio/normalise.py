"""Text normaliser: a loudspeaker script as an announcer reads it, before any engine sees it.

Pure (no I/O). Numbers are read the way Chinese announcers read them:

* hotlines and phone numbers digit by digit, 1 read as 幺 (96110 → 九六幺幺零, 110 → 幺幺零);
* years digit by digit (2026年 → 二零二六年);
* amounts, quantities and dates as numbers (5万元 → 五万元, 12月5日 → 十二月五日,
  3.5% → 百分之三点五, 100% → 百分之百, ¥200 → 两百元);
* clock times as 点 and 分 (18:30 → 十八点三十分).

Latin words the engine cannot read in Chinese are replaced when a spoken form is known
(APP → 客户端, QQ → 扣扣) and reported otherwise; emoji and symbols are dropped and
reported. `validate` shows every report (`Spoken.problems`); synthesis uses `Spoken.text`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["HOTLINES", "Spoken", "cardinal", "digits", "normalise"]

# Numbers read digit by digit wherever they stand (3-digit emergency and service lines).
HOTLINES = frozenset(
    {"110", "114", "119", "120", "122", "12110", "12315", "12345", "12377", "12381", "96110"}
)

_DIGIT = "零一二三四五六七八九"
_PHONE_DIGIT = "零幺二三四五六七八九"

# Latin words with a known spoken form; any other Latin letter is reported.
LATIN_WORDS = {
    "app": "客户端",
    "qq": "扣扣",
    "atm": "自动取款机",
    "pos": "刷卡机",
    "wifi": "无线网",
    "vip": "会员",
    "ok": "好",
}

# Symbols with a spoken form.
SYMBOL_WORDS = {"&": "和", "~": "到", "～": "到", "℃": "摄氏度", "×": "乘", "+": "加"}

# Characters after a number that make it a quantity, amount or date (read as a number).
_UNITS = "元块角万亿千百个人次岁天周年月日号名户起件条家笔倍分秒点小时期届所张位台部栋层单"

_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF10, 0xFF1A)}  # ０-９
_FULLWIDTH.update({c: c - 0xFEE0 for c in range(0xFF21, 0xFF3B)})  # Ａ-Ｚ
_FULLWIDTH.update({c: c - 0xFEE0 for c in range(0xFF41, 0xFF5B)})  # ａ-ｚ
_FULLWIDTH[0xFF05] = ord("%")
_FULLWIDTH[0xFFE5] = ord("￥")


@dataclass(frozen=True)
class Spoken:
    """The text an engine speaks, and what could not be said as written."""

    text: str
    problems: tuple[str, ...] = ()


def digits(number: str, *, phone: bool = True) -> str:
    """Digit by digit: 96110 → 九六幺幺零 (phone), 2026 → 二零二六 (phone=False)."""
    table = _PHONE_DIGIT if phone else _DIGIT
    return "".join(table[int(c)] for c in number if c.isdigit())


def _section(n: int, leading: bool) -> str:
    """0 < n < 10000 in words; `leading` for the highest section (no leading 零, 十 not 一十)."""
    out: list[str] = []
    zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d == 0:
            if out or not leading:
                zero = True
            continue
        if zero and (out or not leading):
            out.append("零")
        zero = False
        if value == 10 and d == 1 and not out and leading:
            out.append("十")
        elif d == 2 and value >= 100:
            out.append("两" + unit)
        else:
            out.append(_DIGIT[d] + unit)
    return "".join(out)


def cardinal(n: int) -> str:
    """An integer in words, as said aloud: 50000 → 五万, 105 → 一百零五, 12 → 十二."""
    if n == 0:
        return "零"
    if n < 0:
        return "负" + cardinal(-n)
    sections = []
    while n:
        sections.append(n % 10000)
        n //= 10000
    out = []
    units = ["", "万", "亿", "万亿"]
    top = len(sections) - 1
    pending_zero = False
    for i in range(top, -1, -1):
        s = sections[i]
        if s == 0:
            pending_zero = True
            continue
        words = _section(s, leading=(i == top))
        if i != top and (pending_zero or s < 1000) and not words.startswith("零"):
            words = "零" + words
        out.append(words + units[i])
        pending_zero = False
    return "".join(out)


def _decimal(text: str) -> str:
    """'3.5' → 三点五, '12,000' → 一万两千."""
    whole, _, frac = text.replace(",", "").partition(".")
    said = cardinal(int(whole or "0"))
    if frac:
        said += "点" + digits(frac, phone=False)
    return said


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 24 or minute > 59:
        return digits(m.group(0))
    said = cardinal(hour) + "点"
    if minute:
        said += ("零" if minute < 10 else "") + cardinal(minute) + "分"
    return said


def _percent(m: re.Match[str]) -> str:
    value = m.group(1)
    if value.replace(",", "") in ("100", "100.0"):
        return "百分之百"
    return "百分之" + _decimal(value)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CONTEXT_PHONE = re.compile(r"(电话|拨打|热线|专线|号码|拨|打|致电|手机)[:：是为]?\s*$")


def _number(text: str, m: re.Match[str]) -> str:
    """One run of digits, read by what surrounds it."""
    number = m.group(0)
    after = text[m.end() : m.end() + 1]
    before = text[max(0, m.start() - 6) : m.start()]
    plain = number.replace(",", "")
    if "." in number or "," in number:
        return _decimal(number)
    if after == "年" and len(plain) == 4:
        return digits(plain, phone=False)
    if plain in HOTLINES:
        return digits(plain)
    if after and after in _UNITS:
        return cardinal(int(plain))
    if _CONTEXT_PHONE.search(before) or len(plain) >= 5 or plain.startswith("0"):
        return digits(plain)
    return cardinal(int(plain))


def normalise(text: str) -> Spoken:
    """The script as spoken; `problems` names what could not be said (reported at validate)."""
    problems: list[str] = []
    text = text.translate(_FULLWIDTH)
    # clock times, percentages, currency and phone numbers with a hyphen, before bare numbers
    text = re.sub(r"(?<!\d)(\d{1,2})[:：](\d{2})(?!\d)", _time, text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", _percent, text)
    text = re.sub(r"[¥￥]\s*(\d+(?:[.,]\d+)*)", lambda m: _decimal(m.group(1)) + "元", text)
    text = re.sub(
        r"(?<!\d)(\+?86[- ]?)?(0\d{2,3})-(\d{7,8})(?!\d)",
        lambda m: digits(m.group(2)) + "，" + digits(m.group(3)),
        text,
    )
    text = re.sub(r"(?<=\d)-(?=\d)", "到", text)  # 3-5天 → 三到五天
    text = _NUMBER.sub(lambda m: _number(text, m), text) if _NUMBER.search(text) else text

    unknown: list[str] = []

    def latin(m: re.Match[str]) -> str:
        word = m.group(0)
        spoken = LATIN_WORDS.get(word.lower())
        if spoken is not None:
            return spoken
        unknown.append(word)
        return ""

    text = re.sub(r"[A-Za-z]+", latin, text)
    if unknown:
        words = ", ".join(repr(w) for w in dict.fromkeys(unknown))
        problems.append(
            f"无法朗读的拉丁字母 Latin letters cannot be spoken in Chinese: {words}"
            " (write it in Chinese)"
        )
    out = []
    dropped: list[str] = []
    for ch in text:
        if ch in SYMBOL_WORDS:
            out.append(SYMBOL_WORDS[ch])
            continue
        category = unicodedata.category(ch)
        if ch in "\n\r\t":
            out.append("，" if ch == "\n" else " ")
        elif category[0] in "LNZ" or category[0] == "P":
            out.append(ch)
        elif category in ("Mn", "Me", "Cf") or ch == "\ufe0f":
            continue  # variation selectors, joiners: parts of an emoji already reported
        else:
            dropped.append(ch)
    if dropped:
        shown = "".join(dict.fromkeys(dropped))
        problems.append(
            f"无法朗读的符号或表情 symbols or emoji cannot be spoken: {shown!r} (removed)"
        )
    spoken = re.sub(r"[，,]{2,}", "，", "".join(out))
    spoken = re.sub(r"([。！？；：、!?;:])[，,]", r"\1", spoken)  # a line break after a sentence
    spoken = re.sub(r"[ \t]+", " ", spoken).strip(" ，,")
    return Spoken(spoken, tuple(problems))
