"""Fixtures for the delivery log: every test runs on SQLite and on PostgreSQL.

`log_url` is the reusable piece: a fresh, empty log URL per test, on SQLite (a temp
folder) and on PostgreSQL (a schema of its own, dropped afterwards). When the
PostgreSQL server cannot be reached the PostgreSQL half fails in CI (variable `CI`
set) and is skipped elsewhere, with the reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from broadcaster.log import DeliveryLog, default_url

PG_URL = os.environ.get("PG_TEST_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
HASH_KEY = b"test-hash-key"
UTC = dt.UTC


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the test PostgreSQL server cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - dev extras install it
        return f"psycopg not installed: {exc}"
    url = sa.make_url(PG_URL)
    try:
        psycopg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database,
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {url.render_as_string(hide_password=True)} unreachable: {exc}"
    return None


def require_postgres() -> None:
    """Fail (in CI) or skip (elsewhere) when the PostgreSQL server is not there."""
    reason = postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs PostgreSQL: {reason}")
    pytest.skip(reason)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema; the schema is dropped on exit."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex}"
    admin = sa.create_engine(PG_URL, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh delivery-log URL: SQLite in tmp_path, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield default_url(tmp_path / "state")
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def log(log_url: str) -> Iterator[DeliveryLog]:
    """An open log on `log_url`, closed after the test."""
    opened = DeliveryLog.open(log_url, hash_key=HASH_KEY)
    try:
        yield opened
    finally:
        opened.close()


@contextmanager
def raw_connection(url: str) -> Iterator[sa.Connection]:
    """A plain connection to the log's database, outside DeliveryLog (for raw SQL)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
