"""The in-process cache of id lookups.

Semantics:

- bounded: at most ``max_entries`` ids; the least recently used goes first;
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
from collections import OrderedDict
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
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Cached]] = OrderedDict()
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Cached | None:
        """The fresh value for ``key``, or ``None`` on a miss (absent or expired)."""
        item = self._entries.get(key)
        if item is None or item[0] <= self._clock():
            return None
        self._entries.move_to_end(key)
        return item[1]

    def get_stale(self, key: str) -> Target | None:
        """The last known target for ``key``, fresh or not (unknown ids are never served stale)."""
        item = self._entries.get(key)
        return item[1] if item is not None and isinstance(item[1], Target) else None

    def put(self, key: str, value: Cached, *, epoch: int | None = None) -> None:
        """Store ``value``; with ``epoch``, only if nothing was evicted since it was read."""
        if epoch is not None and epoch != self.epoch:
            return
        ttl = self.negative_ttl if value is NOT_FOUND else self.ttl
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def evict(self, key: str) -> None:
        self.epoch += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()
