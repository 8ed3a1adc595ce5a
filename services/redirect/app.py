"""The redirect service's app: ``/r/...`` straight to the hot path, the rest through Starlette.

The lifespan opens, in order: the lookup pool, the scan writer, the change listener; and closes
them in reverse, so that the scans of the last requests are written before anything goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.redirect import queries
from services.redirect.answers import Found
from services.redirect.cache import LookupCache
from services.redirect.listener import ChangeListener
from services.redirect.metrics import PoolStats, Readings, RedirectMetrics
from services.redirect.redirects import RedirectEndpoint
from services.redirect.replica import ReplicaRouting
from services.redirect.resolver import Resolver
from services.redirect.scans import ScanRecorder
from services.redirect.settings import RedirectSettings
from shared import logging as qrlog
from shared.context import RequestContext
from shared.database import FAULTS, asyncpg_dsn
from shared.edge_pages import edge_error
from shared.metrics import DatabaseWatch, ensure_multiprocess_dir, exposition

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

    def stats(self) -> PoolStats | None:
        if self._pool is None:
            return None
        idle = self._pool.get_idle_size()
        return PoolStats(in_use=self._pool.get_size() - idle, idle=idle)

    async def open(self) -> None:
        # min_size=0: creating the pool connects to nothing, so the service starts (and serves 503
        # for unknown ids) even while the database is down; one warm-up query follows.
        self._pool = await asyncpg.create_pool(
            asyncpg_dsn(self._settings.lookup_database_url),
            min_size=0,
            max_size=self._settings.db_pool_size,
            timeout=self._settings.db_timeout,
            command_timeout=self._settings.db_timeout,
            reset=queries.keep_session,
            statement_cache_size=self._settings.db_statement_cache_size,
        )
        try:
            await queries.ping(self._pool, timeout=self._settings.db_timeout)
        except FAULTS as exc:
            log.warning("database not reachable at start: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> None:
        await queries.ping(self.pool, timeout=self._settings.db_timeout)

    async def lookup(self, code_id: str) -> Found:
        return await queries.lookup_target(self.pool, code_id, timeout=self._settings.db_timeout)


class RedirectApp:
    """The ASGI app: short links go to the endpoint before any routing; everything else (health,
    liveness, the lifespan) to Starlette."""

    def __init__(self, settings: RedirectSettings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = RedirectMetrics(registry or CollectorRegistry())
        self.cache = LookupCache(
            max_entries=settings.cache_max_entries, ttl=settings.cache_ttl, negative_ttl=settings.negative_ttl
        )
        self.database = Database(settings)
        # A replica for the lookups (REDIRECT_DATABASE_URL elsewhere): never an answer older than
        # the primary's (services/redirect/replica.py).
        self.routing: ReplicaRouting | None = None
        if settings.lookup_database_url != settings.primary_database_url:
            self.routing = ReplicaRouting(
                lambda: self.database.pool,
                asyncpg_dsn(settings.primary_database_url),
                max_lag=settings.replica_max_lag,
                timeout=settings.db_timeout,
                statement_cache_size=settings.db_statement_cache_size,
            )
        self.resolver = Resolver(self.cache, self.routing.fetch if self.routing else self.database.lookup)
        self.recorder = ScanRecorder(
            asyncpg_dsn(settings.primary_database_url),
            trusted_proxies=settings.trusted_proxies,
            flush_interval=settings.scan_flush_interval,
            max_buffered=settings.scan_buffer_max,
            geoip_database=settings.geoip_database,
        )
        self.listener = ChangeListener(
            asyncpg_dsn(settings.primary_database_url),
            self.cache,
            on_change=self.routing.changed if self.routing else None,
        )
        self.endpoint = RedirectEndpoint(
            self.cache,
            self.resolver,
            self.recorder,
            tally=self.metrics.tally,
            outcomes=self.metrics.outcomes_seen,
            access_log=settings.access_log,
        )
        self.other = Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/livez", self.livez, methods=["GET"]),
                Route("/metrics", self.scrape, methods=["GET"]),
                Route("/edge-error/{status:int}", edge_error, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )
        self.observed_other = RequestContext(self.other, self.metrics.http, log_requests=settings.access_log)
        self.database_watch = DatabaseWatch(self.metrics.registry, self.database.ping)
        self._publisher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/r/"):
            await self.endpoint(scope, receive, send)
        elif scope["type"] == "http":
            await self.observed_other(scope, receive, send)
        else:
            await self.other(scope, receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.database.open()
        if self.routing is not None:
            await self.routing.open()
        self.database_watch.start()
        await self.recorder.start()
        self.listener.start()
        self._publisher = asyncio.create_task(self._publish_every_second(), name="qr-metrics")
        try:
            yield
        finally:
            self._publisher.cancel()
            try:
                await self.listener.stop()
                # The server stopped accepting; requests still waiting on a lookup will record
                # their scans: let them finish before the writer's last flush.
                deadline = time.monotonic() + 5.0
                while self.endpoint.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 - a counter, polled
                    await asyncio.sleep(0.01)
                await self.recorder.close()
            finally:
                await self.database_watch.stop()
                if self.routing is not None:
                    await self.routing.close()
                await self.database.close()
                self.publish()  # the last counts, for whoever scrapes the files

    def publish(self) -> None:
        self.metrics.publish(
            Readings(
                in_flight=self.endpoint.in_flight,
                database_failing=self.resolver.database_failing,
                cache=self.cache.stats(),
                listener=self.listener.stats(),
                scans=self.recorder.stats(),
                pool=self.database.stats(),
                replica=None if self.routing is None else (self.routing.state, dict(self.routing.lookups)),
            )
        )

    async def health(self, request: Request) -> JSONResponse:
        scans = self.recorder.stats()
        body: dict[str, Any] = {
            "service": "redirect",
            "cached_ids": len(self.cache),
            "scans": {
                "buffered": scans.buffered,
                "written": scans.written,
                "dropped": scans.dropped,
                "writer": "ok" if scans.healthy else "failing",
            },
        }
        try:
            await queries.ping(self.database.pool, timeout=HEALTH_TIMEOUT)
            body["database"] = "ok"
        except FAULTS as exc:
            body["database"] = f"unreachable ({type(exc).__name__})"
        body["listener"] = "ok" if self.listener.connected.is_set() else "disconnected"
        reasons = []
        if body["database"] != "ok":
            if len(self.cache) == 0:
                return JSONResponse({"status": "unavailable", **body}, status_code=503)
            reasons.append("database unreachable: serving cached ids only")
        elif body["listener"] != "ok":
            reasons.append("change listener disconnected: changes apply after the cache TTL")
        if not scans.healthy:
            reasons.append("scans cannot be written: they wait in memory")
        if self.routing is not None:
            state = self.routing.state
            body["replica"] = "ok" if state.usable else "bypassed"
            if state.lag_seconds is not None and math.isfinite(state.lag_seconds):
                body["replica_lag_seconds"] = round(state.lag_seconds, 3)
            if state.reason is not None:
                reasons.append(f"lookups on the primary: {state.reason}")
        if reasons:
            body["reason"] = "; ".join(reasons)
        return JSONResponse({"status": "degraded" if reasons else "ok", **body})

    async def livez(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def scrape(self, request: Request) -> Response:
        self.publish()
        body, content_type = exposition(self.metrics.registry)
        return Response(body, media_type=content_type)

    async def _publish_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.publish()
            except Exception:
                log.exception("publishing metrics failed")


# Objects a redirect worker allocates between two cyclic collections. Each scan makes a few (its raw
# facts, its row); at Python's default of 700 the collector ran hundreds of times a second and cost
# a tenth of the worker's time behind the edge (make bench). Nothing here makes reference cycles
# on purpose, and memory stays bounded by the buffers.
GC_THRESHOLD = 50_000


def settle_garbage_collection() -> None:
    """For a serving process: what was made so far (modules, settings, the app) moves out of the
    collector's sight for good, and collections come every GC_THRESHOLD allocations instead of 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 100)


def create_app(settings: RedirectSettings) -> RedirectApp:
    return RedirectApp(settings)


def app_from_env() -> RedirectApp:
    """Entry point for Granian (``--factory``) and Hypercorn (``app_from_env()``): settings and
    logging from the process environment."""
    settings = RedirectSettings.from_env(os.environ)
    qrlog.configure(settings.log_level)
    ensure_multiprocess_dir()
    app = create_app(settings)
    settle_garbage_collection()
    return app
