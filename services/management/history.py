"""Every change of every code (``qr_code_changes``), kept for as long as the code: what changed,
field by field, when, and who made it (from where, under which request id, with which token).

The operations (:mod:`services.management.service`) record an entry in the transaction of the
change itself, so the history cannot miss one; printed codes live for years, and "where did this
code point last March?" has an answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management.auth.identity import Identity
from services.management.codes import NOT_A_CURSOR, Changes, decode_cursor, encode_cursor
from services.management.errors import CodeNotFound, InvalidValue
from services.management.models import qr_code_changes, qr_codes
from services.management.schemas import Change, History

COPY_COLUMNS = ("code_id", "action", "changes", "client_address", "request_id", "token_name")


async def record(
    conn: AsyncConnection, code_id: str, action: str, changes: Changes, identity: Identity
) -> None:
    """One entry: ``action`` changed ``changes`` of the code, by ``identity``."""
    await conn.execute(
        qr_code_changes.insert().values(
            code_id=code_id,
            action=action,
            changes=changes,
            client_address=identity.client_address,
            request_id=identity.request_id,
            token_name=identity.actor,
        )
    )


async def record_created(
    conn: AsyncConnection, created: Sequence[tuple[str, Changes]], identity: Identity
) -> None:
    """The first entry of each of many new codes (code id, fields), in one ``COPY``."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    records = [
        (
            code_id,
            "create",
            json.dumps(changes),
            identity.client_address,
            identity.request_id,
            identity.actor,
        )
        for code_id, changes in created
    ]
    await raw.copy_records_to_table("qr_code_changes", records=records, columns=COPY_COLUMNS)


async def page(conn: AsyncConnection, code_id: str, *, limit: int, cursor: str | None) -> History:
    """The code's changes, newest first; deleted codes keep their history."""
    exists = (await conn.execute(select(qr_codes.c.id).where(qr_codes.c.id == code_id))).first()
    if exists is None:
        raise CodeNotFound(code_id)
    statement = select(qr_code_changes).where(qr_code_changes.c.code_id == code_id)
    if cursor is not None:
        (before,) = decode_cursor(cursor, 1)
        if isinstance(before, bool) or not isinstance(before, int) or not 0 < before < 2**63:
            raise InvalidValue("cursor", NOT_A_CURSOR)
        statement = statement.where(qr_code_changes.c.id < before)
    rows = (await conn.execute(statement.order_by(qr_code_changes.c.id.desc()).limit(limit + 1))).all()
    items = [
        Change(
            id=row.id,
            changed_at=row.changed_at,
            action=row.action,
            changes=row.changes,
            client_address=None if row.client_address is None else str(row.client_address),
            request_id=row.request_id,
            token_name=row.token_name,
        )
        for row in rows[:limit]
    ]
    return History(items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None)
