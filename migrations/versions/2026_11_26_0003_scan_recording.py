"""Scan recording: running totals per code and the daily visitor-hash keys.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

New tables only (plus a backfill of the totals from existing scans): the code before this revision
keeps working unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scan_counts",
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("bots", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(["code_id"], ["qr_codes.id"], name=op.f("fk_scan_counts_code_id_qr_codes")),
        sa.PrimaryKeyConstraint("code_id", name=op.f("pk_scan_counts")),
    )
    op.execute(
        "INSERT INTO scan_counts (code_id, total, bots) "
        "SELECT code_id, count(*), count(*) FILTER (WHERE is_bot) FROM scans GROUP BY code_id"
    )
    op.create_table(
        "visitor_keys",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("octet_length(key) = 32", name=op.f("ck_visitor_keys_key_length")),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_visitor_keys")),
    )


def downgrade() -> None:
    op.drop_table("visitor_keys")
    op.drop_table("scan_counts")
