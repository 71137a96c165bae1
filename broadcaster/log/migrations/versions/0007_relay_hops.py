"""Relay hops and hand-offs: deliveries that are done only when someone confirms them in
time. Each hop of a push relayed down the hierarchy (按时派发及时转发) is a delivery of its
own; this append-only table says which delivery it depends on, its level (0: a hand-off
sent directly, no relay), when it is due and who confirms it. Whether it was done, and
when, is the delivery's own status.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

When = sa.DateTime(timezone=True)
TABLE = "relay_hops"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("key", sa.String, primary_key=True),  # deliveries.key of the hop
        sa.Column("campaign", sa.String, nullable=False),
        sa.Column("occurrence_id", sa.String, nullable=False),
        sa.Column("parent_key", sa.String, nullable=False),  # one level up ("" at level 0)
        sa.Column("level", sa.Integer, nullable=False),  # 1: the first level below the push
        sa.Column("level_tag", sa.String, nullable=False),
        sa.Column("due_at", When, nullable=False),
        sa.Column("person", sa.String, nullable=False),  # who confirms it ("" nobody: a bot)
        sa.Column("confirm", sa.Boolean, nullable=False),  # done when confirmed, not accepted
    )
    op.create_index("ix_relay_hops_campaign_due", TABLE, ["campaign", "due_at"])
    op.create_index("ix_relay_hops_parent", TABLE, ["parent_key"])
    if op.get_bind().dialect.name == "postgresql":  # the function was created by 0001
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
            f" ON {TABLE} FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE}"
            f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
            f" {verb} on {TABLE} refused'); END"
        )
    op.execute(  # REPLACE deletes without firing DELETE triggers
        f"CREATE TRIGGER {TABLE}_no_replace BEFORE INSERT ON {TABLE}"
        f" WHEN EXISTS (SELECT 1 FROM {TABLE} WHERE key = NEW.key)"
        f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
        f" a row of {TABLE} cannot be replaced'); END"
    )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
