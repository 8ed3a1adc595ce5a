"""Cache invalidation: a dedicated connection LISTENs on ``qr_changed`` and acts at once.

The payload is a code id (its entries are marked stale), or ``*`` for "anything may have changed"
(after a restore or a statement that changed several codes: every entry is marked stale). A bulk
create sends ``+`` just before the ``*`` of its rows (a transaction's notifications arrive
together, in order): that ``*`` is new codes only, and only the unknown-id entries go.
Notifications sent while the connection was down are lost, so every (re)connect marks every entry
stale; the entries' TTL bounds staleness while the connection is down. Stale, not dropped: an
entry is looked up again before it answers, and keeps answering while the database cannot (see
:mod:`services.redirect.cache`).
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
from shared.database import CHANGE_CHANNEL, FLUSH_ALL, NEW_CODES, STOPPED

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
        self.received: Counter[str] = Counter()  # notifications: "id", "all", "new" (codes), "stopped"
        self._announced_by: int | None = None  # the backend whose NEW_CODES came last

    def stats(self) -> ListenerStats:
        return ListenerStats(self.connected.is_set(), self.reconnects, dict(self.received))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="qr-change-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_notify(self, _conn: object, pid: int, _channel: str, payload: object) -> None:
        announced_by, self._announced_by = self._announced_by, None
        if payload == NEW_CODES:
            self._announced_by = pid
            return
        if payload == FLUSH_ALL and announced_by == pid:
            # The rows of a bulk create: unknown ids may be codes now, nothing else changed (and a
            # replica's answers for other codes are as current as they were).
            self.received["new"] += 1
            self._cache.forget_unknown()
            return
        text = str(payload)
        if text.startswith(STOPPED):
            # Deleted or switched off: forgotten, never answered from memory again.
            self.received["stopped"] += 1
            self._cache.forget(text[len(STOPPED) :])
            return
        if self._on_change is not None:
            self._on_change(text)
        if payload == FLUSH_ALL:
            self.received["all"] += 1
            self._cache.mark_all_stale()
        else:
            self.received["id"] += 1
            self._cache.mark_stale(str(payload))

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
                self._announced_by = None
                if self._on_change is not None:
                    self._on_change(FLUSH_ALL)  # changes missed while away: as after a flush
                self._cache.mark_all_stale()
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
    received: dict[str, int]  # notifications by kind: "id", "all" or "new"
