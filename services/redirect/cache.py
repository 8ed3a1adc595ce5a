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
  cannot be undone by it.

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
        self.epoch = 0
        self.evictions: Counter[str] = Counter()  # why entries went: notify, flush, capacity

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
        if isinstance(value, Target):
            self._missing.pop(key, None)
            self._targets[key] = (self._clock() + self.ttl, value)
            self._targets.move_to_end(key)
            while len(self._targets) > self.max_entries:
                self._targets.popitem(last=False)
                self.evictions["capacity"] += 1
        else:
            self._targets.pop(key, None)
            self._missing[key] = self._clock() + self.negative_ttl
            self._missing.move_to_end(key)
            while len(self._missing) > self.max_missing:
                self._missing.popitem(last=False)

    def evict(self, key: str) -> None:
        self.epoch += 1
        if self._targets.pop(key, None) is not None:
            self.evictions["notify"] += 1
        self._missing.pop(key, None)

    def clear(self) -> None:
        self.epoch += 1
        self.evictions["flush"] += len(self._targets)
        self._targets.clear()
        self._missing.clear()
