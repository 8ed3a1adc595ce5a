"""The audit log (``audit_log``): every admin write, token change, sign-in, failed sign-in and
sign-out, with who (the token's name, or the provider's subject and e-mail), its role, the client's
address, the request id, what and when.

A write records its entry in its own transaction (:func:`record`), so the log cannot miss one that
happened nor hold one that did not; an event with no transaction of its own (a sign-in, a refused
one) records it alone (:func:`record_alone`). ``detail`` is a small JSON object of names and values
that say what was done: never a token, a password, a cookie or a code the provider sent.

Actions: ``code.create``, ``code.update`` (detail: the fields changed), ``code.delete``,
``code.bulk`` (target: the batch's first id; detail: how many, and the first ids), ``logo.set``,
``logo.remove``, ``scans.erase``, ``token.create``, ``token.revoke``,
``sign-in``, ``sign-out`` (``outcome`` ``refused`` for a failed sign-in, with the reason in
``detail``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.management.auth.identity import Identity
from services.management.codes import NOT_A_CURSOR, decode_cursor, encode_cursor
from services.management.errors import InvalidValue
from services.management.exports import ROWS_PER_CHUNK, lines
from services.management.models import audit_log
from services.management.schemas import AuditEntry, AuditFilters, AuditPage

log = logging.getLogger(__name__)

# The CSV's columns, in the API's order (detail as JSON text).
CSV_COLUMNS = tuple(AuditEntry.model_fields)


class Database(Protocol):
    def connect(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]: ...


def entry(
    identity: Identity,
    action: str,
    *,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    outcome: str = "ok",
) -> dict[str, Any]:
    """The row of one entry (see :func:`record`)."""
    return {
        "actor": identity.actor,
        "actor_kind": identity.kind,
        "subject": identity.subject,
        "email": identity.email,
        "role": None if identity.kind == "network" else identity.role.value,
        "client_address": identity.client_address,
        "request_id": identity.request_id,
        "action": action,
        "target": target,
        "outcome": outcome,
        "detail": dict(detail or {}),
    }


async def record(
    conn: AsyncConnection,
    identity: Identity,
    action: str,
    *,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    outcome: str = "ok",
) -> None:
    """One entry, in ``conn``'s transaction: ``identity`` did ``action`` (``code.create``,
    ``token.revoke``, ``sign-in``, ...) to ``target`` (a code's id, a token's name)."""
    await conn.execute(
        audit_log.insert().values(entry(identity, action, target=target, detail=detail, outcome=outcome))
    )


async def record_alone(
    database: Database,
    identity: Identity,
    action: str,
    *,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
    outcome: str = "ok",
) -> None:
    """One entry in a transaction of its own (an event that writes nothing else)."""
    async with database.connect(write=True) as conn:
        await record(conn, identity, action, target=target, detail=detail, outcome=outcome)


def _instant(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, time(), UTC)


def _selected(filters: AuditFilters) -> Select[Any]:
    statement = select(audit_log)
    if filters.from_ is not None:
        statement = statement.where(audit_log.c.at >= _instant(filters.from_))
    if filters.to is not None:
        statement = statement.where(audit_log.c.at < _instant(filters.to))
    if filters.actor is not None:
        statement = statement.where(audit_log.c.actor == filters.actor)
    if filters.action is not None:
        statement = statement.where(audit_log.c.action == filters.action)
    return statement


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        actor=row.actor,
        actor_kind=row.actor_kind,
        subject=row.subject,
        email=row.email,
        role=row.role,
        client_address=None if row.client_address is None else str(row.client_address),
        request_id=row.request_id,
        detail=row.detail,
    )


async def page(conn: AsyncConnection, filters: AuditFilters, *, limit: int, cursor: str | None) -> AuditPage:
    """The entries the filters keep, newest first."""
    statement = _selected(filters)
    if cursor is not None:
        (before,) = decode_cursor(cursor, 1)
        if isinstance(before, bool) or not isinstance(before, int) or not 0 < before < 2**63:
            raise InvalidValue("cursor", NOT_A_CURSOR)
        statement = statement.where(audit_log.c.id < before)
    rows = (await conn.execute(statement.order_by(audit_log.c.id.desc()).limit(limit + 1))).all()
    items = [_entry(row) for row in rows[:limit]]
    return AuditPage(
        items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    )


async def as_csv(
    engine: AsyncEngine, filters: AuditFilters, *, faults: tuple[type[BaseException], ...]
) -> AsyncIterator[bytes]:
    """The entries the filters keep as CSV, oldest first, streamed (formula-safe cells). A database
    that fails half-way ends the file early; the log says so."""
    yield lines([CSV_COLUMNS])
    try:
        async with engine.connect() as conn:
            result = await conn.stream(_selected(filters).order_by(audit_log.c.id))
            async for partition in result.partitions(ROWS_PER_CHUNK):
                rows = [_entry(row).model_dump(mode="json") for row in partition]
                yield lines([[_cell(row[column]) for column in CSV_COLUMNS] for row in rows])
    except faults as exc:
        log.error("audit export cut short: the database failed", extra={"error": type(exc).__name__})


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value
