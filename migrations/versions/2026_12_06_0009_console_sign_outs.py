"""Console sign-outs kept in the database.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

- ``console_sign_outs``: the id of each console session signed out, until its cookie would have
  expired. Every management process reads it, so a copied cookie stays refused after a sign-out in
  another process or a restart. A new table: the code before never reads it, and nothing else is
  locked while it is made.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sign_outs",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_console_sign_outs")),
    )
    op.create_index(op.f("ix_console_sign_outs_expires_at"), "console_sign_outs", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_console_sign_outs_expires_at"), table_name="console_sign_outs")
    op.drop_table("console_sign_outs")
