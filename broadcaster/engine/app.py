"""Wiring shared by the delivery commands: state folder, log database, hash key."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from broadcaster.errors import LogStoreError
from broadcaster.log import DeliveryLog, default_url

__all__ = ["DB_ENV", "KEY_ENV", "STATE_ENV", "hash_key", "open_log", "state_dir_for"]

DB_ENV = "BROADCASTER_DB"  # any SQLAlchemy URL; default: SQLite in the state folder
KEY_ENV = "BROADCASTER_LOG_KEY"  # key of recipient hashes and idempotency keys
STATE_ENV = "BROADCASTER_STATE_DIR"  # default: var/ next to schedules.yaml


def state_dir_for(
    config: Path, option: Path | None, environ: Mapping[str, str] | None = None
) -> Path:
    environ = os.environ if environ is None else environ
    if option is not None:
        return option
    if environ.get(STATE_ENV):
        return Path(environ[STATE_ENV])
    return config.resolve().parent / "var"


def hash_key(state_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The log key: from $BROADCASTER_LOG_KEY, else a random key kept in var/log.key (0600).

    Changing it changes every idempotency key and recipient hash: keep it with the database.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(KEY_ENV)
    if value:
        return value.encode("utf-8")
    path = state_dir / "log.key"
    try:
        if path.exists():
            return path.read_bytes().strip()
        state_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        return key
    except OSError as exc:
        raise LogStoreError(
            f"无法读写日志密钥 cannot read or create the log key {path}: {exc.strerror or exc}; set {KEY_ENV}"
        ) from None


def open_log(
    db: str | None, state_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[DeliveryLog, bytes]:
    environ = os.environ if environ is None else environ
    key = hash_key(state_dir, environ)
    url = db or environ.get(DB_ENV) or default_url(state_dir)
    return DeliveryLog.open(url, hash_key=key), key
