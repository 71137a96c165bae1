"""The console's own tables in the delivery log's database (migration 0003).

Accounts change in place; what people did, login attempts and used links are only ever
inserted (the database refuses UPDATE and DELETE on them). Writes go through a small
engine of their own (the log's writer thread serves the engine's writes); reads of the
hot path (a session's account) run on the log's reader pool.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from broadcaster.engine.clock import Clock
from broadcaster.log import DeliveryLog, chain
from broadcaster.log.engines import parse_url, pg_engine, sqlite_engine
from broadcaster.log.models import console_actions, console_logins, console_users, link_uses

__all__ = ["Action", "ConsoleStore", "UserRow"]

T = TypeVar("T")


@dataclass(frozen=True)
class UserRow:
    name: str
    role: str
    password_hash: str
    created_at: dt.datetime
    changed_at: dt.datetime
    disabled_at: dt.datetime | None


@dataclass(frozen=True)
class Action:
    """One thing a person did: who, when, what."""

    at: dt.datetime
    actor: str
    role: str
    action: str
    subject: str
    detail: str
    remote: str


class ConsoleStore:
    """Reads and writes of the console tables; `url` is the delivery log's URL."""

    def __init__(self, log: DeliveryLog, url: str, clock: Clock):
        self.log = log
        self.clock = clock
        parsed = parse_url(url)
        busy = log.target.busy_timeout
        self._engine: Engine = (
            sqlite_engine(parsed, busy, immediate=True, pool_size=1)
            if parsed.get_backend_name() == "sqlite"
            else pg_engine(parsed, busy, pool_size=2)
        )

    def close(self) -> None:
        self._engine.dispose()

    def write(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self._engine.begin() as conn:
                chain.lock(conn)
                result = fn(conn)
                chain.seal(conn)  # console actions and logins are chained
                return result
        except sa.exc.SQLAlchemyError as exc:
            raise self.log.target.translate(exc) from exc

    def read(self, fn: Callable[[Connection], T]) -> T:
        return self.log.read(fn)

    # -- accounts

    def user(self, name: str) -> UserRow | None:
        query = sa.select(console_users).where(console_users.c.name == name)
        row = self.read(lambda conn: conn.execute(query).first())
        return None if row is None else UserRow(**row._mapping)

    def users(self) -> list[UserRow]:
        query = sa.select(console_users).order_by(console_users.c.name)
        return [UserRow(**r._mapping) for r in self.read(lambda c: c.execute(query).all())]

    def insert_user(self, name: str, role: str, password_hash: str) -> bool:
        """Add an account; False when the name is taken."""
        now = self.clock.now()

        def work(conn: Connection) -> bool:
            u = console_users
            if conn.execute(sa.select(u.c.name).where(u.c.name == name)).first() is not None:
                return False
            conn.execute(
                u.insert().values(
                    name=name,
                    role=role,
                    password_hash=password_hash,
                    created_at=now,
                    changed_at=now,
                    disabled_at=None,
                )
            )
            return True

        return self.write(work)

    def update_user(self, name: str, **values: Any) -> bool:
        u = console_users
        values["changed_at"] = self.clock.now()
        stmt = sa.update(u).where(u.c.name == name).values(**values)
        return bool(self.write(lambda conn: conn.execute(stmt).rowcount))

    # -- what people did

    def record(
        self,
        actor: str,
        role: str,
        action: str,
        subject: str = "",
        detail: Any = "",
        remote: str = "",
    ) -> None:
        text = (
            detail
            if isinstance(detail, str)
            else json.dumps(detail, ensure_ascii=False, sort_keys=True)
        )
        row = {
            "at": self.clock.now(),
            "actor": actor[:64],
            "role": role[:16],
            "action": action[:32],
            "subject": subject[:500],
            "detail": text[:4000],
            "remote": remote[:64],
        }
        self.write(lambda conn: conn.execute(console_actions.insert().values(**row)))

    def actions(self, *, actor: str | None = None, limit: int = 100) -> list[Action]:
        a = console_actions
        query = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(a.c.actor == actor)
        rows = self.read(lambda conn: conn.execute(query).all())
        return [
            Action(r.at, r.actor, r.role, r.action, r.subject, r.detail, r.remote) for r in rows
        ]

    # -- login attempts

    def record_login(self, name: str, remote: str, ok: bool) -> None:
        row = {"at": self.clock.now(), "name": name[:64], "remote": remote[:64], "ok": ok}
        self.write(lambda conn: conn.execute(console_logins.insert().values(**row)))

    def failures_since(
        self, *, since: dt.datetime, name: str | None = None, remote: str | None = None
    ) -> list[dt.datetime]:
        """When logins failed after `since` (for a name, after its last success), oldest first."""
        c = console_logins
        query = sa.select(c.c.at, c.c.ok).where(c.c.at >= since).order_by(c.c.id)
        if name is not None:
            query = query.where(c.c.name == name[:64])
        if remote is not None:
            query = query.where(c.c.remote == remote[:64])
        rows = self.read(lambda conn: conn.execute(query).all())
        failed: list[dt.datetime] = []
        for at, ok in rows:
            if ok and name is not None:
                failed = []
            elif not ok:
                failed.append(at)
        return failed

    # -- single-use links

    def use_link(self, jti: str, purpose: str, subject: str) -> bool:
        """Record a link as used; False when it already was."""
        now = self.clock.now()

        def work(conn: Connection) -> bool:
            lu = link_uses
            if conn.execute(sa.select(lu.c.jti).where(lu.c.jti == jti)).first() is not None:
                return False
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert

                stmt = (
                    insert(lu)
                    .values(jti=jti, purpose=purpose, subject=subject, used_at=now)
                    .on_conflict_do_nothing()
                    .returning(lu.c.jti)
                )
                return conn.execute(stmt).first() is not None
            conn.execute(lu.insert().values(jti=jti, purpose=purpose, subject=subject, used_at=now))
            return True

        return self.write(work)

    def link_used(self, jti: str) -> bool:
        query = sa.select(link_uses.c.jti).where(link_uses.c.jti == jti)
        return self.read(lambda conn: conn.execute(query).first()) is not None
