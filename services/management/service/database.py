"""The service's database: the engine (made in the app's lifespan), connections and transactions,
and the database being away turned into :class:`~services.management.errors.TryAgain`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.management.errors import TryAgain
from services.management.settings import ManagementSettings
from shared.database import TRANSIENT, sqlalchemy_url

log = logging.getLogger(__name__)

DB_TIMEOUT = 10.0
# The database away, as SQLAlchemy passes it on: asyncpg's own faults wrapped in its classes.
DATABASE_FAULTS = (
    *TRANSIENT,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


def transient_cause(exc: sqlalchemy.exc.DBAPIError) -> BaseException | None:
    """The asyncpg error behind a statement's failure when it is one that passes (SQLAlchemy wraps
    every PostgreSQL error in its own class, whatever it is; asyncpg's is its cause)."""
    cause = getattr(exc.orig, "__cause__", None)
    return cause if isinstance(cause, TRANSIENT) else None


class Database:
    def __init__(self, settings: ManagementSettings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "the lifespan has not opened the engine"
        return self._engine

    async def open(self) -> None:
        self._engine = create_async_engine(
            sqlalchemy_url(self.settings.database_url),
            pool_size=self.settings.db_pool_size,
            max_overflow=self.settings.db_max_overflow,
            pool_timeout=DB_TIMEOUT,
            pool_pre_ping=True,
            connect_args={
                "timeout": DB_TIMEOUT,
                "command_timeout": DB_TIMEOUT,
                # Plan each statement for its actual values: a generic plan of the search's
                # LIKE $1 cannot use the trigram index and walks every row instead (13x slower
                # in make bench). Planning costs well under a millisecond here.
                "server_settings": {"plan_cache_mode": "force_custom_plan"},
            },
        )

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def connect(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection (in a transaction when ``write``); an unreachable database is
        :class:`TryAgain`."""
        try:
            async with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
        except DATABASE_FAULTS as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise TryAgain("the database is unavailable; try again shortly") from exc
        except sqlalchemy.exc.DBAPIError as exc:
            fault = transient_cause(exc)
            if fault is None:
                raise
            # A deadlock or serialization failure (rolled back: nothing was written), the server
            # shutting down or out of connections: the same request can succeed a moment later.
            log.warning("database refused for now: %s", type(fault).__name__)
            raise TryAgain("the database could not do this just now; try again shortly") from exc

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
