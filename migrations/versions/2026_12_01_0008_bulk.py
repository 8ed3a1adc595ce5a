"""Bulk creation: one change notification per statement, and idempotency keys.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

- The change notification moves from a row trigger to statement triggers with transition tables: a
  statement that changes one code sends its id, as before; one that changes several (a bulk create
  of thousands) sends ``*`` once, and the redirect processes flush their caches once, instead of
  receiving one notification per row.
- ``idempotency_keys``: the answer to a bulk request under its ``Idempotency-Key`` for 24 hours. The
  row is inserted in the request's own transaction, so a second request with the key waits on the
  unique index until the first commits (and then answers what it answered), or rolls back (and then
  does the work itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENT_TRIGGERS = (
    # One function for the three: a DELETE's rows are in old_rows, the others' in new_rows (PL/pgSQL
    # plans only the branch it takes, so each trigger names only its own transition table).
    """
    CREATE FUNCTION qr_codes_notify_statement() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed bigint;
        only_id text;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            SELECT count(*), min(id) INTO changed, only_id FROM old_rows;
        ELSE
            SELECT count(*), min(id) INTO changed, only_id FROM new_rows;
        END IF;
        IF changed = 1 THEN
            PERFORM pg_notify('qr_changed', only_id);
        ELSIF changed > 1 THEN
            PERFORM pg_notify('qr_changed', '*');
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER qr_codes_notify_insert AFTER INSERT ON qr_codes
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION qr_codes_notify_statement()
    """,
    """
    CREATE TRIGGER qr_codes_notify_update AFTER UPDATE ON qr_codes
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION qr_codes_notify_statement()
    """,
    """
    CREATE TRIGGER qr_codes_notify_delete AFTER DELETE ON qr_codes
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION qr_codes_notify_statement()
    """,
)


def upgrade() -> None:
    # Created first, dropped after: no moment in which a write goes unannounced.
    for statement in STATEMENT_TRIGGERS:
        op.execute(statement)
    op.execute("DROP TRIGGER qr_codes_notify_row ON qr_codes")
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),  # SHA-256 of what was asked
        sa.Column("status", sa.SmallInteger(), nullable=True),  # null while the first is running
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_created_at"), "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.execute(
        """
        CREATE TRIGGER qr_codes_notify_row AFTER INSERT OR UPDATE OR DELETE ON qr_codes
            FOR EACH ROW EXECUTE FUNCTION qr_codes_notify_row()
        """
    )
    for name in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER qr_codes_notify_{name} ON qr_codes")
    op.execute("DROP FUNCTION qr_codes_notify_statement()")
