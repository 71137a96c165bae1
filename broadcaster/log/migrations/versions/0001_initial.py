"""The delivery log: messages, deliveries, delivery events, occurrences; append-only.

Revision ID: 0001
Revises:
Create Date: 2026-03-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("messages", "deliveries", "delivery_events", "occurrences")

# Frozen copies of the column types: a migration never imports the current models.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String, nullable=False, unique=True),
        sa.Column("campaign", sa.String, nullable=False),
        sa.Column("occurrence_id", sa.String, nullable=False),
        sa.Column("rule_id", sa.String, nullable=False),
        sa.Column("channel_id", sa.String, nullable=False),
        sa.Column("endpoint", sa.String, nullable=False),
        sa.Column("target_id", sa.String, nullable=False),
        sa.Column("recipient_display", sa.String, nullable=False),
        sa.Column("recipient_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("template", sa.String, nullable=False),
        sa.Column("template_sha", sa.String, nullable=False),
        sa.Column("text_sha256", sa.String(64), sa.ForeignKey("messages.sha256"), nullable=False),
        sa.Column("scheduled_at", When, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "delivery_events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", RowId, sa.ForeignKey("deliveries.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("error_class", sa.String(16)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("provider_id", sa.String),
        sa.Column("attempt", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "occurrences",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("occurrence_id", sa.String, nullable=False),
        sa.Column("rule_id", sa.String, nullable=False),
        sa.Column("scheduled_at", When, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", When, nullable=False),
        sqlite_autoincrement=True,
    )
    # 一案三查: "was this person reached" by keyed hash, over millions of rows.
    op.create_index("ix_deliveries_recipient_hash", "deliveries", ["recipient_hash"])
    op.create_index("ix_deliveries_scheduled_at", "deliveries", ["scheduled_at"])
    op.create_index(
        "ix_deliveries_occurrence_channel", "deliveries", ["occurrence_id", "channel_id"]
    )
    op.create_index("ix_deliveries_target_id", "deliveries", ["target_id"])
    op.create_index("ix_deliveries_channel_id", "deliveries", ["channel_id"])
    # Latest event of a delivery = max(id) for its delivery_id: one index probe.
    op.create_index("ix_delivery_events_delivery_id_id", "delivery_events", ["delivery_id", "id"])
    op.create_index("ix_occurrences_occurrence_id_id", "occurrences", ["occurrence_id", "id"])
    op.create_index("ix_occurrences_scheduled_at", "occurrences", ["scheduled_at"])
    # An occurrence is fired at most once, even by two processes racing on PostgreSQL.
    fired = sa.text("status = 'fired'")
    op.create_index(
        "uq_occurrences_fired",
        "occurrences",
        ["occurrence_id"],
        unique=True,
        sqlite_where=fired,
        postgresql_where=fired,
    )
    _append_only()


def _append_only() -> None:
    """Make the database itself refuse UPDATE, DELETE (and TRUNCATE) on every log table."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION delivery_log_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION USING MESSAGE = '日志只能追加 delivery log is append-only: '
                    || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
            END
            $$
            """
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
                f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
            )
    else:
        for table in TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                    f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
                    f" {verb} on {table} refused'); END"
                )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
