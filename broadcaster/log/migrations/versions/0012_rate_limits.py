"""Rate-limit windows shared by several processes (`broadcaster worker`): the send slots
each endpoint has given out, and the blocks a provider set on an endpoint.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rate_slots",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String, nullable=False),
        sa.Column("at", When, nullable=False),
    )
    op.create_index("ix_rate_slots_endpoint_at", "rate_slots", ["endpoint", "at"])
    op.create_table(
        "rate_blocks",
        sa.Column("endpoint", sa.String, primary_key=True),
        sa.Column("until", When, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "rate_limits",
        sa.Column("endpoint", sa.String, primary_key=True),
        sa.Column("count", sa.Integer, primary_key=True),
        sa.Column("per_seconds", sa.Float, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("rate_blocks")
    op.drop_index("ix_rate_slots_endpoint_at", "rate_slots")
    op.drop_table("rate_slots")
