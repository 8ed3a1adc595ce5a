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

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from services.management.auth.identity import Identity
from services.management.models import audit_log


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
