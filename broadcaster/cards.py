"""Image cards: a message drawn as a PNG with a CJK font, to long-press-save on a phone.

Pillow draws the card; the font is a CJK one the set-up installs (Debian's
`fonts-noto-cjk`, see `scripts/bootstrap.sh`), found with fontconfig (`fc-match`,
`fc-list :lang=zh-cn`) or at its known Debian path, or given as a file. Without one a
card would show empty boxes (tofu), so `find_cjk_font()` refuses with the command
that installs it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from broadcaster.errors import BroadcasterError

__all__ = ["CardStyle", "FontMissingError", "FontSpec", "find_cjk_font", "render_card"]

INSTALL_HINT = "sudo apt-get install fonts-noto-cjk"
KNOWN_FONTS = (  # (file, face index of Simplified Chinese in a collection)
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
)
# a line never starts with these (Chinese line-breaking rules, 避头点)
NO_LINE_START = set("，。、；：！？）》」』】〕…—,.;:!?)]}%")


class FontMissingError(BroadcasterError):
    """No CJK font: a card would show empty boxes instead of characters."""


@dataclass(frozen=True)
class FontSpec:
    """A font file and the face in it (a .ttc holds several)."""

    path: Path
    index: int = 0

    def describe(self) -> str:
        return f"{self.path.name}#{self.index}"


@dataclass(frozen=True)
class CardStyle:
    """How a card looks; part of its cache key."""

    width: int = 1080
    margin: int = 72
    title_size: int = 60
    body_size: int = 42
    footer_size: int = 30
    band: str = "#c62828"  # the title band: anti-fraud red
    background: str = "#ffffff"
    ink: str = "#1f1f1f"
    muted: str = "#6b6b6b"


def _fontconfig(pattern: str) -> FontSpec | None:
    """The font fontconfig picks for `pattern`, if it really covers Simplified Chinese."""
    if shutil.which("fc-match") is None or shutil.which("fc-list") is None:
        return None
    try:
        picked = subprocess.run(
            ["fc-match", "-f", "%{file}|%{index}", pattern],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        covering = subprocess.run(
            ["fc-list", ":lang=zh-cn", "file"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    file, _, index = picked.partition("|")
    files = {line.strip().rstrip(":").strip() for line in covering.splitlines()}
    if not file or file not in files:
        return None
    return FontSpec(Path(file), int(index or 0))


@lru_cache(maxsize=8)
def find_cjk_font(explicit: str | None = None) -> FontSpec:
    """The CJK font cards are drawn with: `explicit` (a file), else fontconfig's choice for
    Noto Sans CJK SC, else a known Debian path. Raises FontMissingError naming the fix."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FontMissingError(
                f"字体文件不存在 font file not found: {explicit} (or install {INSTALL_HINT})"
            )
        return FontSpec(path, 2 if path.name.startswith("NotoS") and path.suffix == ".ttc" else 0)
    found = _fontconfig("Noto Sans CJK SC:lang=zh-cn") or _fontconfig("sans-serif:lang=zh-cn")
    if found is not None:
        return found
    for file, index in KNOWN_FONTS:
        if Path(file).is_file():
            return FontSpec(Path(file), index)
    raise FontMissingError(
        "找不到中文字体，图片卡片无法显示汉字 no CJK font found, a card would show empty boxes:"
        f" install one with `{INSTALL_HINT}` (scripts/bootstrap.sh does), or set the"
        " channel's `font:` to a .ttf/.otf/.ttc file"
    )


def _font(spec: FontSpec, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(spec.path), size, index=spec.index)


def wrap(text: str, font: Any, width: int) -> list[str]:
    """Lines of at most `width` pixels, broken between characters (CJK has no spaces);
    closing punctuation stays at the end of its line."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for ch in paragraph:
            if line and font.getlength(line + ch) > width and ch not in NO_LINE_START:
                lines.append(line)
                line = ch.lstrip()
            else:
                line += ch
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def render_card(
    title: str, body: str, footer: str, font: FontSpec, style: CardStyle | None = None
) -> bytes:
    """A PNG: a coloured band with the title, the body wrapped to the width, a footer."""
    from PIL import Image, ImageDraw

    style = style or CardStyle()
    title_font = _font(font, style.title_size)
    body_font = _font(font, style.body_size)
    footer_font = _font(font, style.footer_size)
    inner = style.width - 2 * style.margin
    title_lines = wrap(title, title_font, inner) or [""]
    body_lines = wrap(body, body_font, inner)
    footer_lines = wrap(footer, footer_font, inner) if footer else []
    title_step = int(style.title_size * 1.35)
    body_step = int(style.body_size * 1.6)
    footer_step = int(style.footer_size * 1.5)
    band = style.margin + title_step * len(title_lines) + style.margin // 2
    height = (
        band
        + style.margin
        + body_step * len(body_lines)
        + (style.margin // 2 + footer_step * len(footer_lines) if footer_lines else 0)
        + style.margin
    )
    image = Image.new("RGB", (style.width, height), style.background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, style.width, band), fill=style.band)
    y = style.margin
    for line in title_lines:
        draw.text((style.margin, y), line, font=title_font, fill="#ffffff")
        y += title_step
    y = band + style.margin
    for line in body_lines:
        draw.text((style.margin, y), line, font=body_font, fill=style.ink)
        y += body_step
    if footer_lines:
        y += style.margin // 2
        rule_y = y - style.margin // 4
        draw.line((style.margin, rule_y, style.width - style.margin, rule_y), fill="#ddd", width=2)
        for line in footer_lines:
            draw.text((style.margin, y), line, font=footer_font, fill=style.muted)
            y += footer_step
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
