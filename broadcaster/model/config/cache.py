"""Parse a file once per content: YAML documents and contact lists, by sha256 of their bytes.

Two levels, both keyed by the file's path and checked against the sha256 of its bytes:

- in memory, for every load in this process (a running scheduler's hot reload): the
  latest version of each file;
- on disk, when a cache folder is given (for separate command invocations): one JSON
  file per source file, a header line then the payload. The header names the source's
  hash, the code that wrote it and the payload's own sha256; an entry that does not
  match in every respect, or does not decode, is ignored and rewritten, never trusted.

A `Manifest` records every input one build read (files by hash, include globs, template
and calendar folders), so a whole built campaign can be reused while none of it changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers
import yaml

from broadcaster.errors import ConfigIssue
from broadcaster.model.config.yaml_reader import Parsed, parse_yaml
from broadcaster.model.targets import Contact, ContactProblem, parse_contacts_csv
from broadcaster.recipients.reader import ListRead, RecipientRow, RowProblem, read_list

__all__ = ["ConfigCache", "Manifest", "forget_parsed"]

FORMAT = 1
_MEMORY_FILES = 64  # files kept parsed in memory (the latest version of each)
_DATE = "\x00date"  # marks a date in the JSON payload of a YAML document


def _code_version() -> str:
    """Changes whenever the code or the data that parsing depends on changes."""
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in (
        here / "yaml_reader.py",
        here / "cache.py",
        here.parent / "targets.py",
        here.parent.parent / "recipients" / "reader.py",
    ):
        try:
            digest.update(source.read_bytes())
        except OSError:
            digest.update(source.name.encode())
    for part in (
        sys.version,
        yaml.__version__,
        str(yaml.__with_libyaml__),
        phonenumbers.__version__,
    ):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


_CODE: str | None = None


def code_version() -> str:
    global _CODE
    if _CODE is None:
        _CODE = _code_version()
    return _CODE


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


# --- what a build read -------------------------------------------------------------------------


def _folder_print(folder: Path, pattern: str) -> tuple[tuple[str, str], ...] | None:
    """(relative path, sha256) of every file matching `pattern` in `folder`; None if absent."""
    if not folder.is_dir():
        return None
    out = []
    for path in sorted(folder.glob(pattern)):
        if path.is_file():
            try:
                out.append((str(path.relative_to(folder)), sha256(path.read_bytes())))
            except OSError:
                out.append((str(path.relative_to(folder)), ""))
    return tuple(out)


def _file_print(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes())
    except OSError:
        return None


class Manifest:
    """Every input one build read, to tell later whether any of it changed."""

    def __init__(self) -> None:
        self.files: dict[Path, str | None] = {}
        self.globs: dict[tuple[Path, str], tuple[str, ...]] = {}
        self.folders: dict[tuple[Path, str], tuple[tuple[str, str], ...] | None] = {}

    def file(self, path: Path, digest: str | None) -> None:
        """A file read, by the sha256 of what was read (None: missing or unreadable)."""
        self.files[path] = digest

    def glob(self, folder: Path, pattern: str, found: list[Path]) -> None:
        self.globs[(folder, pattern)] = tuple(str(p) for p in found)

    def folder(self, folder: Path, pattern: str = "**/*") -> None:
        """A folder whose files the build may read (templates, holiday files)."""
        self.folders[(folder, pattern)] = _folder_print(folder, pattern)

    def unchanged(self) -> bool:
        """Whether every input still has the content it had."""
        for path, digest in self.files.items():
            if _file_print(path) != digest:
                return False
        for (folder, pattern), found in self.globs.items():
            if tuple(str(p) for p in sorted(folder.glob(pattern))) != found:
                return False
        return all(
            _folder_print(folder, pattern) == printed
            for (folder, pattern), printed in self.folders.items()
        )


# --- parsed files ------------------------------------------------------------------------------

_memory: OrderedDict[tuple[str, Path], tuple[str, str, Any]] = OrderedDict()
_memory_lock = threading.Lock()


def forget_parsed() -> None:
    """Drop the parsed files kept in memory (the disk cache stays)."""
    with _memory_lock:
        _memory.clear()


def _encode_yaml(parsed: Parsed) -> str | None:
    dates = 0

    def default(value: Any) -> Any:
        nonlocal dates
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            dates += 1
            return {_DATE: value.isoformat()}
        raise TypeError(f"cannot cache {type(value).__name__}")

    try:
        data = json.dumps(parsed.data, ensure_ascii=False, default=default)
    except (TypeError, ValueError):
        return None
    if data.count(json.dumps(_DATE)) != dates:
        return None  # the document itself uses the marker: not cached
    issues = [[i.file, i.line, i.path, i.message, i.severity, i.hint] for i in parsed.issues]
    lines = json.dumps(parsed.lines)
    return f'{{"ok": {json.dumps(parsed.ok)}, "issues": {json.dumps(issues, ensure_ascii=False)}, "lines": {lines}, "data": {data}}}'


def _decode_date(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _DATE in obj:
        return dt.date.fromisoformat(obj[_DATE])
    return obj


def _decode_yaml(payload: str) -> Parsed:
    raw = json.loads(payload, object_hook=_decode_date)
    if not isinstance(raw, dict) or not isinstance(raw.get("ok"), bool):
        raise ValueError("not a cached document")
    issues = [ConfigIssue(i[0], i[1], i[2], i[3], i[4], i[5]) for i in raw["issues"]]
    if not isinstance(raw["lines"], int | list):
        raise ValueError("not a lines tree")
    return Parsed(raw["data"], raw["lines"], issues, raw["ok"])


def _encode_contacts(value: tuple[list[Contact], list[ContactProblem]]) -> str:
    contacts, problems = value
    return json.dumps(
        {
            "contacts": [[c.number, c.display, c.name] for c in contacts],
            "problems": [[p.file, p.line, p.message] for p in problems],
        },
        ensure_ascii=False,
    )


def _decode_contacts(payload: str) -> tuple[list[Contact], list[ContactProblem]]:
    raw = json.loads(payload)
    contacts = [Contact(str(n), str(d), str(m)) for n, d, m in raw["contacts"]]
    problems = [ContactProblem(str(f), ln, str(m)) for f, ln, m in raw["problems"]]
    return contacts, problems


def _encode_list(value: ListRead) -> str:
    return json.dumps(
        {
            "rows": [
                [r.line, r.name, r.mobile, r.landline, r.area, list(r.tags)] for r in value.rows
            ],
            "problems": [[p.line, p.reason] for p in value.problems],
            "encoding": value.encoding,
            "data_rows": value.data_rows,
            "merged": value.merged,
        },
        ensure_ascii=False,
    )


def _decode_list(payload: str) -> ListRead:
    raw = json.loads(payload)
    rows = [RecipientRow(ln, n, m, la, a, tuple(t)) for ln, n, m, la, a, t in raw["rows"]]
    problems = [RowProblem(ln, str(reason)) for ln, reason in raw["problems"]]
    return ListRead(
        rows, problems, str(raw["encoding"]), (), int(raw["data_rows"]), int(raw["merged"])
    )


def _private_folder(folder: Path) -> None:
    """Create `folder` and any missing parent readable by its owner only (0700)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)


class ConfigCache:
    """Parsed YAML files and contact lists by content; on disk too when `folder` is given."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) / "config" if folder is not None else None

    def yaml(self, path: Path, raw: bytes, name: str, manifest: Manifest | None) -> Parsed:
        parsed: Parsed = self._get(
            "yaml",
            path,
            raw,
            name,
            manifest,
            lambda: parse_yaml(raw, name),
            _encode_yaml,
            _decode_yaml,
        )
        return parsed

    def contacts(
        self, path: Path, raw: bytes, shown: str, manifest: Manifest | None
    ) -> tuple[list[Contact], list[ContactProblem]]:
        found: tuple[list[Contact], list[ContactProblem]] = self._get(
            "contacts",
            path,
            raw,
            shown,
            manifest,
            lambda: parse_contacts_csv(raw, shown),
            _encode_contacts,
            _decode_contacts,
        )
        return found

    def recipient_list(self, path: Path, raw: bytes, manifest: Manifest | None) -> ListRead:
        """A recipient list file (CSV or XLSX) read once per content."""
        found: ListRead = self._get(
            "recipients",
            path,
            raw,
            str(path),
            manifest,
            lambda: read_list(raw),
            _encode_list,
            _decode_list,
        )
        return found

    def _get(
        self,
        kind: str,
        path: Path,
        raw: bytes,
        name: str,
        manifest: Manifest | None,
        make: Callable[[], Any],
        encode: Callable[[Any], str | None],
        decode: Callable[[str], Any],
    ) -> Any:
        digest = sha256(raw)
        if manifest is not None:
            manifest.file(path, digest)
        key = (kind, path)
        with _memory_lock:
            hit = _memory.get(key)
        if hit is not None and hit[0] == digest and hit[1] == name:
            return hit[2]
        value = self._read_disk(kind, path, digest, name, decode)
        if value is None:
            value = make()
            self._write_disk(kind, path, digest, name, value, encode)
        with _memory_lock:
            _memory[key] = (digest, name, value)  # the latest version of each file only
            _memory.move_to_end(key)
            while len(_memory) > _MEMORY_FILES:
                _memory.popitem(last=False)
        return value

    def _entry(self, kind: str, path: Path) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{kind}-{sha256(str(path).encode())[:24]}.json"

    def _header(self, kind: str, path: Path, digest: str, name: str, payload: str) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "code": code_version(),
                "kind": kind,
                "file": str(path),
                "name": name,
                "source_sha256": digest,
                "payload_sha256": sha256(payload.encode("utf-8")),
            },
            ensure_ascii=False,
        )

    def _read_disk(
        self, kind: str, path: Path, digest: str, name: str, decode: Callable[[str], Any]
    ) -> Any:
        entry = self._entry(kind, path)
        if entry is None:
            return None
        try:
            text = entry.read_text(encoding="utf-8")
            head, _, payload = text.partition("\n")
            if json.loads(head) != json.loads(self._header(kind, path, digest, name, payload)):
                return None
            return decode(payload)
        except Exception:  # missing, stale, corrupt or forged: parse again
            return None

    def _write_disk(
        self,
        kind: str,
        path: Path,
        digest: str,
        name: str,
        value: Any,
        encode: Callable[[Any], str | None],
    ) -> None:
        entry = self._entry(kind, path)
        if entry is None:
            return
        payload = encode(value)
        if payload is None:
            return
        tmp: str | None = None
        try:
            _private_folder(entry.parent)
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=entry.parent, delete=False, suffix=".tmp"
            ) as handle:
                tmp = handle.name
                handle.write(self._header(kind, path, digest, name, payload) + "\n" + payload)
            os.replace(tmp, entry)
        except OSError:  # a read-only or full disk only costs the next load its speed
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
