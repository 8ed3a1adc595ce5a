"""A code's saved design.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

- ``qr_codes.design``: the image options a code is drawn with when a request names none (module and
  finder shapes, colours, gradient, frame), as a JSON object; null for plain black squares. A
  nullable column without a default: PostgreSQL adds it without rewriting the table, and the code
  before never reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("qr_codes", sa.Column("design", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("qr_codes", "design")
