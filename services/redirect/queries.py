"""The redirect service's SQL: named constants, one function per query, raw asyncpg.

Every constant here is prepared against the migrated schema in the tests, so a schema change that
breaks one fails there rather than in production.
"""

from __future__ import annotations

import json
import logging

import asyncpg

from services.redirect.answers import CodeAnswer, Found
from services.redirect.contact import contact_of
from services.redirect.rules import compile_routing
from shared.urls import location_bytes

log = logging.getLogger(__name__)

# Ids are unique without regard to case (the index on lower(id), migration 0006), so /r/menu finds
# the code Menu. Codes made before that may share a folded id: the exact spelling wins, then the
# oldest. A deleted code still takes its own spelling (its /r/ answers 404, as before). ``shared``
# says so: the answer then holds for the spelling asked only (the cache keeps it per spelling).
LOOKUP_TARGET = """
SELECT id, target_url, redirect_status, enabled, expires_at, fallback_url, forward_query, rules, split,
       deleted_at IS NOT NULL AS deleted, count(*) OVER () > 1 AS shared, kind, content, dynamic
FROM qr_codes
WHERE lower(id) = lower($1)
ORDER BY id = $1 DESC, created_at, id
LIMIT 1
"""

# On a streaming replica: the same row, with how far the replica has replayed the primary's WAL
# (one row even when the code is not there, so that a miss says how old it is too).
LOOKUP_ON_REPLICA = f"""
SELECT pg_last_wal_replay_lsn() AS replayed, t.*
FROM (SELECT 1) AS one LEFT JOIN LATERAL ({LOOKUP_TARGET}) AS t ON true
"""  # noqa: S608 - built from the constant above, never from input
# The replica's state, and the primary's WAL position (services/redirect/replica.py).
REPLICA_STATE = """
SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn() AS replayed,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age
"""
PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"

PING = "SELECT 1"

ALL = (LOOKUP_TARGET, LOOKUP_ON_REPLICA, REPLICA_STATE, PRIMARY_POSITION, PING)


async def lookup_target(pool: asyncpg.Pool, code_id: str, *, timeout: float) -> Found:
    """The code's current target (``None`` for an unknown or deleted id), and whether the id is
    shared by several codes."""
    async with pool.acquire(timeout=timeout) as connection:
        row = await connection.fetchrow(LOOKUP_TARGET, code_id, timeout=timeout)
    return _found(row, code_id)


async def lookup_on_replica(pool: asyncpg.Pool, code_id: str, *, timeout: float) -> tuple[Found, int | None]:
    """The code as a replica has it (target ``None``: not there), and the WAL position the replica
    had replayed when it answered (``None``: it is no replica)."""
    async with pool.acquire(timeout=timeout) as connection:
        row = await connection.fetchrow(LOOKUP_ON_REPLICA, code_id, timeout=timeout)
    assert row is not None
    return _found(row if row["id"] is not None else None, code_id), row["replayed"]


def _found(row: asyncpg.Record | None, code_id: str) -> Found:
    if row is None:
        return Found(None)
    return Found(_target(row, code_id), shared=row["shared"])


def _target(row: asyncpg.Record | None, code_id: str) -> CodeAnswer | None:
    if row is None or row["deleted"]:
        return None
    if row["kind"] != "url" and not row["dynamic"]:
        return None  # a static code: its images hold its content, its short link answers nothing (404)
    try:
        contact = contact_of(row["content"]) if row["dynamic"] else None  # a page, no redirect
    except (KeyError, TypeError, ValueError):
        log.error("stored contact cannot be read: refusing it", extra={"code_id": code_id})
        return None
    if contact is None and not _web_url(row["target_url"]):
        # Written around the API (psql, say): never send a browser to javascript: or data:.
        log.error("stored target is not an http(s) URL: refusing it", extra={"code_id": code_id})
        return None
    expires_at = row["expires_at"]
    fallback = row["fallback_url"] if row["fallback_url"] and _web_url(row["fallback_url"]) else None
    return CodeAnswer(
        location=b"" if contact is not None else location_bytes(row["target_url"]),
        status=row["redirect_status"],
        enabled=row["enabled"],
        expires_at=None if expires_at is None else expires_at.timestamp(),
        fallback=None if fallback is None else location_bytes(fallback),
        forward_query=row["forward_query"],
        code_id=row["id"],
        contact=contact,
        # Compiled here, once per load into the cache, never per scan.
        rules=compile_routing(row["id"], _json(row["rules"]), _json(row["split"])),
    )


def _json(value: str | None) -> object:
    """A jsonb column as asyncpg returns it (text, no codec registered: none is needed elsewhere)."""
    return None if value is None else json.loads(value)


def _web_url(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


async def keep_session(connection: object) -> None:
    """Pool ``reset``: nothing to undo. Our statements leave no session state (no SET, LISTEN,
    cursor or advisory lock), and asyncpg's default reset costs a round trip per released
    connection, that is per cache miss."""


async def ping(pool: asyncpg.Pool, *, timeout: float) -> None:
    async with pool.acquire(timeout=timeout) as connection:
        await connection.fetchval(PING, timeout=timeout)
