"""The in-process cache of id lookups.

Semantics:

- bounded: at most ``max_entries`` found ids and a tenth of that of unknown ids, each store
  dropping its least recently used first;
- every entry expires: found ids after ``ttl``, unknown ids (negative entries, so that scanning
  random ids does not reach the database each time) after the shorter ``negative_ttl``;
- an expired found id stays (until the bound pushes it out) for :meth:`LookupCache.get_stale`:
  while the database is unreachable, a printed code keeps working on what was last known;
- values are immutable (:class:`Target` is a frozen dataclass, :data:`NOT_FOUND` a sentinel), so
  callers share them safely;
- ``evict``/``clear`` bump an epoch, and :meth:`LookupCache.put` drops a value read from the
  database before the latest eviction, so a change notification that overtakes a lookup in flight
  cannot be undone by it;
- ids are unique without regard to case and a lookup finds ``/r/menu`` for the code ``Menu``: an
  entry is kept under the spelling asked for (a printed code is scanned in one spelling, so a hit
  costs no case folding), and ``evict`` of a code's id drops every spelling held of it, found or
  unknown (the notification carries the id as stored).

A plain ``OrderedDict`` rather than aiocache's memory backend: the latter has no size bound and
wraps each call in ``asyncio.wait_for``, which costs more than the rest of a redirect.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, final


@dataclass(frozen=True, slots=True)
class Target:
    """What a code answers: the ``Location`` bytes, its status, when it stops answering, and what
    it does then (``fallback``: a ``Location`` instead of 410)."""

    location: bytes
    status: int
    enabled: bool = True
    expires_at: float | None = None  # Unix time; None: never
    fallback: bytes | None = None
    forward_query: bool = False
    code_id: str = ""  # the id as stored (a scan of /r/menu is a scan of the code Menu)

    def is_live(self, now: float) -> bool:
        return self.enabled and (self.expires_at is None or now < self.expires_at)


@final
class _NotFound:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND: Final = _NotFound()
Cached = Target | _NotFound


class LookupCache:
    def __init__(
        self,
        *,
        max_entries: int,
        ttl: float,
        negative_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        # Unknown ids have a store of their own, a tenth of the size: a flood of random ids can
        # push out other unknown ids, never the codes that must keep working in an outage.
        self.max_missing = max(1, max_entries // 10)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._targets: OrderedDict[str, tuple[float, Target]] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()
        # Folded id -> the keys with capitals held in either store under that id (slugs, mostly).
        self._spellings: dict[str, set[str]] = {}
        self.epoch = 0
        self.evictions: Counter[str] = Counter()  # why entries went: notify, flush, capacity

    def stats(self) -> CacheStats:
        return CacheStats(entries=len(self._targets), evictions=dict(self.evictions))

    def __len__(self) -> int:
        """Targets held, fresh or stale (what could still be answered in an outage)."""
        return len(self._targets)

    def get(self, key: str) -> Cached | None:
        """The fresh value for ``key``, or ``None`` on a miss (absent or expired)."""
        item = self._targets.get(key)
        if item is not None:
            if item[0] <= self._clock():
                return None
            self._targets.move_to_end(key)
            return item[1]
        expires = self._missing.get(key)
        if expires is not None and expires > self._clock():
            return NOT_FOUND
        return None

    def get_stale(self, key: str) -> Target | None:
        """The last known target for ``key``, fresh or not (unknown ids are never served stale)."""
        item = self._targets.get(key)
        return None if item is None else item[1]

    def put(self, key: str, value: Cached, *, epoch: int | None = None) -> None:
        """Store ``value``; with ``epoch``, only if nothing was evicted since it was read."""
        if epoch is not None and epoch != self.epoch:
            return
        self._drop(key)
        if key != key.lower():  # found again by any spelling of the code's id
            self._spellings.setdefault(key.lower(), set()).add(key)
        if isinstance(value, Target):
            self._targets[key] = (self._clock() + self.ttl, value)
            while len(self._targets) > self.max_entries:
                self._drop(next(iter(self._targets)))
                self.evictions["capacity"] += 1
        else:
            self._missing[key] = self._clock() + self.negative_ttl
            while len(self._missing) > self.max_missing:
                self._drop(next(iter(self._missing)))

    def _drop(self, key: str) -> bool:
        """Forget ``key`` in both stores; whether a target was held under it."""
        held = self._targets.pop(key, None) is not None
        self._missing.pop(key, None)
        folded = key.lower()
        if folded != key and (spellings := self._spellings.get(folded)) is not None:
            spellings.discard(key)
            if not spellings:
                del self._spellings[folded]
        return held

    def evict(self, code_id: str) -> None:
        """Forget what is known of the code stored as ``code_id``, under every spelling."""
        self.epoch += 1
        folded = code_id.lower()
        for key in (folded, *self._spellings.get(folded, ())):
            if self._drop(key):
                self.evictions["notify"] += 1

    def clear(self) -> None:
        self.epoch += 1
        self.evictions["flush"] += len(self._targets)
        self._targets.clear()
        self._missing.clear()
        self._spellings.clear()


@dataclass(frozen=True)
class CacheStats:
    entries: int  # targets held, fresh or stale
    evictions: dict[str, int]  # running totals by reason: notify, flush, capacity
