"""Access control: tokens managed by the service, and the audit log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

- ``admin_tokens``: bearer tokens made by ``qr-manage token create`` or ``POST /api/v1/tokens``, by
  name: the role, the tags it is limited to (empty: every code), a keyed hash of the secret (never
  the secret), when it was made, when it expires, when it was last used and when it was revoked
  (a revoked token's row stays, so its name is not reused and the audit log's entries keep meaning).
- ``audit_log``: every admin write, token change, sign-in, failed sign-in and sign-out: when, who
  (the token's name, or the provider's subject and e-mail), its role, from which address, under
  which request id, what (``action``, ``target``) and a small ``detail`` object (never a secret).
  Kept AUDIT_RETENTION_DAYS.

Both are new tables: the code before never reads them, and nothing else is locked while they are
made.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.Text()),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'admin')", name=op.f("ck_admin_tokens_role")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_admin_tokens_secret_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text()),
        sa.Column("actor_kind", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text()),
        sa.Column("email", sa.Text()),
        sa.Column("role", sa.Text()),
        sa.Column("client_address", postgresql.INET()),
        sa.Column("request_id", sa.Text()),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text()),
        sa.Column("outcome", sa.Text(), server_default="ok", nullable=False),
        sa.Column("detail", postgresql.JSONB(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at_id"), "audit_log", ["at", "id"])
    op.create_index(op.f("ix_audit_log_actor_id"), "audit_log", ["actor", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_actor_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at_id"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("admin_tokens")
