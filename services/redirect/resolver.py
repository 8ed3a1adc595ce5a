"""From an id to its :class:`CodeAnswer` when the cache has no fresh answer: one database query per code
at a time (whatever the spellings asked meanwhile), and the last known answer while the database
cannot give one.

While the database is failing, every miss would wait for a connect or query timeout; a short
breaker spares that: after a failure, misses within ``cooldown`` seconds do not try the database
but answer at once, from a stale entry when there is one (stale is better than dead for a printed
code), else with :class:`Unavailable` (503). The first miss after the cooldown tries again.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from services.redirect.answers import CodeAnswer, Found
from services.redirect.cache import NOT_FOUND, LookupCache
from shared.database import FAULTS
from shared.errors import Unavailable
from shared.singleflight import SingleFlight

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[Found]]
Lookup = tuple[CodeAnswer | None, bool]  # (target or None for no such code, served stale)


class _Answer(NamedTuple):
    target: CodeAnswer | None  # None: no such code, or (when stale) nothing known while the database fails
    stale: bool
    spelling: str | None  # the spelling asked, when the answer holds for that spelling only


class Resolver:
    def __init__(
        self,
        cache: LookupCache,
        fetch: Fetch,
        *,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self._fetch = fetch
        # Keyed by (the id in lower case, or the spelling for an id shared by several codes, epoch).
        self._flights: SingleFlight[tuple[str, bool, int], _Answer] = SingleFlight()
        self.cooldown = cooldown
        self._clock = clock
        self._failing_until = 0.0
        self.stale_served = 0

    @property
    def database_failing(self) -> bool:
        return self._clock() < self._failing_until

    async def load(self, code_id: str) -> Lookup:
        """The target of an id the cache has no fresh answer for (``None``: no such code), and
        whether it is a stale answer given because the database failed.

        Raises :class:`Unavailable` when the database cannot answer and nothing was ever known of
        the id: an outage must never look like an unknown id.
        """
        # Concurrent misses for one code wait for the same query (single flight), whatever their
        # spellings, unless a change notification came in meanwhile: the flight is keyed by the
        # cache's epoch too, so a caller arriving after a change starts a fresh query instead of
        # taking the old answer.
        answer = await self._flights.run(
            (code_id.lower(), False, self.cache.epoch), functools.partial(self._load, code_id)
        )
        if answer.spelling is not None and answer.spelling != code_id:
            # An id shared by codes made before ids were case-insensitive: this spelling's own answer.
            answer = await self._flights.run(
                (code_id, True, self.cache.epoch), functools.partial(self._load, code_id)
            )
        if answer.stale and answer.target is None:
            raise Unavailable("the database is unavailable")
        return answer.target, answer.stale

    async def _load(self, code_id: str) -> _Answer:
        if self.database_failing:
            return self._last_known(code_id)
        epoch = self.cache.epoch
        try:
            found = await self._fetch(code_id)
        except FAULTS as exc:
            log.warning("lookup failed: %s", type(exc).__name__)
            self._failing_until = self._clock() + self.cooldown
            return self._last_known(code_id)
        self._failing_until = 0.0
        self.cache.put(
            code_id, NOT_FOUND if found.target is None else found.target, shared=found.shared, epoch=epoch
        )
        return _Answer(found.target, False, code_id if found.shared else None)

    def _last_known(self, code_id: str) -> _Answer:
        """What was last known of ``code_id`` (stale, or expired), for while the database fails."""
        stale = self.cache.get_stale(code_id)
        if stale is not None:
            self.stale_served += 1
        return _Answer(stale, True, code_id if self.cache.spelling_matters(code_id) else None)
