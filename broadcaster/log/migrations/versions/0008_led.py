"""LED screens: every playlist version a screen fetched (or a bridge pushed), append-only,
with the items it carried; and when each screen was last seen (changed in place).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "led_fetches",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("campaign", sa.String, nullable=False),
        sa.Column("screen_id", sa.String, nullable=False),
        sa.Column("channel_id", sa.String, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("via", sa.String(64), nullable=False),  # fetch, or bridge:<name>
        sa.Column("remote", sa.String(64), nullable=False, server_default=""),
        sa.Column("items", sa.Text, nullable=False),  # JSON: the playlist's entries
        sqlite_autoincrement=True,
    )
    op.create_index("ix_led_fetches_screen_at", "led_fetches", ["campaign", "screen_id", "at"])
    op.create_index("ix_led_fetches_at", "led_fetches", ["campaign", "at"])
    op.create_table(
        "led_seen",
        sa.Column("campaign", sa.String, primary_key=True),
        sa.Column("screen_id", sa.String, primary_key=True),
        sa.Column("at", When, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("remote", sa.String(64), nullable=False, server_default=""),
    )
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:  # the function was created by 0001
        op.execute(
            "CREATE TRIGGER led_fetches_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
            " ON led_fetches FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER led_fetches_no_{verb.lower()} BEFORE {verb} ON led_fetches"
            f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
            f" {verb} on led_fetches refused'); END"
        )
    op.execute(
        "CREATE TRIGGER led_fetches_no_replace BEFORE INSERT ON led_fetches"
        " WHEN EXISTS (SELECT 1 FROM led_fetches WHERE id = NEW.id)"
        " BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
        " a row of led_fetches cannot be replaced'); END"
    )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
