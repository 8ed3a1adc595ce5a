"""Schema v1: QR codes, scans, and the change notification.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every writer of qr_codes (the management service, a restore, psql) tells the redirect processes
# which id changed, inside its own transaction: PostgreSQL delivers a NOTIFY only at commit.
NOTIFY_STATEMENTS = (
    """
    CREATE FUNCTION qr_codes_notify_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('qr_changed', COALESCE(NEW.id, OLD.id));
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION qr_codes_notify_all() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('qr_changed', '*');
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER qr_codes_notify_row AFTER INSERT OR UPDATE OR DELETE ON qr_codes
        FOR EACH ROW EXECUTE FUNCTION qr_codes_notify_row()
    """,
    """
    CREATE TRIGGER qr_codes_notify_all AFTER TRUNCATE ON qr_codes
        FOR EACH STATEMENT EXECUTE FUNCTION qr_codes_notify_all()
    """,
)


def upgrade() -> None:
    op.create_table(
        "qr_codes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("short_url", sa.Text(), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column(
            "tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("redirect_status", sa.SmallInteger(), server_default=sa.text("302"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("id ~ '^[A-Za-z0-9_-]{3,64}$'", name=op.f("ck_qr_codes_id_format")),
        sa.CheckConstraint(
            "redirect_status IN (301, 302, 307, 308)", name=op.f("ck_qr_codes_redirect_status")
        ),
        sa.CheckConstraint("char_length(target_url) <= 2048", name=op.f("ck_qr_codes_target_url_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qr_codes")),
    )
    op.create_index(op.f("ix_qr_codes_created_at_id"), "qr_codes", ["created_at", "id"])
    op.create_table(
        "scans",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("visitor_hash", sa.LargeBinary(), nullable=True),
        sa.Column("is_bot", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("bot_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["code_id"], ["qr_codes.id"], name=op.f("fk_scans_code_id_qr_codes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    op.create_index(op.f("ix_scans_code_id_scanned_at"), "scans", ["code_id", "scanned_at"])
    for statement in NOTIFY_STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER qr_codes_notify_all ON qr_codes")
    op.execute("DROP TRIGGER qr_codes_notify_row ON qr_codes")
    op.execute("DROP FUNCTION qr_codes_notify_all()")
    op.execute("DROP FUNCTION qr_codes_notify_row()")
    op.drop_index(op.f("ix_scans_code_id_scanned_at"), table_name="scans")
    op.drop_table("scans")
    op.drop_index(op.f("ix_qr_codes_created_at_id"), table_name="qr_codes")
    op.drop_table("qr_codes")
