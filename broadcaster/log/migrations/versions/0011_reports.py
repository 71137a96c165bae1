"""Reports and content approval: the per-person lookup reads one index range (a person's
deliveries, newest first), and an append-only table of template-version approvals.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    # 一案三查: one person's deliveries, by time, without a sort or a scan
    op.create_index(
        "ix_deliveries_recipient_scheduled",
        "deliveries",
        ["recipient_hash", "scheduled_at", "id"],
    )
    op.create_table(
        "approvals",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("template", sa.String, nullable=False),
        sa.Column("template_sha", sa.String(64), nullable=False),
        sa.Column("file", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_approvals_template_sha", "approvals", ["template_sha", "template"])
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:  # the function was created by 0001
        op.execute(
            "CREATE TRIGGER approvals_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
            " ON approvals FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER approvals_no_{verb.lower()} BEFORE {verb} ON approvals"
            f" BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
            f" {verb} on approvals refused'); END"
        )
    op.execute(
        "CREATE TRIGGER approvals_no_replace BEFORE INSERT ON approvals"
        " WHEN EXISTS (SELECT 1 FROM approvals WHERE id = NEW.id)"
        " BEGIN SELECT RAISE(ABORT, '日志只能追加 delivery log is append-only:"
        " a row of approvals cannot be replaced'); END"
    )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
