"""Options of the web service and its secret.

The secret signs sessions, CSRF tokens and links: `$BROADCASTER_WEB_SECRET`, else the
file `$BROADCASTER_WEB_SECRET_FILE`, else a random one kept in the state folder
(`web.key`, 0600, made on first use). Changing it ends every session and voids every
link sent out.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broadcaster.engine.app import private_folder
from broadcaster.errors import LogStoreError

__all__ = ["SECRET_ENV", "SECRET_FILE_ENV", "WebOptions", "web_secret"]

SECRET_ENV = "BROADCASTER_WEB_SECRET"
SECRET_FILE_ENV = "BROADCASTER_WEB_SECRET_FILE"
MIN_SECRET = 16  # bytes


@dataclass(frozen=True)
class WebOptions:
    """How the service listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = 8080
    secure_cookies: bool = False  # behind TLS (nginx): cookies only over https
    forwarded_allow_ips: str | None = None  # proxies whose X-Forwarded-For is believed
    max_body: int = 1 << 20  # bytes a machine route accepts
    max_form: int = 64 << 10  # bytes a console form accepts
    session_hours: float = 8.0
    login_failures: int = 5  # per name within 15 minutes, then refused for a while


def web_secret(state_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    environ = os.environ if environ is None else environ
    value = environ.get(SECRET_ENV)
    if value:
        if len(value.encode()) < MIN_SECRET:
            raise LogStoreError(
                f"{SECRET_ENV} 太短 is too short: use at least {MIN_SECRET} random bytes"
                " (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return value.encode()
    path = Path(environ[SECRET_FILE_ENV]) if environ.get(SECRET_FILE_ENV) else state_dir / "web.key"
    try:
        if path.exists():
            return path.read_bytes().strip()
        if environ.get(SECRET_FILE_ENV):
            raise LogStoreError(f"密钥文件不存在 the web secret file {path} does not exist")
        private_folder(state_dir)
        key = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
        return key
    except OSError as exc:
        raise LogStoreError(
            f"无法读写网页密钥 cannot read or create the web secret {path}:"
            f" {exc.strerror or exc}; set {SECRET_ENV}"
        ) from None
