"""Single flight: concurrent calls for one key share one execution of the work.

The work runs as its own task, so a caller that goes away (a client hanging up) does not cancel
it for the callers still waiting.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> V:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(work())
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(task)

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark it retrieved: nobody may be left waiting to see it
