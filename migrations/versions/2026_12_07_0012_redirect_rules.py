"""Redirect rules: a code's ``rules`` and ``split``, and which of them served each scan.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

- ``qr_codes.rules`` (a JSON list, empty by default) and ``qr_codes.split`` (a JSON list of
  variants, null for none): validated by the management service, compiled by the redirect service
  when it loads a code (shared/rules.py).
- ``scans.rule``: ``rule N``, ``variant x`` or ``default`` for a scan of a code with rules, null
  otherwise; the scan writer tallies it in ``scan_tallies`` under the dimension ``rule``.

Columns added with constant defaults only: no table is rewritten, and the code before neither
reads nor writes them (its scans have no rule, as its codes have none).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "qr_codes",
        sa.Column("rules", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.add_column("qr_codes", sa.Column("split", postgresql.JSONB(), nullable=True))
    op.add_column("scans", sa.Column("rule", sa.Text(), nullable=True))
    _dimensions("'country', 'referrer', 'agent', 'bot_reason', 'rule'")


def downgrade() -> None:
    op.execute("DELETE FROM scan_tallies WHERE dimension = 'rule'")
    _dimensions("'country', 'referrer', 'agent', 'bot_reason'")
    op.drop_column("scans", "rule")
    op.drop_column("qr_codes", "split")
    op.drop_column("qr_codes", "rules")


def _dimensions(allowed: str) -> None:
    """The tallies' dimensions constraint, allowing ``allowed`` (checked against every row: the
    table holds a few rows per code and day)."""
    op.drop_constraint(op.f("ck_scan_tallies_dimension"), "scan_tallies", type_="check")
    op.create_check_constraint(op.f("ck_scan_tallies_dimension"), "scan_tallies", f"dimension IN ({allowed})")
