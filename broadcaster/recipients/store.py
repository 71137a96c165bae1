"""The office's recipient store: one SQLite file in the state folder, readable by its owner only.

Lists are replaced whole on import (one transaction: a half-imported list never shows);
opt-outs are numbers that must never get a message again, whatever list names them.
The store is the only place besides the office's own files where clear numbers live.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from broadcaster.recipients.reader import RecipientRow

__all__ = ["STORE_FILE", "RecipientStore", "StoredList"]

STORE_FILE = "recipients.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    people INTEGER NOT NULL,
    mobiles INTEGER NOT NULL,
    landlines INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS people (
    list TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line INTEGER NOT NULL,
    name TEXT NOT NULL,
    mobile TEXT,
    landline TEXT,
    area TEXT NOT NULL,
    tags TEXT NOT NULL,
    PRIMARY KEY (list, seq)
);
CREATE TABLE IF NOT EXISTS optouts (
    number TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    at TEXT NOT NULL
);
"""

_TAG_SEP = "\x1f"


@dataclass(frozen=True)
class StoredList:
    name: str
    source: str  # the file it came from, as given on the command line
    source_sha256: str
    imported_at: str
    people: int
    mobiles: int
    landlines: int


_snapshots: dict[Path, tuple[str, dict[str, list[RecipientRow]], frozenset[str]]] = {}
_snapshot_lock = threading.Lock()


class RecipientStore:
    """Lists and opt-outs in `path` (created 0600 on first write)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def in_folder(cls, state_dir: Path) -> RecipientStore:
        return cls(Path(state_dir) / STORE_FILE)

    # -- connections

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            os.chmod(self.path, 0o600)
        elif not self.path.exists():
            raise FileNotFoundError(self.path)
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            if write:
                connection.executescript(_SCHEMA)
            yield connection
        finally:
            connection.close()

    def exists(self) -> bool:
        return self.path.exists()

    def digest(self) -> str | None:
        """sha256 of the file's bytes: changes with any list or opt-out; None when absent."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    # -- writing

    def replace_list(
        self,
        name: str,
        rows: list[RecipientRow],
        *,
        source: str,
        source_sha256: str,
        at: dt.datetime,
    ) -> None:
        """Make `rows` the whole of list `name`, in one transaction."""
        with self._connect(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM people WHERE list = ?", (name,))
                db.executemany(
                    "INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            name,
                            i,
                            r.line,
                            r.name,
                            r.mobile,
                            r.landline,
                            r.area,
                            _TAG_SEP.join(r.tags),
                        )
                        for i, r in enumerate(rows)
                    ),
                )
                db.execute(
                    "INSERT OR REPLACE INTO lists VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        source,
                        source_sha256,
                        at.isoformat(timespec="seconds"),
                        len(rows),
                        sum(1 for r in rows if r.mobile),
                        sum(1 for r in rows if r.landline),
                    ),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def add_optouts(
        self, numbers: Iterable[str], *, reason: str, source: str, at: dt.datetime
    ) -> int:
        """Add numbers (E.164) to the opt-out list; returns how many were new."""
        with self._connect(write=True) as db:
            db.execute("BEGIN IMMEDIATE")
            before = db.execute("SELECT count(*) FROM optouts").fetchone()[0]
            db.executemany(
                "INSERT OR IGNORE INTO optouts VALUES (?, ?, ?, ?)",
                ((n, reason, source, at.isoformat(timespec="seconds")) for n in numbers),
            )
            after = db.execute("SELECT count(*) FROM optouts").fetchone()[0]
            db.execute("COMMIT")
        return int(after - before)

    # -- reading

    def lists(self) -> list[StoredList]:
        if not self.exists():
            return []
        with self._connect(write=False) as db:
            try:
                found = db.execute("SELECT * FROM lists ORDER BY name").fetchall()
            except sqlite3.OperationalError:
                return []
        return [StoredList(*row) for row in found]

    def optout_count(self) -> int:
        return len(self.snapshot()[2])

    def snapshot(self) -> tuple[str, dict[str, list[RecipientRow]], frozenset[str]]:
        """(digest, rows by list, opt-outs) as the file holds them now; read once per content."""
        digest = self.digest()
        if digest is None:
            return "", {}, frozenset()
        with _snapshot_lock:
            found = _snapshots.get(self.path)
        if found is not None and found[0] == digest:
            return found
        lists: dict[str, list[RecipientRow]] = {}
        with self._connect(write=False) as db:
            try:
                rows = db.execute(
                    "SELECT list, line, name, mobile, landline, area, tags FROM people"
                    " ORDER BY list, seq"
                ).fetchall()
                optouts = frozenset(n for (n,) in db.execute("SELECT number FROM optouts"))
            except sqlite3.OperationalError:  # an empty file: nothing imported yet
                rows, optouts = [], frozenset()
        split: dict[str, tuple[str, ...]] = {"": ()}
        current_name: str | None = None
        current: list[RecipientRow] = []
        for list_name, line, name, mobile, landline, area, tags in rows:
            if list_name != current_name:
                current_name, current = list_name, lists.setdefault(list_name, [])
            found_tags = split.get(tags)
            if found_tags is None:
                found_tags = split[tags] = tuple(tags.split(_TAG_SEP))
            current.append(RecipientRow(line, name, mobile, landline, area, found_tags))
        found = (digest, lists, optouts)
        with _snapshot_lock:
            _snapshots[self.path] = found
        return found

    def rows(self, name: str) -> list[RecipientRow] | None:
        return self.snapshot()[1].get(name)

    def optouts(self) -> frozenset[str]:
        return self.snapshot()[2]
