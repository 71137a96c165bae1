"""The web console: accounts, an append-only record of what people did and of login
attempts, used signed links; indexes for the console's and the metrics' reads (pages of
one send or one target, newest first; deliveries that reached a status lately).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

APPEND_ONLY = ("console_actions", "console_logins", "link_uses")


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("changed_at", When, nullable=False),
        sa.Column("disabled_at", When),
    )
    op.create_table(
        "console_actions",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("at", When, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("remote", sa.String(64), nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_console_actions_at", "console_actions", ["at"])
    op.create_index("ix_console_actions_actor_at", "console_actions", ["actor", "at"])
    op.create_table(
        "console_logins",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("at", When, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("remote", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_console_logins_name_at", "console_logins", ["name", "at"])
    op.create_index("ix_console_logins_remote_at", "console_logins", ["remote", "at"])
    op.create_table(
        "link_uses",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("used_at", When, nullable=False),
    )
    # receipt lag and recent errors: deliveries that reached a status lately
    op.create_index("ix_delivery_state_status_since", "delivery_state", ["status", "since"])
    # the console's pages of one send, or of one target, newest first
    op.create_index(
        "ix_deliveries_occurrence_scheduled", "deliveries", ["occurrence_id", "scheduled_at", "id"]
    )
    op.create_index(
        "ix_deliveries_target_scheduled", "deliveries", ["target_id", "scheduled_at", "id"]
    )
    _append_only(op.get_bind().dialect.name == "postgresql")


def _append_only(pg: bool) -> None:
    for table in APPEND_ONLY:
        if pg:  # the function was created by 0001
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
                f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
            )
            continue
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
                f" {verb} on {table} refused'); END"
            )
        if table != "link_uses":  # REPLACE deletes without firing DELETE triggers
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}"
                f" WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id)"
                f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
                f" a row of {table} cannot be replaced'); END"
            )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
