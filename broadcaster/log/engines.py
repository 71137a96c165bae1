"""Opening the log's databases: URLs, SQLite and PostgreSQL engines, migrations, and the
translation of database failures into one bilingual `LogStoreError`."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import URL, make_url

from broadcaster.errors import LogStoreError

__all__ = [
    "RefusedError",
    "Target",
    "mask",
    "migrate",
    "parse_url",
    "pg_engine",
    "sqlite_engine",
    "sqlite_path",
]

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
PG_MIGRATION_LOCK = 0x62726F61  # advisory lock id: two processes never migrate at once


def mask(url: str) -> str:
    """Mask the password of a URL that SQLAlchemy could not parse."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _is_dbapi(exc: BaseException, *names: str) -> bool:
    """Whether `exc` is one of the named PEP 249 errors, wrapped by SQLAlchemy or raised by
    the driver itself (the writer's hot statements go to the driver directly)."""
    kinds = {c.__name__ for c in type(exc).__mro__}
    return any(isinstance(exc, getattr(sa.exc, name)) or name in kinds for name in names)


class RefusedError(LogStoreError):
    """A write refused because of its own content: fails only the caller who sent it."""


class Target:
    """Where the log lives, as shown to people; turns database errors into LogStoreError."""

    def __init__(self, url: URL, path: Path | None, busy_timeout: float) -> None:
        self.display = url.render_as_string(hide_password=True)
        self.password = url.password
        self.dialect = url.get_backend_name()
        self.path = path
        self.busy_timeout = busy_timeout

    def translate(self, exc: BaseException) -> LogStoreError:
        """One bilingual LogStoreError for any database failure; never shows a password."""
        if isinstance(exc, LogStoreError):
            return exc
        orig = getattr(exc, "orig", None) or exc
        lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
        detail = lines[0] if lines else type(orig).__name__
        if self.password:
            detail = detail.replace(self.password, "***")
        low = detail.lower()
        where = str(self.path) if self.path else self.display
        sqlstate = getattr(orig, "sqlstate", None)
        if self.dialect == "sqlite":
            if "locked" in low or "busy" in low:
                return LogStoreError(
                    f"日志库被锁定 delivery log is locked: {where} (another connection holds"
                    f" the lock; gave up after {self.busy_timeout:g} s: {detail})"
                )
            if any(w in low for w in ("readonly", "read-only", "unable to open", "permission")):
                return LogStoreError(
                    f"日志库无法写入 delivery log is not writable: {where} ({detail})"
                )
        elif sqlstate in ("55P03", "40P01"):  # lock_not_available, deadlock_detected
            return LogStoreError(
                f"日志库被锁定 delivery log is locked: {where} (gave up after"
                f" {self.busy_timeout:g} s: {detail})"
            )
        elif sqlstate == "42501":  # insufficient_privilege
            return LogStoreError(f"日志库无法写入 delivery log is not writable: {where} ({detail})")
        elif _is_dbapi(exc, "OperationalError", "InterfaceError") and (
            sqlstate is None or sqlstate.startswith("08")
        ):
            return LogStoreError(f"日志库无法连接 delivery log is unreachable: {where} ({detail})")
        if _is_dbapi(exc, "IntegrityError"):
            return RefusedError(f"日志拒绝写入 delivery log refused the write: {where} ({detail})")
        if isinstance(exc, OSError):
            reason = exc.strerror or detail
            return LogStoreError(f"日志库无法写入 delivery log is not writable: {where} ({reason})")
        return LogStoreError(f"日志库出错 delivery log error: {where} ({detail})")


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise LogStoreError(
            f"日志库地址无效 delivery log URL is invalid: {mask(str(url))} ({exc})"
        ) from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        return parsed
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        return parsed.set(drivername="postgresql+psycopg")  # psycopg 3 only
    raise LogStoreError(
        f"日志库地址无效 delivery log URL is invalid: {parsed.render_as_string(hide_password=True)}"
        " (use sqlite:///path/to/log.sqlite3 or postgresql+psycopg://user@host/db)"
    )


def sqlite_path(url: URL, display: str) -> Path:
    """The database file, its folder created and checked writable."""
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        raise LogStoreError(
            f"日志库地址无效 delivery log URL is invalid: {display} (SQLite needs a file path)"
        )
    path = Path(url.database).expanduser().absolute()
    folder = path.parent
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise LogStoreError(
                    f"日志库无法写入 delivery log is not writable: {path} ({parent} is a file, not a folder)"
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LogStoreError(
            f"日志库无法写入 delivery log is not writable: {path} ({exc.strerror})"
        ) from exc
    # readable by its owner only (SQLite gives -wal and -shm the same mode); a failure to
    # create it is reported just below as not writable
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # WAL needs to create -wal and -shm files next to the database.
    if not os.access(folder, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        raise LogStoreError(
            f"日志库无法写入 delivery log is not writable: {path} (Permission denied)"
        )
    return path


def sqlite_engine(url: URL, busy_timeout: float, *, immediate: bool, pool_size: int) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        pool_size=pool_size,
        max_overflow=0 if immediate else 8,
    )

    @sa_event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @sa_event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def pg_engine(
    url: URL, busy_timeout: float, *, pool_size: int, isolation: str = "READ COMMITTED"
) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = 10
    engine = sa.create_engine(
        url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=0 if pool_size == 1 else 4,  # each worker process: ≤ 15 connections
        pool_pre_ping=True,
        isolation_level=isolation,
    )
    timeout_ms = max(1, round(busy_timeout * 1000))

    @sa_event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        dbapi_connection.execute(f"SET lock_timeout = {timeout_ms}")
        dbapi_connection.autocommit = autocommit

    return engine


def migrate(engine: Engine) -> None:
    """Run the Alembic migrations to head inside one write transaction."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
