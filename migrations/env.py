"""Alembic environment: async engine, one transaction per migration, and guard rails.

Every run takes a session-level advisory lock (two ``migrate`` at once queue instead of racing), and
runs under a lock timeout (a migration waiting behind the redirect service's reads gives up instead
of stalling them) and a statement timeout.
"""

from __future__ import annotations

import asyncio
import os
import re

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.management.models import EXPRESSION_INDEXES, SCAN_PARTITION, metadata
from shared.database import AdvisoryLock, sqlalchemy_url

ADVISORY_LOCK_KEY = AdvisoryLock.MIGRATE
_DURATION = re.compile(r"[1-9][0-9]{0,6}(ms|s|min)")


def _duration(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip() or default
    if not _DURATION.fullmatch(value):
        raise SystemExit(f"{name} must be a duration like 500ms, 5s or 2min, got {value!r}")
    return value


LOCK_TIMEOUT = _duration("MIGRATION_LOCK_TIMEOUT", "5s")
STATEMENT_TIMEOUT = _duration("MIGRATION_STATEMENT_TIMEOUT", "300s")


def _database_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit("no database: set DATABASE_URL or run through qr-manage")
    return sqlalchemy_url(url)


def _include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # Expression indexes are not compared by autogenerate; these live in the migrations only. Nor
    # are the scans' monthly partitions (made by the migrations and by qr-manage maintain), with
    # the indexes PostgreSQL makes on them.
    if type_ == "index" and name in EXPRESSION_INDEXES:
        return False
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return not re.match(SCAN_PARTITION, str(getattr(table, "name", name)))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transaction_per_migration=True,
        compare_server_default=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            # The advisory lock first, with no timeout: a second migrator waits for the first to
            # finish (and then finds nothing to do) rather than failing.
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": int(ADVISORY_LOCK_KEY)})
            await connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
            await connection.execute(text(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            await connection.commit()
            try:
                await connection.run_sync(_run)
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": int(ADVISORY_LOCK_KEY)}
                )
                await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
asyncio.run(_run_online())
