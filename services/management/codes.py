"""Reading and writing QR codes (SQLAlchemy Core on the async engine).

Every write to ``qr_codes`` fires the ``qr_changed`` notification from a trigger inside the same
transaction, so the redirect processes see a change exactly when it commits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management.fields import NewCode
from services.management.models import qr_codes, scans
from shared import ids
from shared.errors import Conflict, InvalidField, NotFound, ServiceError
from shared.urls import ascii_host

# With ~49.5 bits per id a collision is rare; several in a row mean something else is wrong.
MAX_ID_ATTEMPTS = 5

_RESOURCE_COLUMNS = (
    qr_codes.c.id,
    qr_codes.c.short_url,
    qr_codes.c.target_url,
    qr_codes.c.title,
    qr_codes.c.tags,
    qr_codes.c.redirect_status,
    qr_codes.c.enabled,
    qr_codes.c.expires_at,
    qr_codes.c.created_at,
    qr_codes.c.updated_at,
)


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _host_ascii(url: str) -> str | None:
    try:
        return ascii_host(urlsplit(url).hostname or "")
    except (InvalidField, ValueError):  # a row written around the API
        return None


def to_resource(row: Any, *, scan_count: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "short_url": row.short_url,
        "target_url": row.target_url,
        # The host as a browser will look it up: a homograph (a Cyrillic letter for a Latin one) shows here.
        "target_host_ascii": _host_ascii(row.target_url),
        "title": row.title,
        "tags": list(row.tags),
        "redirect_status": row.redirect_status,
        "enabled": row.enabled,
        "expires_at": _timestamp(row.expires_at),
        "created_at": _timestamp(row.created_at),
        "updated_at": _timestamp(row.updated_at),
        "scan_count": scan_count,
    }


async def create_code(conn: AsyncConnection, new: NewCode, *, public_base_url: str) -> dict[str, Any]:
    """Insert a code under its slug or a fresh random id; :class:`Conflict` if the slug was ever used.

    ``ON CONFLICT DO NOTHING`` rather than catching the unique violation: two creates racing for
    one slug then cost one insert and one empty result, never an aborted transaction.
    """
    for _ in range(MAX_ID_ATTEMPTS):
        code_id = new.slug or ids.new_id()
        statement = (
            insert(qr_codes)
            .values(
                id=code_id,
                short_url=f"{public_base_url}/r/{code_id}",
                target_url=new.target_url,
                title=new.title,
                tags=list(new.tags),
                redirect_status=new.redirect_status,
                enabled=new.enabled,
                expires_at=new.expires_at,
            )
            .on_conflict_do_nothing(index_elements=[qr_codes.c.id])
            .returning(*_RESOURCE_COLUMNS)
        )
        row = (await conn.execute(statement)).first()
        if row is not None:
            return to_resource(row, scan_count=0)
        if new.slug is not None:
            raise Conflict(f"the id '{new.slug}' is taken or was used before", details={"field": "slug"})
    raise ServiceError("could not find a free id; try again")


async def get_code(conn: AsyncConnection, code_id: str) -> dict[str, Any]:
    """The live (not deleted) code ``code_id`` with its scan count, or :class:`NotFound`."""
    scan_count = (
        select(func.count()).select_from(scans).where(scans.c.code_id == qr_codes.c.id).scalar_subquery()
    )
    statement = select(*_RESOURCE_COLUMNS, scan_count.label("scan_count")).where(
        qr_codes.c.id == code_id, qr_codes.c.deleted_at.is_(None)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise NotFound(f"no QR code with id '{code_id}'")
    return to_resource(row, scan_count=row.scan_count)


async def get_short_url(conn: AsyncConnection, code_id: str) -> str:
    """What the code's images encode; :class:`NotFound` for an unknown or deleted id."""
    statement = select(qr_codes.c.short_url).where(qr_codes.c.id == code_id, qr_codes.c.deleted_at.is_(None))
    short_url = (await conn.execute(statement)).scalar_one_or_none()
    if short_url is None:
        raise NotFound(f"no QR code with id '{code_id}'")
    return str(short_url)
