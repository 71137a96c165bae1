"""Opt-in helpers for channel plugins: small shared steps, so a simple channel stays short.

* `split_parts(text, max_bytes)`: a message too long for a provider (a bot's 4,096
  bytes of markdown) split at paragraph boundaries, then lines, then characters
  (never inside a character), each part numbered "(1/3)" and within the limit.
* `utf8_len(text)`: the length providers count for bots.
"""

from __future__ import annotations

__all__ = ["split_parts", "utf8_len"]


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _pieces(text: str, budget: int) -> list[tuple[str, str]]:
    """(separator before it, piece): paragraphs, else lines, else runs of characters, each
    at most `budget` bytes."""
    out: list[tuple[str, str]] = []
    for paragraph in text.split("\n\n"):
        sep = "\n\n"
        if utf8_len(paragraph) <= budget:
            out.append((sep, paragraph))
            continue
        for line in paragraph.split("\n"):
            while utf8_len(line) > budget:
                size, cut = 0, len(line)
                for i, ch in enumerate(line):
                    size += utf8_len(ch)
                    if size > budget:
                        cut = max(1, i)
                        break
                out.append((sep, line[:cut]))
                line, sep = line[cut:], ""
            out.append((sep, line))
            sep = "\n"
    return out


def split_parts(text: str, max_bytes: int, *, number: bool = True) -> tuple[str, ...]:
    """`text` as parts of at most `max_bytes` UTF-8 bytes each; () when it fits whole.

    Parts keep paragraph breaks where they can; with `number`, each starts with "(i/n) ".
    """
    if utf8_len(text) <= max_bytes:
        return ()
    reserve = 0
    while True:
        budget = max_bytes - reserve
        if budget < 8:
            raise ValueError(f"max_bytes {max_bytes} leaves no room for text")
        parts: list[str] = []
        current = ""
        for sep, piece in _pieces(text, budget):
            joined = f"{current}{sep}{piece}" if current else piece
            if utf8_len(joined) <= budget:
                current = joined
            else:
                if current:
                    parts.append(current)
                current = piece
        if current:
            parts.append(current)
        if not number:
            return tuple(parts)
        n = len(parts)
        needed = utf8_len(f"({n}/{n}) ")
        if needed <= reserve:
            return tuple(f"({i}/{n}) {p}" for i, p in enumerate(parts, 1))
        reserve = needed
