"""Ids unique without regard to case: one index on lower(id), for the check and for lookups.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A printed ``Menu`` and a typed ``menu`` must lead to the same place: from now on a slug is refused
when any spelling of it was ever used, and ``/r/menu`` finds the code ``Menu``. The index serves
both. Codes made before this revision may already differ only in case; they cannot be renamed
(printed codes keep their ids), so the index is then made without uniqueness, the migration says so
instead of failing, and ``qr-manage status`` lists the spellings. New ids are checked against every
spelling either way (under the create lock). Building the index holds writes to qr_codes for as
long as it takes (seconds for a million codes); reads, and so redirects, go on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_qr_codes_id_folded"  # services/management/models.py: ID_FOLDED_INDEX
log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    clashes = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM qr_codes GROUP BY lower(id) HAVING count(*) > 1) AS c"
            )
        )
        .scalar_one()
    )
    if clashes:
        log.warning(
            "%d ids are shared by codes that differ only in case; the index on lower(id) is made "
            "without uniqueness and qr-manage status lists them",
            clashes,
        )
    unique = "" if clashes else "UNIQUE "
    op.execute(f"CREATE {unique}INDEX {INDEX} ON qr_codes (lower(id))")


def downgrade() -> None:
    op.execute(f"DROP INDEX {INDEX}")
