"""The hash chain (`broadcaster.log.chain`): the append-only `log_chain`, its one-row head,
the chained record of retention prunes, and the narrow path a prune takes: with a row in
`log_prune_permit` (inside the prune's transaction only), an expired text or payload may
be emptied (its row and sha256 stay: deliveries reference it) and a masked number
replaced by `pruned:<its sha256>`; an emptied body may be filled again (the same text sent
again later; `verify` checks it against its sha256); nothing else changes, nothing is
deleted.
A genesis link seals every row already in the log.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)

APPEND_ONLY = ("log_chain", "log_prunes")
PRUNABLE = {"messages": "text", "payloads": "body"}  # bodies a prune may empty
DELIVERY_COLUMNS = (  # every column of deliveries but recipient_display: never updated
    "id",
    "key",
    "campaign",
    "occurrence_id",
    "rule_id",
    "channel_id",
    "endpoint",
    "target_id",
    "recipient_hash",
    "kind",
    "template",
    "template_sha",
    "text_sha256",
    "scheduled_at",
    "target_path",
    "payload_sha256",
)
REFUSED = "'日志只能追加 delivery log is append-only:"


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "log_chain",
        sa.Column("seq", RowId, primary_key=True, autoincrement=False),
        sa.Column("at", When, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("short_hashes", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "log_chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", RowId, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("marks", sa.Text, nullable=False),
    )
    op.create_table(
        "log_prunes",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("at", When, nullable=False),
        sa.Column("cutoff", When, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("texts", sa.Integer, nullable=False),
        sa.Column("payloads", sa.Integer, nullable=False),
        sa.Column("displays", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "log_prune_permit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    )
    if pg:
        _postgres()
    else:
        _sqlite()
    from broadcaster.log.chain import seal_genesis

    seal_genesis(op.get_bind())


def _sqlite() -> None:
    for table in (*APPEND_ONLY, "log_chain_head"):
        for verb in ("UPDATE", "DELETE") if table != "log_chain_head" else ("DELETE",):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, {REFUSED} {verb} on {table} refused'); END"
            )
    op.execute(
        "CREATE TRIGGER log_chain_no_replace BEFORE INSERT ON log_chain"
        " WHEN EXISTS (SELECT 1 FROM log_chain WHERE seq = NEW.seq)"
        f" BEGIN SELECT RAISE(ABORT, {REFUSED} a row of log_chain cannot be replaced'); END"
    )
    op.execute(
        "CREATE TRIGGER log_prunes_no_replace BEFORE INSERT ON log_prunes"
        " WHEN EXISTS (SELECT 1 FROM log_prunes WHERE id = NEW.id)"
        f" BEGIN SELECT RAISE(ABORT, {REFUSED} a row of log_prunes cannot be replaced'); END"
    )
    for table, body in PRUNABLE.items():
        op.execute(f"DROP TRIGGER {table}_no_update")
        op.execute(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}"
            f" WHEN NEW.sha256 IS NOT OLD.sha256 OR (OLD.{body} <> '' AND"
            f" (NOT EXISTS (SELECT 1 FROM log_prune_permit) OR NEW.{body} <> ''))"
            f" BEGIN SELECT RAISE(ABORT, {REFUSED} UPDATE on {table} refused'); END"
        )
    op.execute("DROP TRIGGER deliveries_no_update")
    op.execute(
        f"CREATE TRIGGER deliveries_no_update BEFORE UPDATE OF {', '.join(DELIVERY_COLUMNS)}"
        f" ON deliveries BEGIN SELECT RAISE(ABORT, {REFUSED} UPDATE on deliveries refused'); END"
    )
    op.execute(
        "CREATE TRIGGER deliveries_prune_display BEFORE UPDATE OF recipient_display ON deliveries"
        " WHEN NOT EXISTS (SELECT 1 FROM log_prune_permit)"
        " OR NEW.recipient_display NOT LIKE 'pruned:%'"
        f" BEGIN SELECT RAISE(ABORT, {REFUSED} UPDATE on deliveries refused'); END"
    )


def _postgres() -> None:
    # a row-level UPDATE trigger: only the column named by the first argument changes, and
    # only under a prune's permit to a value LIKE the second ('' for bodies, 'pruned:%'),
    # or (with a third argument) from '' back to a body: a text used again after its prune
    op.execute(
        """
        CREATE FUNCTION delivery_log_prune_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_NARGS > 2 AND (to_jsonb(OLD) ->> TG_ARGV[0]) = ''
                AND (to_jsonb(NEW) - TG_ARGV[0]) = (to_jsonb(OLD) - TG_ARGV[0]) THEN
                RETURN NEW;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM log_prune_permit)
                OR NOT ((to_jsonb(NEW) ->> TG_ARGV[0]) LIKE TG_ARGV[1])
                OR (to_jsonb(NEW) - TG_ARGV[0]) IS DISTINCT FROM (to_jsonb(OLD) - TG_ARGV[0])
            THEN
                RAISE EXCEPTION USING MESSAGE = '日志只能追加 delivery log is append-only: '
                    || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE"
            f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
        )
    op.execute(
        "CREATE TRIGGER log_chain_head_append_only BEFORE DELETE OR TRUNCATE ON log_chain_head"
        " FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
    )
    for table, arguments in (
        ("messages", "'text', '', 'restore'"),
        ("payloads", "'body', '', 'restore'"),
        ("deliveries", "'recipient_display', 'pruned:%'"),
    ):
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE DELETE OR TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION delivery_log_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_prune_only BEFORE UPDATE ON {table} FOR EACH ROW"
            f" EXECUTE FUNCTION delivery_log_prune_only({arguments})"
        )


def downgrade() -> None:
    raise NotImplementedError("日志库不降级 the delivery log is never downgraded")
