"""Management API: fallback and query forwarding, change history, tag and search indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

Compatible with the code before it: the new columns are nullable or have a constant default (no
table rewrite, no long lock on qr_codes), and the indexes lock out writes only, never the redirect
service's reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here on purpose: a migration must not change when the application code does.
SEARCH_EXPRESSION = "lower(id || ' ' || coalesce(title, '') || ' ' || target_url)"


def upgrade() -> None:
    op.add_column("qr_codes", sa.Column("fallback_url", sa.Text(), nullable=True))
    op.add_column(
        "qr_codes", sa.Column("forward_query", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_qr_codes_fallback_url_length"), "qr_codes", "char_length(fallback_url) <= 2048"
    )
    op.create_index(op.f("ix_qr_codes_tags"), "qr_codes", ["tags"], postgresql_using="gin")
    # pg_trgm is a trusted extension: the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(f"CREATE INDEX ix_qr_codes_search ON qr_codes USING gin (({SEARCH_EXPRESSION}) gin_trgm_ops)")
    op.create_table(
        "qr_code_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("client_address", postgresql.INET(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("token_name", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "action IN ('create', 'update', 'delete')", name=op.f("ck_qr_code_changes_action")
        ),
        sa.ForeignKeyConstraint(
            ["code_id"], ["qr_codes.id"], name=op.f("fk_qr_code_changes_code_id_qr_codes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_qr_code_changes")),
    )
    op.create_index(op.f("ix_qr_code_changes_code_id_id"), "qr_code_changes", ["code_id", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_qr_code_changes_code_id_id"), table_name="qr_code_changes")
    op.drop_table("qr_code_changes")
    op.execute("DROP INDEX ix_qr_codes_search")
    op.drop_index(op.f("ix_qr_codes_tags"), table_name="qr_codes")
    op.drop_constraint(op.f("ck_qr_codes_fallback_url_length"), "qr_codes", type_="check")
    op.drop_column("qr_codes", "forward_query")
    op.drop_column("qr_codes", "fallback_url")
