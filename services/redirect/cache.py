"""The in-process cache of id lookups.

Semantics:

- one entry per code, whatever the spelling asked for: ids are unique without regard to case and
  a lookup finds ``/r/menu`` for the code ``Menu``, so entries are kept under the id in lower case
  (``Menu``, ``mEnu``, ... share one entry and one database query; folding costs a hit a few tens
  of nanoseconds). The exception: an id shared by codes made before ids were case-insensitive
  (each spelling may answer another code), whose answers are kept per spelling;
- bounded: at most ``max_entries`` found ids and a tenth of that of unknown ids, each store
  dropping its least recently used first;
- every entry expires: found ids after ``ttl``, unknown ids (negative entries, so that scanning
  random ids does not reach the database each time) after the shorter ``negative_ttl``;
- a change marks entries stale rather than dropping them: a change notification the code's entry,
  a flush (``*``, or the change listener's reconnect) every entry. A stale or expired entry is no
  answer for :meth:`LookupCache.get` (it is looked up again, and replaced as soon as that lookup
  succeeds), but it stays, until the bound pushes it out, for :meth:`LookupCache.get_stale`: while
  the database is unreachable, a printed code keeps working on what was last known. New codes
  only (a bulk create) drop the unknown ids and touch nothing else: a create can only turn a 404
  into a code;
- values are immutable (:class:`CodeAnswer` is a frozen dataclass, :data:`NOT_FOUND` a sentinel), so
  callers share them safely;
- every change bumps an epoch, and :meth:`LookupCache.put` takes a value read from the database
  before the latest change as stale at best (and only for a code nothing is held of), so a change
  notification that overtakes a lookup in flight cannot be undone by it.

A plain ``OrderedDict`` rather than aiocache's memory backend: the latter has no size bound and
wraps each call in ``asyncio.wait_for``, which costs more than the rest of a redirect.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, final

from services.redirect.answers import CodeAnswer

# The key of an answer held for one spelling only is that spelling in a tuple: no path asked for
# (a string, looked up before it is validated) can ever be equal to it.
Key = str | tuple[str]
STALE: Final = 0.0  # the "fresh until" of an entry marked stale: before any reading of the clock


@final
class _NotFound:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND: Final = _NotFound()
Cached = CodeAnswer | _NotFound


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
        # key -> (fresh until, generation, target); the key is the id in lower case, or (the
        # spelling asked,) for an id shared by several codes.
        self._targets: OrderedDict[Key, tuple[float, int, CodeAnswer]] = OrderedDict()
        self._missing: OrderedDict[Key, float] = OrderedDict()
        # Id in lower case -> the per-spelling keys held of it (ids shared by several codes only).
        self._spellings: dict[str, set[tuple[str]]] = {}
        self.generation = 0  # a flush makes the entries of the generations before it stale
        self.epoch = 0
        self.evictions: Counter[str] = Counter()  # entries made stale (notify, flush) or dropped (capacity)

    def stats(self) -> CacheStats:
        return CacheStats(entries=len(self._targets), evictions=dict(self.evictions))

    def __len__(self) -> int:
        """Targets held, fresh or stale (what could still be answered in an outage)."""
        return len(self._targets)

    def get(self, code_id: str) -> Cached | None:
        """The fresh value for ``code_id`` in any spelling, or ``None`` on a miss (absent, stale or
        expired)."""
        # Generated ids are in lower case already: folded only when not found as asked.
        key: Key = code_id
        item = self._targets.get(key)
        if item is None:
            key = code_id.lower()
            item = self._targets.get(key)
            if item is None and self._spellings and key in self._spellings:
                key = (code_id,)
                item = self._targets.get(key)
        if item is not None:
            if item[0] <= self._clock() or item[1] != self.generation:
                return None
            self._targets.move_to_end(key)
            return item[2]
        expires = self._missing.get(key)
        if expires is not None and expires > self._clock():
            return NOT_FOUND
        return None

    def get_stale(self, code_id: str) -> CodeAnswer | None:
        """The last known target for ``code_id``, fresh or not (unknown ids are never served stale)."""
        item = self._targets.get(self._key(code_id))
        return None if item is None else item[2]

    def spelling_matters(self, code_id: str) -> bool:
        """Whether the id is known to be shared by several codes (each spelling its own answer)."""
        return code_id.lower() in self._spellings

    def _key(self, code_id: str) -> Key:
        folded = code_id.lower()
        return (code_id,) if folded in self._spellings else folded

    def put(self, code_id: str, value: Cached, *, shared: bool = False, epoch: int | None = None) -> None:
        """Store ``value`` for ``code_id`` (for that spelling only when the id is ``shared``); with
        ``epoch``, as fresh only if nothing changed since it was read."""
        folded = code_id.lower()
        if epoch is not None and epoch != self.epoch:
            # Read before a change (of any code): no fresh answer, but for a code nothing is held
            # of, what to answer should the database fail before it is looked up again.
            unheld = folded not in self._targets and folded not in self._spellings
            if isinstance(value, CodeAnswer) and not shared and unheld:
                self._missing.pop(folded, None)
                self._hold(folded, STALE, value)
            return
        key: Key
        if shared:
            self._drop(folded)  # held from before the id was known to be shared (a restore)
            key = (code_id,)
            self._drop(key)
            self._spellings.setdefault(folded, set()).add(key)
        else:
            for held in tuple(self._spellings.get(folded, ())):
                self._drop(held)
            key = folded
            self._drop(key)
        if isinstance(value, CodeAnswer):
            self._hold(key, self._clock() + self.ttl, value)
        else:
            self._missing[key] = self._clock() + self.negative_ttl
            while len(self._missing) > self.max_missing:
                self._drop(next(iter(self._missing)))

    def _hold(self, key: Key, fresh_until: float, target: CodeAnswer) -> None:
        self._targets[key] = (fresh_until, self.generation, target)
        while len(self._targets) > self.max_entries:
            self._drop(next(iter(self._targets)))
            self.evictions["capacity"] += 1

    def _drop(self, key: Key) -> None:
        """Forget ``key`` in both stores."""
        self._targets.pop(key, None)
        self._missing.pop(key, None)
        if isinstance(key, tuple):
            folded = key[0].lower()
            spellings = self._spellings.get(folded)
            if spellings is not None:
                spellings.discard(key)
                if not spellings:
                    del self._spellings[folded]

    def mark_stale(self, code_id: str) -> None:
        """The code stored as ``code_id`` changed: its entries (every spelling) are looked up again
        before they answer, and answer meanwhile only while the database cannot; an unknown-id
        entry of it goes (it may have just been created)."""
        self.epoch += 1
        folded = code_id.lower()
        keys: tuple[Key, ...] = (folded, *self._spellings.get(folded, ()))
        for key in keys:
            item = self._targets.get(key)
            if item is None:
                self._drop(key)
            elif item[0] != STALE:
                self._targets[key] = (STALE, item[1], item[2])  # where it was in the LRU order
                self.evictions["notify"] += 1

    def forget(self, code_id: str) -> None:
        """The code stored as ``code_id`` answers no more (deleted, disabled, expired): every entry
        of it goes, so that nothing of it is answered from memory while the database is away."""
        self.epoch += 1
        folded = code_id.lower()
        for key in (folded, *self._spellings.get(folded, ())):
            if key in self._targets:
                self.evictions["stopped"] += 1
            self._drop(key)

    def mark_all_stale(self) -> None:
        """Anything may have changed (a restore, a change of many codes, notifications missed):
        every entry is looked up again before it answers; unknown ids go."""
        self.epoch += 1
        self.generation += 1
        self.evictions["flush"] += len(self._targets)
        self._forget_missing()

    def forget_unknown(self) -> None:
        """New codes were made, nothing else changed: only the unknown-id entries go."""
        self.epoch += 1
        self._forget_missing()

    def _forget_missing(self) -> None:
        for key in [key for key in self._missing if isinstance(key, tuple)]:
            self._drop(key)
        self._missing.clear()


@dataclass(frozen=True)
class CacheStats:
    entries: int  # targets held, fresh or stale
    evictions: dict[str, int]  # running totals by reason: notify, flush (made stale), capacity (dropped)
