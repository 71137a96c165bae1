"""Tables of the delivery log, as SQLAlchemy Core objects for queries.

The schema itself is created by the Alembic migrations in `migrations/versions/`;
these declarations mirror the head revision and are what the store queries
through. A test checks that the two agree.

Append-only (the database refuses UPDATE and DELETE, and on SQLite a REPLACE):
    messages          sha256 (PK), text                          one row per distinct text
    payloads          sha256 (PK), body                          params, parts, artefacts
    deliveries        id, key (UNIQUE), what/who/when            one row per planned delivery
    delivery_events   id (global order), delivery_id, status...  one row per status change
    occurrences       id, campaign, occurrence_id, status, ...   one row per occurrence record
    log_meta          name (PK), value                           the key id, written once
    relay_hops        key (PK), parent_key, level, due_at, person  hops, hand-offs (0007)

Kept by the writer beside them (derived, may be rebuilt from the events):
    delivery_state    one row per delivery: latest status, next check, the claim (lease)
    leases            one row per leadership lease (one scheduler per campaign)
    feed_cursors      where each provider outcome feed resumes
    rate_slots, rate_blocks, rate_limits
                      per-endpoint send slots, provider blocks and limits shared by workers

Phone numbers are never stored: only `recipient_display` (masked) and
`recipient_hash` (HMAC-SHA256 with the log's key).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from broadcaster.errors import LogStoreError

__all__ = [
    "APPEND_ONLY",
    "CONSOLE_APPEND_ONLY",
    "LED_APPEND_ONLY",
    "approvals",
    "console_actions",
    "console_logins",
    "console_users",
    "deliveries",
    "delivery_events",
    "delivery_state",
    "feed_cursors",
    "leases",
    "led_fetches",
    "led_seen",
    "link_uses",
    "log_chain",
    "log_chain_head",
    "log_meta",
    "log_prune_permit",
    "log_prunes",
    "messages",
    "metadata",
    "occurrences",
    "payloads",
    "rate_blocks",
    "rate_limits",
    "rate_slots",
    "relay_hops",
]

APPEND_ONLY = (
    "messages",
    "payloads",
    "deliveries",
    "delivery_events",
    "occurrences",
    "log_meta",
    "relay_hops",
    "log_chain",
    "log_prunes",
    "approvals",  # migration 0011
)


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
            raise LogStoreError(f"需要带时区的时间 an aware datetime is required, got {value!r}")
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

payloads = sa.Table(
    "payloads",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
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
    sa.Column("target_path", sa.Text, nullable=False, server_default=""),
    sa.Column("payload_sha256", sa.String(64)),  # payloads.sha256, when there is one
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
    sa.Column("step", sa.Integer, nullable=False, server_default="0"),
    sa.Column("detail", sa.Text),
    sa.Column("actor", sa.String),
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
    sa.Column("campaign", sa.String, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

log_meta = sa.Table(
    "log_meta",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

delivery_state = sa.Table(
    "delivery_state",
    metadata,
    sa.Column("delivery_id", RowId, sa.ForeignKey("deliveries.id"), primary_key=True),
    sa.Column("campaign", sa.String, nullable=False),
    sa.Column("channel_id", sa.String, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("next_check", UTCDateTime),
    sa.Column("error_class", sa.String(16)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("provider_id", sa.String),
    sa.Column("recipient_hash", sa.String(64), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("resends", sa.Integer, nullable=False, server_default="0"),
    sa.Column("parts_done", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String),
    sa.Column("lease_until", UTCDateTime),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),
    sa.Column("info", sa.Text, nullable=False),
)

feed_cursors = sa.Table(
    "feed_cursors",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("cursor", sa.Text),
    sa.Column("at", UTCDateTime, nullable=False),
)

rate_slots = sa.Table(
    "rate_slots",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("endpoint", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)

rate_blocks = sa.Table(
    "rate_blocks",
    metadata,
    sa.Column("endpoint", sa.String, primary_key=True),
    sa.Column("until", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("endpoint", sa.String, primary_key=True),
    sa.Column("count", sa.Integer, primary_key=True),
    sa.Column("per_seconds", sa.Float, primary_key=True),
)

sa.Index("ix_rate_slots_endpoint_at", rate_slots.c.endpoint, rate_slots.c.at)
sa.Index("ix_deliveries_recipient_hash", deliveries.c.recipient_hash)
sa.Index("ix_deliveries_scheduled_at", deliveries.c.scheduled_at)
sa.Index("ix_deliveries_occurrence_channel", deliveries.c.occurrence_id, deliveries.c.channel_id)
sa.Index("ix_deliveries_target_id", deliveries.c.target_id)
sa.Index("ix_deliveries_channel_id", deliveries.c.channel_id)
sa.Index("ix_delivery_events_delivery_id_id", delivery_events.c.delivery_id, delivery_events.c.id)
sa.Index(
    "ix_occurrences_campaign_occurrence_id_id",
    occurrences.c.campaign,
    occurrences.c.occurrence_id,
    occurrences.c.id,
)
sa.Index("ix_occurrences_campaign_scheduled_at", occurrences.c.campaign, occurrences.c.scheduled_at)
sa.Index(
    "uq_occurrences_fired",
    occurrences.c.campaign,
    occurrences.c.occurrence_id,
    unique=True,
    sqlite_where=occurrences.c.status == "fired",
    postgresql_where=occurrences.c.status == "fired",
)
sa.Index(
    "ix_delivery_state_due",
    delivery_state.c.campaign,
    delivery_state.c.next_check,
    sqlite_where=delivery_state.c.next_check.is_not(None),
    postgresql_where=delivery_state.c.next_check.is_not(None),
)
sa.Index("ix_delivery_state_status", delivery_state.c.campaign, delivery_state.c.status)
sa.Index(
    "ix_delivery_state_provider",
    delivery_state.c.provider_id,
    delivery_state.c.recipient_hash,
    sqlite_where=delivery_state.c.provider_id.is_not(None),
    postgresql_where=delivery_state.c.provider_id.is_not(None),
)
sa.Index(
    "ix_delivery_state_lease_owner",
    delivery_state.c.lease_owner,
    sqlite_where=delivery_state.c.lease_owner.is_not(None),
    postgresql_where=delivery_state.c.lease_owner.is_not(None),
)

# --- the web console (migration 0003) ------------------------------------------------------------
#   console_users     name (PK), role, argon2 hash                 accounts; changed in place
#   console_actions   id, at, actor, role, action, subject, detail  append-only: who did what, when
#   console_logins    id, at, name, remote, ok                      append-only: login attempts
#   link_uses         jti (PK), purpose, subject, used_at           single-use links, once used

CONSOLE_APPEND_ONLY = ("console_actions", "console_logins", "link_uses")

console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("changed_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime),
)

console_actions = sa.Table(
    "console_actions",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("subject", sa.Text, nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("remote", sa.String(64), nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

console_logins = sa.Table(
    "console_logins",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("remote", sa.String(64), nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sqlite_autoincrement=True,
)

link_uses = sa.Table(
    "link_uses",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=False),
)

sa.Index("ix_console_actions_at", console_actions.c.at)
sa.Index("ix_console_actions_actor_at", console_actions.c.actor, console_actions.c.at)
sa.Index("ix_console_logins_name_at", console_logins.c.name, console_logins.c.at)
sa.Index("ix_console_logins_remote_at", console_logins.c.remote, console_logins.c.at)
sa.Index("ix_delivery_state_status_since", delivery_state.c.status, delivery_state.c.since)
sa.Index(
    "ix_deliveries_occurrence_scheduled",
    deliveries.c.occurrence_id,
    deliveries.c.scheduled_at,
    deliveries.c.id,
)
sa.Index(
    "ix_deliveries_target_scheduled",
    deliveries.c.target_id,
    deliveries.c.scheduled_at,
    deliveries.c.id,
)

# --- relay hops (migration 0007) ------------------------------------------------------------------
#   relay_hops        key (PK) = deliveries.key, the delivery one level up, level (0: a hand-off
#                     sent directly), due time, who confirms it, whether it needs confirming

relay_hops = sa.Table(
    "relay_hops",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("campaign", sa.String, nullable=False),
    sa.Column("occurrence_id", sa.String, nullable=False),
    sa.Column("parent_key", sa.String, nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("level_tag", sa.String, nullable=False),
    sa.Column("due_at", UTCDateTime, nullable=False),
    sa.Column("person", sa.String, nullable=False),
    sa.Column("confirm", sa.Boolean, nullable=False),
)
sa.Index("ix_relay_hops_campaign_due", relay_hops.c.campaign, relay_hops.c.due_at)
sa.Index("ix_relay_hops_parent", relay_hops.c.parent_key)
# --- LED screens (migration 0008) ----------------------------------------------------------------
#   led_fetches   id, campaign, screen, version, at, via, items    append-only: each new version a
#                                                                  screen fetched or a bridge pushed
#   led_seen      (campaign, screen) PK, at, version               when each screen last fetched

LED_APPEND_ONLY = ("led_fetches",)

led_fetches = sa.Table(
    "led_fetches",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("campaign", sa.String, nullable=False),
    sa.Column("screen_id", sa.String, nullable=False),
    sa.Column("channel_id", sa.String, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("via", sa.String(64), nullable=False),
    sa.Column("remote", sa.String(64), nullable=False, server_default=""),
    sa.Column("items", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

led_seen = sa.Table(
    "led_seen",
    metadata,
    sa.Column("campaign", sa.String, primary_key=True),
    sa.Column("screen_id", sa.String, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("remote", sa.String(64), nullable=False, server_default=""),
)

sa.Index(
    "ix_led_fetches_screen_at", led_fetches.c.campaign, led_fetches.c.screen_id, led_fetches.c.at
)
sa.Index("ix_led_fetches_at", led_fetches.c.campaign, led_fetches.c.at)

# --- the hash chain and retention (migration 0010, see `chain.py`) -------------------------------
#   log_chain         seq (PK), prev_hash, hash, body, short hashes    append-only: one link a commit
#   log_chain_head    one row: the last link, its record count, the last id covered per table
#   log_prunes        id, at, cutoff, actor, counts                   append-only, chained
#   log_prune_permit  empty but while a prune runs: what lets a prune drop expired bodies and
#                     masked numbers (the triggers refuse it otherwise)

log_chain = sa.Table(
    "log_chain",
    metadata,
    sa.Column("seq", RowId, primary_key=True, autoincrement=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("short_hashes", sa.LargeBinary, nullable=False),
)

log_chain_head = sa.Table(
    "log_chain_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", RowId, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("marks", sa.Text, nullable=False),
)

log_prunes = sa.Table(
    "log_prunes",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("cutoff", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("texts", sa.Integer, nullable=False),
    sa.Column("payloads", sa.Integer, nullable=False),
    sa.Column("displays", sa.Integer, nullable=False),
    sqlite_autoincrement=True,
)

log_prune_permit = sa.Table(
    "log_prune_permit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
)

# --- reports and content approval (migration 0011) ----------------------------------------------
#   approvals   id, template, template_sha, file, state, by, at, note   append-only: who approved
#               which template version, when; state "approved" or "urgent" (sent before
#               approval under the config's urgent switch, to be approved after the fact)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("template", sa.String, nullable=False),
    sa.Column("template_sha", sa.String(64), nullable=False),
    sa.Column("file", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("by", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

sa.Index("ix_approvals_template_sha", approvals.c.template_sha, approvals.c.template)
sa.Index(
    "ix_deliveries_recipient_scheduled",
    deliveries.c.recipient_hash,
    deliveries.c.scheduled_at,
    deliveries.c.id,
)
