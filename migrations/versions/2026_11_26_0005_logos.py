"""Logos: stored once per content (SHA-256), named by the codes that show one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Images stay derivable from the database alone: a logo's bytes live here, not in QR_DATA_DIR. A new
table and a nullable column without a default: quick under the migrations' lock timeout, and the
code before this revision never reads either.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "logos",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_logos_sha256_format")),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_logos")),
    )
    op.add_column("qr_codes", sa.Column("logo_sha256", sa.String(64), nullable=True))
    op.create_foreign_key(
        op.f("fk_qr_codes_logo_sha256_logos"), "qr_codes", "logos", ["logo_sha256"], ["sha256"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_qr_codes_logo_sha256_logos"), "qr_codes", type_="foreignkey")
    op.drop_column("qr_codes", "logo_sha256")
    op.drop_table("logos")
