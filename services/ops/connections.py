"""One way for qr-manage to talk to PostgreSQL: a connection for one task, closed whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from shared.database import asyncpg_dsn

CONNECT_TIMEOUT = 10.0


@contextlib.asynccontextmanager
async def connection(dsn: str, **settings: Any) -> AsyncIterator[asyncpg.Connection]:
    """A connection to ``dsn`` (any spelling of ``DATABASE_URL``); ``settings`` go to
    :func:`asyncpg.connect` (``server_settings``, say)."""
    settings.setdefault("timeout", CONNECT_TIMEOUT)
    conn = await asyncpg.connect(asyncpg_dsn(dsn), **settings)
    try:
        yield conn
    finally:
        await conn.close()
