"""Console accounts: roles, argon2 password hashes, login throttling.

Roles (a person has one):

    viewer    看 sees every page but the lookup; exports the log as CSV
    operator  操作员 a viewer who may also send now (and, later, approve)
    auditor   审计 a viewer who may also look people up (一案三查)

Passwords are hashed with argon2id (argon2-cffi's defaults); a hash made with older
parameters is upgraded at the next login. Failed logins are counted per name and per
address in the log's database, so a restart does not reset them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broadcaster.web.errors import AccountError
from broadcaster.web.store import ConsoleStore, UserRow

__all__ = [
    "MIN_PASSWORD",
    "Accounts",
    "LoginThrottle",
    "Permission",
    "Role",
    "User",
]

MIN_PASSWORD = 10  # characters
NAME = re.compile(r"[A-Za-z0-9_.\-\u4e00-\u9fff]{1,64}")


class Permission(StrEnum):
    """What a page or an action needs."""

    VIEW = "view"  # every console page
    SEND = "send"  # send now
    APPROVE = "approve"  # approve content (audit issue)
    LOOKUP = "lookup"  # 一案三查: look a number, person or group up


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    AUDITOR = "auditor"

    @property
    def label(self) -> str:
        return _ROLE_LABELS[self]

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.SEND, Permission.APPROVE}),
    Role.AUDITOR: frozenset({Permission.VIEW, Permission.LOOKUP}),
}
_ROLE_LABELS = {
    Role.VIEWER: "查看 viewer",
    Role.OPERATOR: "操作员 operator",
    Role.AUDITOR: "审计 auditor",
}


@dataclass(frozen=True)
class User:
    """A signed-in person."""

    name: str
    role: Role
    version: str  # changes with the password, the role or disabling: old sessions end

    def can(self, permission: Permission) -> bool:
        return permission in self.role.permissions


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise AccountError(
            f"用户名无效 invalid user name {name[:70]!r}: 1-64 letters, digits, Chinese"
            " characters, '.', '_' or '-'"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"密码太短 the password must have at least {MIN_PASSWORD} characters")
    if password.strip() != password or "\n" in password:
        raise AccountError(
            "密码不能以空白开头或结尾 the password must not start or end with blanks"
        )
    return password


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise AccountError(f"未知角色 unknown role {text!r}: expected one of {roles}") from None


class Accounts:
    """Console accounts in the log's database."""

    def __init__(self, store: ConsoleStore, secret: bytes):
        self.store = store
        self._secret = secret
        self.hasher = PasswordHasher()
        self._dummy = self.hasher.hash("not a real password, only spends the same time")

    def version(self, row: UserRow) -> str:
        blob = f"{row.password_hash}|{row.role}|{row.disabled_at}".encode()
        return hmac.new(self._secret, blob, hashlib.sha256).hexdigest()[:16]

    def add(self, name: str, role: Role | str, password: str) -> None:
        check_name(name)
        role = parse_role(str(role))
        check_password(password)
        if not self.store.insert_user(name, role.value, self.hasher.hash(password)):
            raise AccountError(f"用户已存在 user {name!r} already exists")

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        if not self.store.update_user(name, password_hash=self.hasher.hash(password)):
            raise AccountError(f"没有此用户 no user {name!r}")

    def set_role(self, name: str, role: Role | str) -> None:
        role = parse_role(str(role))
        if not self.store.update_user(name, role=role.value):
            raise AccountError(f"没有此用户 no user {name!r}")

    def disable(self, name: str) -> None:
        row = self.store.user(name)
        if row is None:
            raise AccountError(f"没有此用户 no user {name!r}")
        self.store.update_user(name, disabled_at=self.store.clock.now())

    def enable(self, name: str) -> None:
        if not self.store.update_user(name, disabled_at=None):
            raise AccountError(f"没有此用户 no user {name!r}")

    def current(self, name: str, version: str) -> User | None:
        """The account behind a session, if it still exists, is enabled and unchanged."""
        row = self.store.user(name)
        if row is None or row.disabled_at is not None:
            return None
        if not hmac.compare_digest(self.version(row), version):
            return None
        try:
            return User(row.name, Role(row.role), self.version(row))
        except ValueError:
            return None

    def verify(self, name: str, password: str) -> User | None:
        """The account when name and password match and it is enabled; None otherwise.

        An unknown name costs the same time as a wrong password.
        """
        row = self.store.user(name) if NAME.fullmatch(name) else None
        if row is None:
            with contextlib.suppress(VerificationError):
                self.hasher.verify(self._dummy, password + "x")
            return None
        try:
            self.hasher.verify(row.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row.disabled_at is not None:
            return None
        if self.hasher.check_needs_rehash(row.password_hash):
            self.store.update_user(name, password_hash=self.hasher.hash(password))
            row = self.store.user(name) or row
        return User(row.name, Role(row.role), self.version(row))


class LoginThrottle:
    """At most `per_name` failed logins per name and `per_remote` per address in `window`;
    beyond that, logins are refused until the oldest failure leaves the window."""

    def __init__(
        self,
        store: ConsoleStore,
        *,
        per_name: int = 5,
        per_remote: int = 20,
        window: dt.timedelta = dt.timedelta(minutes=15),
    ):
        self.store = store
        self.per_name = per_name
        self.per_remote = per_remote
        self.window = window

    def wait(self, name: str, remote: str) -> float | None:
        """Seconds until a login for `name` from `remote` may be tried again; None: now."""
        now = self.store.clock.now()
        since = now - self.window
        longest: float | None = None
        for failed, limit in (
            (self.store.failures_since(since=since, name=name), self.per_name),
            (self.store.failures_since(since=since, remote=remote), self.per_remote),
        ):
            if len(failed) >= limit:
                free = failed[-limit] + self.window
                seconds = max(1.0, (free - now).total_seconds())
                longest = seconds if longest is None else max(longest, seconds)
        return longest

    def record(self, name: str, remote: str, ok: bool) -> None:
        self.store.record_login(name, remote, ok)
