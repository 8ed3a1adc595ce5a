"""Cache invalidation: a dedicated connection LISTENs on ``qr_changed`` and evicts at once.

The payload is a code id, or ``*`` for "flush everything" (after a restore or a bulk change).
Notifications sent while the connection was down are lost, so every (re)connect flushes the whole
cache; the entries' TTL bounds staleness while the connection is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from services.redirect.cache import LookupCache
from shared.database import CHANGE_CHANNEL, FLUSH_ALL

log = logging.getLogger(__name__)

APPLICATION_NAME = "qr-redirect-listener"  # how an operator finds these connections in pg_stat_activity


def _set_event(event: asyncio.Event, _connection: object) -> None:
    event.set()


class ChangeListener:
    def __init__(
        self,
        dsn: str,
        cache: LookupCache,
        *,
        on_change: Callable[[str], None] | None = None,
        connect_timeout: float = 5.0,
        probe_interval: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._cache = cache
        self._on_change = on_change  # told first of every change (the replica routing)
        self._connect_timeout = connect_timeout
        self._probe_interval = probe_interval
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.received: Counter[str] = Counter()  # notifications: "id" or "all"

    def stats(self) -> ListenerStats:
        return ListenerStats(self.connected.is_set(), self.reconnects, dict(self.received))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="qr-change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if self._on_change is not None:
            self._on_change(str(payload))
        if payload == FLUSH_ALL:
            self.received["all"] += 1
            self._cache.clear()
        else:
            self.received["id"] += 1
            self._cache.evict(str(payload))

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                lost = asyncio.Event()
                connection.add_termination_listener(functools.partial(_set_event, lost))
                await connection.add_listener(CHANGE_CHANNEL, self._on_notify)
                if self._on_change is not None:
                    self._on_change(FLUSH_ALL)  # changes missed while away: as after a flush
                self._cache.clear()
                self.connected.set()
                log.info("listening for changes")
                backoff = 0.1
                # A dead peer is noticed only when we send something: probe now and then.
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self._probe_interval)
                    if not lost.is_set():
                        await connection.fetchval("SELECT 1", timeout=self._connect_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change listener lost its connection: %s", type(exc).__name__)
            finally:
                if self.connected.is_set():
                    self.reconnects += 1
                self.connected.clear()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 1.0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)


@dataclass(frozen=True)
class ListenerStats:
    connected: bool
    reconnects: int  # running totals since the process started
    received: dict[str, int]  # notifications by kind: "id" or "all"
