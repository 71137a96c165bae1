"""Where the commands write: rich consoles that go quiet when their reader has gone, and
tables that fit a narrow terminal without cropping what a clerk needs.

A reader that closes the pipe early (`broadcaster calendar show 2026 | grep -q 春节`,
`broadcaster run | tee run.log` stopped with Ctrl-C) is not an error: whatever is
written after that goes to /dev/null, the command finishes its work (a stopping
scheduler still shuts down and writes the log) and exits 0.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import IO, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["OutputConsole", "console", "fit_table", "silence", "widest_word"]

PIPE_WIDTH = 160  # columns of output that goes to a file or a pipe (COLUMNS overrides)


def silence(stream: IO[Any] | None) -> None:
    """Point a stream whose reader has gone at /dev/null: later writes, and the flush at
    interpreter exit, succeed quietly. A stream without a descriptor is left alone."""
    if stream is None:
        return
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # CliRunner's streams, closed streams
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class OutputConsole(Console):
    """A rich console that, when its reader closes the pipe, goes quiet instead of exiting
    (rich's default raises SystemExit(1) from inside whatever was printing)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        silence(self.file)


def console(*, stderr: bool = False) -> OutputConsole:
    """A rich console; plain and wide enough for tables when not writing to a terminal
    (COLUMNS, when set, is the width either way)."""
    probe = Console(stderr=stderr)
    columns = os.environ.get("COLUMNS", "")
    width = None
    if not probe.is_terminal:
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return OutputConsole(stderr=stderr, highlight=False, width=width, soft_wrap=True)


_WORD = re.compile(r"[!-~]+")  # a run of printable ASCII: an id, a variable name, a number


def _plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain


def widest_word(cells: Iterable[object]) -> int:
    """The widest run of ASCII among table cells (markup ignored): what must not be split.
    Chinese may break between any two characters, so it never counts."""
    return max((len(w) for cell in cells for w in _WORD.findall(_plain(cell))), default=0)


def _natural(cells: Iterable[object]) -> int:
    """The width a column would take unwrapped: its longest line."""
    return max((cell_len(line) for cell in cells for line in _plain(cell).splitlines()), default=0)


def fit_table(table: Table, width: int, *whole: int) -> Table:
    """Make `table` fit `width` columns without cropping a cell: columns wrap at spaces
    and between Chinese characters, and fold a word only when nothing else fits.

    When the table is too wide, each column gets its widest ASCII word (an id, an
    environment variable name) and the rest is shared so that narrow columns stay whole;
    when even the words do not fit side by side, only the columns in `whole` (indexes)
    keep theirs. A `no_wrap` column counts its whole width as one word."""
    columns = table.columns
    for column in columns:
        column.overflow = "fold"
    edges = len(columns) + 1 if table.show_edge else len(columns) - 1
    room = width - edges - (table.padding[1] + table.padding[3]) * len(columns)
    natural = [_natural((c.header, *c.cells)) for c in columns]
    if sum(natural) <= room:
        return table  # it fits as it is
    words = [
        n if c.no_wrap else min(widest_word((c.header, *c.cells)), n)
        for c, n in zip(columns, natural, strict=True)
    ]
    if sum(words) <= room:
        # the widest cap that fits: narrower columns keep their natural width, wider ones
        # get the cap (never less than their widest word)
        def widths(cap: int) -> list[int]:
            return [min(n, max(w, cap)) for n, w in zip(natural, words, strict=True)]

        low, high = 0, max(natural)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if sum(widths(mid)) <= room else (low, mid - 1)
        for column, w in zip(columns, widths(low), strict=True):
            column.width = w
        return table
    kept = [i for i, c in enumerate(columns) if i in whole or c.no_wrap]
    others = [i for i in range(len(columns)) if i not in kept]
    rest = room - sum(words[i] for i in kept)
    if not whole or not others or rest < 3 * len(others):
        return table  # too narrow to choose: rich folds every column evenly
    for i in kept:
        columns[i].width = words[i]
    total = sum(natural[i] for i in others) or 1
    for i in others:
        columns[i].width = max(3, rest * natural[i] // total)
    return table
