"""The redirect service's app factory: routes, and the resources its lifespan opens and closes."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.redirect import queries
from services.redirect.cache import LookupCache, Target
from services.redirect.listener import ChangeListener
from services.redirect.redirects import RedirectEndpoint
from services.redirect.resolver import DATABASE_FAULTS, Resolver
from services.redirect.settings import RedirectSettings
from shared import logging as qrlog
from shared.database import asyncpg_dsn

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 1.0


class Database:
    """The lookup pool; opened in the lifespan, and never required to be up for the app to start."""

    def __init__(self, settings: RedirectSettings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "the lifespan has not opened the pool"
        return self._pool

    async def open(self) -> None:
        # min_size=0: creating the pool connects to nothing, so the service starts (and serves 503
        # for unknown ids) even while the database is down; one warm-up query follows.
        self._pool = await asyncpg.create_pool(
            asyncpg_dsn(self._settings.lookup_database_url),
            min_size=0,
            max_size=8,
            timeout=self._settings.db_timeout,
            command_timeout=self._settings.db_timeout,
        )
        try:
            await queries.ping(self._pool, timeout=self._settings.db_timeout)
        except DATABASE_FAULTS as exc:
            log.warning("database not reachable at start: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def lookup(self, code_id: str) -> Target | None:
        return await queries.lookup_target(self.pool, code_id, timeout=self._settings.db_timeout)


def create_app(settings: RedirectSettings) -> Starlette:
    cache = LookupCache(
        max_entries=settings.cache_max_entries, ttl=settings.cache_ttl, negative_ttl=settings.negative_ttl
    )
    database = Database(settings)
    resolver = Resolver(cache, database.lookup)
    listener = ChangeListener(asyncpg_dsn(settings.primary_database_url), cache)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await database.open()
        listener.start()
        try:
            yield
        finally:
            await listener.stop()
            await database.close()

    async def health(request: Request) -> JSONResponse:
        body: dict[str, Any] = {"service": "redirect", "cached_ids": len(cache)}
        try:
            await queries.ping(database.pool, timeout=HEALTH_TIMEOUT)
            body["database"] = "ok"
        except DATABASE_FAULTS as exc:
            body["database"] = f"unreachable ({type(exc).__name__})"
        body["listener"] = "ok" if listener.connected.is_set() else "disconnected"
        if body["database"] != "ok":
            if len(cache) == 0:
                return JSONResponse({"status": "unavailable", **body}, status_code=503)
            body["reason"] = "database unreachable: serving cached ids only"
        elif body["listener"] != "ok":
            body["reason"] = "change listener disconnected: changes apply after the cache TTL"
        return JSONResponse({"status": "degraded" if "reason" in body else "ok", **body})

    async def livez(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/r/{code_id:path}", RedirectEndpoint(resolver)),
        Route("/health", health, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.cache = cache
    app.state.listener = listener
    return app


def app_from_env() -> Starlette:
    """Entry point for Granian (``--factory``): settings and logging from the process environment."""
    settings = RedirectSettings.from_env(os.environ)
    qrlog.configure(settings.log_level)
    return create_app(settings)
