"""Log v2: campaign-scoped occurrences, a current-state projection with claims, leases,
payloads, feed cursors, the key id; REPLACE refused on SQLite.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

OLD_TABLES = ("messages", "deliveries", "delivery_events", "occurrences")
NEW_APPEND_ONLY = ("payloads", "log_meta")

# What makes a row already there, per append-only table: a REPLACE naming it is refused.
SQLITE_EXISTING = {
    "messages": "SELECT 1 FROM messages WHERE sha256 = NEW.sha256",
    "payloads": "SELECT 1 FROM payloads WHERE sha256 = NEW.sha256",
    "log_meta": "SELECT 1 FROM log_meta WHERE name = NEW.name",
    "deliveries": "SELECT 1 FROM deliveries WHERE id = NEW.id OR key = NEW.key",
    "delivery_events": "SELECT 1 FROM delivery_events WHERE id = NEW.id",
    "occurrences": (
        "SELECT 1 FROM occurrences WHERE id = NEW.id OR (NEW.status = 'fired'"
        " AND status = 'fired' AND campaign = NEW.campaign"
        " AND occurrence_id = NEW.occurrence_id)"
    ),
}


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    _columns()
    _backfill_campaign(pg)
    _tables()
    _backfill_state()
    _append_only(pg)


def _columns() -> None:
    op.add_column(
        "occurrences", sa.Column("campaign", sa.String, nullable=False, server_default="")
    )
    op.add_column(
        "deliveries", sa.Column("target_path", sa.Text, nullable=False, server_default="")
    )
    op.add_column("deliveries", sa.Column("payload_sha256", sa.String(64)))
    op.add_column(
        "delivery_events", sa.Column("step", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("delivery_events", sa.Column("detail", sa.Text))
    op.add_column("delivery_events", sa.Column("actor", sa.String))


def _backfill_campaign(pg: bool) -> None:
    """v1 occurrences had no campaign: take it from their deliveries, or the only one."""
    fill = (
        "UPDATE occurrences SET campaign = COALESCE("
        " (SELECT d.campaign FROM deliveries d WHERE d.occurrence_id = occurrences.occurrence_id"
        "  LIMIT 1),"
        " (SELECT CASE WHEN count(DISTINCT campaign) = 1 THEN min(campaign) END FROM deliveries),"
        " '')"
    )
    if pg:
        op.execute("ALTER TABLE occurrences DISABLE TRIGGER occurrences_append_only")
        op.execute(fill)
        op.execute("ALTER TABLE occurrences ENABLE TRIGGER occurrences_append_only")
    else:
        op.execute("DROP TRIGGER occurrences_no_update")
        op.execute(fill)
        op.execute(
            "CREATE TRIGGER occurrences_no_update BEFORE UPDATE ON occurrences"
            " BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
            " UPDATE on occurrences refused'); END"
        )
    fired = sa.text("status = 'fired'")
    op.drop_index("uq_occurrences_fired", table_name="occurrences")
    op.create_index(
        "uq_occurrences_fired",
        "occurrences",
        ["campaign", "occurrence_id"],
        unique=True,
        sqlite_where=fired,
        postgresql_where=fired,
    )
    op.drop_index("ix_occurrences_occurrence_id_id", table_name="occurrences")
    op.drop_index("ix_occurrences_scheduled_at", table_name="occurrences")
    op.create_index(
        "ix_occurrences_campaign_occurrence_id_id",
        "occurrences",
        ["campaign", "occurrence_id", "id"],
    )
    op.create_index(
        "ix_occurrences_campaign_scheduled_at", "occurrences", ["campaign", "scheduled_at"]
    )


def _tables() -> None:
    op.create_table(
        "payloads",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "log_meta",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "delivery_state",
        sa.Column("delivery_id", RowId, sa.ForeignKey("deliveries.id"), primary_key=True),
        sa.Column("campaign", sa.String, nullable=False),
        sa.Column("channel_id", sa.String, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since", When, nullable=False),
        sa.Column("next_check", When),
        sa.Column("error_class", sa.String(16)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("provider_id", sa.String),
        sa.Column("recipient_hash", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("resends", sa.Integer, nullable=False, server_default="0"),
        sa.Column("parts_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String),
        sa.Column("lease_until", When),
    )
    due = sa.text("next_check IS NOT NULL")
    op.create_index(
        "ix_delivery_state_due",
        "delivery_state",
        ["campaign", "next_check"],
        sqlite_where=due,
        postgresql_where=due,
    )
    op.create_index("ix_delivery_state_status", "delivery_state", ["campaign", "status"])
    has_id = sa.text("provider_id IS NOT NULL")
    op.create_index(
        "ix_delivery_state_provider",
        "delivery_state",
        ["provider_id", "recipient_hash"],
        sqlite_where=has_id,
        postgresql_where=has_id,
    )
    leased = sa.text("lease_owner IS NOT NULL")
    op.create_index(
        "ix_delivery_state_lease_owner",
        "delivery_state",
        ["lease_owner"],
        sqlite_where=leased,
        postgresql_where=leased,
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("until", When, nullable=False),
        sa.Column("info", sa.Text, nullable=False),
    )
    op.create_table(
        "feed_cursors",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("cursor", sa.Text),
        sa.Column("at", When, nullable=False),
    )


def _backfill_state() -> None:
    """The projection of every v1 delivery: its latest event; unfinished ones due at once."""
    op.execute(
        """
        INSERT INTO delivery_state (delivery_id, campaign, channel_id, status, since, next_check,
            error_class, reason, provider_id, recipient_hash, attempts, resends, parts_done)
        SELECT d.id, d.campaign, d.channel_id,
            CASE WHEN e.status = 'planned' AND e.error_class = 'quiet' THEN 'deferred'
                 ELSE e.status END,
            e.at,
            CASE WHEN e.status IN ('planned', 'sending', 'interrupted', 'unknown', 'accepted')
                 THEN e.at END,
            e.error_class, e.reason,
            (SELECT p.provider_id FROM delivery_events p
              WHERE p.delivery_id = d.id AND p.provider_id IS NOT NULL
              ORDER BY p.id DESC LIMIT 1),
            d.recipient_hash,
            (SELECT count(*) FROM delivery_events s
              WHERE s.delivery_id = d.id AND s.status = 'sending'),
            0, 0
        FROM deliveries d
        JOIN delivery_events e ON e.id = (
            SELECT max(m.id) FROM delivery_events m WHERE m.delivery_id = d.id)
        """
    )


def _append_only(pg: bool) -> None:
    if pg:
        for table in NEW_APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
                f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
            )
        return
    for table in NEW_APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
                f" {verb} on {table} refused'); END"
            )
    # REPLACE deletes the row it conflicts with without firing DELETE triggers: refuse any
    # insert that names a row already there (our own writes never do).
    for table, existing in SQLITE_EXISTING.items():
        op.execute(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}"
            f" WHEN EXISTS ({existing})"
            f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
            f" a row of {table} cannot be replaced'); END"
        )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
