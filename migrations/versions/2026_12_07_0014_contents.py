"""Contents beyond a link: a code's kind, its content and whether a contact is dynamic.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

- ``kind``: ``url`` (every code before this revision: the short link redirecting to ``target_url``),
  or a static kind whose images encode ``content`` itself (``wifi``, ``vcard``, ``event``, ``email``,
  ``sms``, ``tel``, ``geo``, ``text``); such a code's ``target_url`` is the empty string.
- ``content``: the kind's fields as validated (JSONB), null for a url code.
- ``dynamic``: a vcard served as a contact page by its short link (its images encode the link).

Columns with constant defaults (no rewrite of the table); the checks are added NOT VALID and then
validated, which reads the table without blocking writes. The code before this revision never
reads the columns, and writes url codes only, which the defaults describe.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "('url', 'wifi', 'vcard', 'event', 'email', 'sms', 'tel', 'geo', 'text')"
CHECKS = {
    "ck_qr_codes_kind": f"kind IN {KINDS}",
    "ck_qr_codes_content_of_kind": "(kind = 'url') = (content IS NULL)",
    "ck_qr_codes_dynamic_kind": "NOT dynamic OR kind = 'vcard'",
}


def upgrade() -> None:
    op.add_column("qr_codes", sa.Column("kind", sa.Text(), server_default=sa.text("'url'"), nullable=False))
    op.add_column("qr_codes", sa.Column("content", postgresql.JSONB(), nullable=True))
    op.add_column("qr_codes", sa.Column("dynamic", sa.Boolean(), server_default=sa.false(), nullable=False))
    for name, condition in CHECKS.items():
        op.execute(f"ALTER TABLE qr_codes ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")
        op.execute(f"ALTER TABLE qr_codes VALIDATE CONSTRAINT {name}")


def downgrade() -> None:
    for name in CHECKS:
        op.drop_constraint(op.f(name), "qr_codes", type_="check")
    op.drop_column("qr_codes", "dynamic")
    op.drop_column("qr_codes", "content")
    op.drop_column("qr_codes", "kind")
