"""Artefacts: files made before sending (an MP3 of a script, an image card), by content.

`FileArtefactStore.make(cache_key, ...)` runs the maker only when nothing was made
for that cache key (the text, the engine and its version, the settings), so the same
script is never synthesised twice; the file is named by the sha256 of its bytes,
written atomically, and its hash goes to the log beside the text's.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from broadcaster.channel import Artefact

__all__ = ["FileArtefactStore"]


class FileArtefactStore:
    """Artefacts under one folder: `files/<sha256>` and `index/<cache key hash>.json`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()
        self.made = 0  # files built (cache misses) since this store was opened
        self.reused = 0

    def _index(self, cache_key: str) -> Path:
        digest = hashlib.sha256(cache_key.encode("utf-8")).hexdigest()
        return self.folder / "index" / f"{digest}.json"

    def make(
        self, cache_key: str, name: str, media_type: str, build: Callable[[], bytes]
    ) -> Artefact:
        index = self._index(cache_key)
        with self._lock:
            found = self._load(index)
            if found is not None:
                self.reused += 1
                return found
        data = build()
        sha = hashlib.sha256(data).hexdigest()
        path = self.folder / "files" / sha
        _write_atomic(path, data)
        artefact = Artefact(name, sha, path, media_type, len(data))
        meta = {"name": name, "sha256": sha, "media_type": media_type, "size": len(data)}
        with self._lock:
            _write_atomic(index, json.dumps(meta).encode("utf-8"))
            self.made += 1
        return artefact

    def _load(self, index: Path) -> Artefact | None:
        try:
            meta = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        path = self.folder / "files" / meta["sha256"]
        if not path.is_file():
            return None
        return Artefact(meta["name"], meta["sha256"], path, meta["media_type"], meta["size"])


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
