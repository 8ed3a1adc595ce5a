"""Lookups on a streaming replica (``REDIRECT_DATABASE_URL``), never an answer older than the
primary's.

A hot standby replays the primary's WAL a moment behind it. Read naively, that moment is two races:

- **a code created a moment ago** is not on the replica yet: its first scan would get a 404 (and
  a negative cache entry). So a code the replica does not have is looked up on the primary before
  anything answers 404 or is cached as unknown;
- **a code changed a moment ago**: the change notification (LISTEN on the primary) marks the
  cached entry stale at once, but the replica may still hold the old row, and the next lookup would
  cache the old target again, for the whole TTL. So on every notification the service reads the
  primary's WAL position (``pg_current_wal_lsn()``, taken after the notification arrived, hence
  after the change committed) and keeps it for that id; a replica answer for the id counts only
  when the replica had replayed at least that far (every lookup reads ``pg_last_wal_replay_lsn()``
  in the same statement), else the primary answers. Until the position is known, the id goes to
  the primary. A flush (``*``) does the same for every id.

Either way the fallback costs a primary query, never a wrong answer. A replica that cannot be
reached, or that lags more than ``REPLICA_MAX_LAG_SECONDS`` behind (measured every half second),
costs speed only: every lookup goes to the primary until it is back, ``/health`` says
``degraded`` with the reason, and ``qr_replica_lag_seconds`` shows the lag. A
``REDIRECT_DATABASE_URL`` that is no standby (PgBouncer in front of the primary) is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from services.redirect import queries
from services.redirect.answers import Found
from shared.database import FAULTS, FLUSH_ALL

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.5
PRIMARY_POOL_SIZE = 2  # the fallback's connections, beside the scan writer's and the listener's


@dataclass(frozen=True)
class ReplicaState:
    standby: bool | None  # None: not reached yet, or gone
    usable: bool
    lag_seconds: float | None
    reason: str | None  # why lookups go to the primary


class ReplicaRouting:
    """The fetch the resolver calls, with the replica first and the primary when it must."""

    def __init__(
        self,
        replica: Callable[[], asyncpg.Pool],
        primary_dsn: str,
        *,
        max_lag: float,
        timeout: float,
        statement_cache_size: int,
    ) -> None:
        self._replica = replica
        self._primary_dsn = primary_dsn
        self._primary: asyncpg.Pool | None = None
        self.max_lag = max_lag
        self._timeout = timeout
        self._statement_cache_size = statement_cache_size
        self.state = ReplicaState(standby=None, usable=False, lag_seconds=None, reason="not checked yet")
        self._required: dict[str, int] = {}  # id -> the primary's WAL position after its change
        self._required_all = 0  # after a flush
        self._pending: set[str] = set()  # changed, position not read yet: the primary answers
        self._pending_all = 0
        self._positions: asyncio.Task[None] | None = None
        # The primary's WAL position at each check, for as long as a lag can matter.
        self._history: deque[tuple[float, int]] = deque(maxlen=int(max_lag / CHECK_INTERVAL) + 8)
        self._task: asyncio.Task[None] | None = None
        self.lookups = {"replica": 0, "primary": 0}

    async def open(self) -> None:
        self._primary = await asyncpg.create_pool(
            self._primary_dsn,
            min_size=0,
            max_size=PRIMARY_POOL_SIZE,
            timeout=self._timeout,
            command_timeout=self._timeout,
            reset=queries.keep_session,
            statement_cache_size=self._statement_cache_size,
        )
        # Known before the first request, so that a replica that is up takes the lookups at once.
        with contextlib.suppress(TimeoutError):
            self.state = await asyncio.wait_for(self._check(), self._timeout)
        self._task = asyncio.create_task(self._watch(), name="qr-replica-watch")

    async def close(self) -> None:
        for task in (self._task, self._positions):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._primary is not None:
            await self._primary.close()

    @property
    def primary(self) -> asyncpg.Pool:
        assert self._primary is not None, "the lifespan has not opened the primary pool"
        return self._primary

    # -- lookups -----------------------------------------------------------------------------------

    async def fetch(self, code_id: str) -> Found:
        state = self.state
        current_enough = state.standby is False or (not self._pending_all and code_id not in self._pending)
        if state.usable and current_enough:
            try:
                found, replayed = await queries.lookup_on_replica(
                    self._replica(), code_id, timeout=self._timeout
                )
            except FAULTS as exc:
                log.warning("replica lookup failed, asking the primary: %s", type(exc).__name__)
                self.state = ReplicaState(
                    self.state.standby, False, self.state.lag_seconds, "replica unreachable"
                )
            else:
                required = max(self._required.get(code_id, 0), self._required_all)
                current = replayed is None or replayed >= required
                if found.target is not None and current:
                    self.lookups["replica"] += 1
                    return found
                if found.target is None and not self.state.standby:
                    self.lookups["replica"] += 1
                    return found  # no standby (PgBouncer before the primary): its miss is the truth
        self.lookups["primary"] += 1
        return await queries.lookup_target(self.primary, code_id, timeout=self._timeout)

    # -- changes -----------------------------------------------------------------------------------

    def changed(self, payload: str) -> None:
        """Called by the change listener for every notification of a change (new codes only need
        nothing: a miss on the replica asks the primary), before the cache is marked stale."""
        if payload == FLUSH_ALL:
            self._pending_all += 1
        else:
            self._pending.add(payload)
        if self._positions is None or self._positions.done():
            self._positions = asyncio.get_running_loop().create_task(self._note_positions())

    async def _note_positions(self) -> None:
        """One read of the primary's position for every change noted since the last read (a bulk
        change of thousands is a few queries, not thousands)."""
        while self._pending or self._pending_all:
            ids, flushes = set(self._pending), self._pending_all
            try:
                async with self.primary.acquire(timeout=self._timeout) as connection:
                    position = int(await connection.fetchval(queries.PRIMARY_POSITION, timeout=self._timeout))
            except FAULTS:
                await asyncio.sleep(CHECK_INTERVAL)  # the primary away: these stay with it meanwhile
                continue
            for code_id in ids:
                self._required[code_id] = max(self._required.get(code_id, 0), position)
            self._pending -= ids
            if flushes:
                self._required_all = max(self._required_all, position)
                self._pending_all -= flushes

    # -- the watch ---------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            self.state = await self._check()
            await asyncio.sleep(CHECK_INTERVAL)

    async def _check(self) -> ReplicaState:
        try:
            async with self._replica().acquire(timeout=self._timeout) as connection:
                row = await connection.fetchrow(queries.REPLICA_STATE, timeout=self._timeout)
        except FAULTS as exc:
            return ReplicaState(None, False, None, f"replica unreachable ({type(exc).__name__})")
        assert row is not None
        if not row["standby"]:
            return ReplicaState(False, True, 0.0, None)
        replayed = row["replayed"]
        try:
            async with self.primary.acquire(timeout=self._timeout) as connection:
                position = int(await connection.fetchval(queries.PRIMARY_POSITION, timeout=self._timeout))
        except FAULTS:
            position = None  # the primary away: the replica is all there is
        now = time.monotonic()
        if position is not None:
            self._history.append((now, position))
        if position is not None and replayed is not None and replayed >= position:
            lag = 0.0
        elif replayed is not None and self._history:
            # As current as the primary was at the last moment it stood at or before the replay
            # position (the primary writes WAL between commits too, so "behind the primary's
            # position" alone is no lag).
            caught_up = [moment for moment, at in self._history if at <= replayed]
            lag = now - (max(caught_up) if caught_up else self._history[0][0])
        else:
            age = row["replay_age"]
            lag = float(age) if age is not None else math.inf
        # Positions the replica has replayed past are kept no longer.
        if replayed is not None:
            self._required = {k: v for k, v in self._required.items() if v > replayed}
        if lag > self.max_lag:
            return ReplicaState(
                True, False, lag, f"replica {lag:.1f} s behind (REPLICA_MAX_LAG_SECONDS {self.max_lag:g})"
            )
        return ReplicaState(True, True, lag, None)
