"""From an id to its :class:`Target`: the cache first, then one database query per id at a time."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.redirect.cache import NOT_FOUND, LookupCache, Target
from shared.errors import Unavailable
from shared.singleflight import SingleFlight

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[Target | None]]

# What a database that is down, restarting, frozen or overloaded raises through asyncpg.
DATABASE_FAULTS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Resolver:
    def __init__(self, cache: LookupCache, fetch: Fetch) -> None:
        self.cache = cache
        self._fetch = fetch
        self._flights: SingleFlight[str, Target | None] = SingleFlight()

    async def resolve(self, code_id: str) -> Target | None:
        """The target of ``code_id``, ``None`` if there is no such code.

        Raises :class:`Unavailable` when the answer is not cached and the database cannot give it:
        an outage must never look like an unknown id.
        """
        cached = self.cache.get(code_id)
        if cached is not None:
            return cached if isinstance(cached, Target) else None
        # Concurrent misses for one id wait for the same query (single flight).
        return await self._flights.run(code_id, functools.partial(self._load, code_id))

    async def _load(self, code_id: str) -> Target | None:
        epoch = self.cache.epoch
        try:
            target = await self._fetch(code_id)
        except DATABASE_FAULTS as exc:
            log.warning("lookup failed: %s", type(exc).__name__)
            raise Unavailable("the database is unavailable") from exc
        self.cache.put(code_id, NOT_FOUND if target is None else target, epoch=epoch)
        return target
