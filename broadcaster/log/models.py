"""Tables of the delivery log, as SQLAlchemy Core objects for queries.

The schema itself is created by the Alembic migrations in `migrations/versions/`;
these declarations mirror the head revision and are what `store.py` queries
through. A test checks that the two agree.

    messages          sha256 (PK), text                          one row per distinct text
    deliveries        id, key (UNIQUE), what/who/when            one row per planned delivery
    delivery_events   id (global order), delivery_id, status...  one row per status change
    occurrences       id, occurrence_id, status, reason, at      one row per occurrence record

Every table is append-only (triggers refuse UPDATE and DELETE). Phone numbers are
never stored: only `recipient_display` (masked) and `recipient_hash` (HMAC-SHA256).
Each row holds every field of its record (`DeliveryRecord` minus the text, which is
in `messages`; `Event` with its key reached through `delivery_id`), so a later
migration can hash-chain `canonical()` of each record in row-id order without
rewriting a row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = ["deliveries", "delivery_events", "messages", "metadata", "occurrences"]


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """An aware datetime stored in UTC; read back aware, in UTC.

    PostgreSQL stores `timestamptz`; SQLite stores fixed-width UTC text
    ("2026-03-02 01:00:00.000000"), which sorts and compares correctly.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError(f"需要带时区的时间 an aware datetime is required, got {value!r}")
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stored: dt.datetime = value
        if stored.tzinfo is None:
            return stored.replace(tzinfo=dt.UTC)
        return stored.astimezone(dt.UTC)


# BIGINT on PostgreSQL; INTEGER on SQLite, where only "INTEGER PRIMARY KEY" is the rowid.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
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
    sa.Column("scheduled_at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

delivery_events = sa.Table(
    "delivery_events",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", RowId, sa.ForeignKey("deliveries.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("error_class", sa.String(16)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("provider_id", sa.String),
    sa.Column("attempt", sa.Integer, nullable=False),
    sqlite_autoincrement=True,
)

occurrences = sa.Table(
    "occurrences",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("occurrence_id", sa.String, nullable=False),
    sa.Column("rule_id", sa.String, nullable=False),
    sa.Column("scheduled_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sqlite_autoincrement=True,
)

sa.Index("ix_deliveries_recipient_hash", deliveries.c.recipient_hash)
sa.Index("ix_deliveries_scheduled_at", deliveries.c.scheduled_at)
sa.Index("ix_deliveries_occurrence_channel", deliveries.c.occurrence_id, deliveries.c.channel_id)
sa.Index("ix_deliveries_target_id", deliveries.c.target_id)
sa.Index("ix_deliveries_channel_id", deliveries.c.channel_id)
sa.Index("ix_delivery_events_delivery_id_id", delivery_events.c.delivery_id, delivery_events.c.id)
sa.Index("ix_occurrences_occurrence_id_id", occurrences.c.occurrence_id, occurrences.c.id)
sa.Index("ix_occurrences_scheduled_at", occurrences.c.scheduled_at)
sa.Index(
    "uq_occurrences_fired",
    occurrences.c.occurrence_id,
    unique=True,
    sqlite_where=occurrences.c.status == "fired",
    postgresql_where=occurrences.c.status == "fired",
)
