from __future__ import annotations

import asyncio

import pytest

from services.redirect.cache import LookupCache, Target
from services.redirect.resolver import Resolver
from shared.errors import Unavailable

pytestmark = pytest.mark.anyio

TARGET = Target(location=b"https://example.org/", status=302, enabled=True, expires_at=None)


def make_cache() -> LookupCache:
    return LookupCache(max_entries=100, ttl=60, negative_ttl=5)


async def test_concurrent_misses_for_one_id_make_one_query() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def fetch(code_id: str) -> Target | None:
        calls.append(code_id)
        await release.wait()
        return TARGET

    resolver = Resolver(make_cache(), fetch)
    waiters = [asyncio.create_task(resolver.resolve("abc")) for _ in range(100)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiters) == [TARGET] * 100
    assert calls == ["abc"]
    assert await resolver.resolve("abc") == TARGET  # from the cache now
    assert calls == ["abc"]


async def test_unknown_ids_are_remembered_briefly() -> None:
    calls: list[str] = []

    async def fetch(code_id: str) -> Target | None:
        calls.append(code_id)
        return None

    resolver = Resolver(make_cache(), fetch)
    assert await resolver.resolve("nope") is None
    assert await resolver.resolve("nope") is None
    assert calls == ["nope"]


async def test_a_database_fault_is_unavailable_not_unknown_and_not_cached() -> None:
    failing = True

    async def fetch(code_id: str) -> Target | None:
        if failing:
            raise ConnectionRefusedError("database down")
        return TARGET

    resolver = Resolver(make_cache(), fetch)
    with pytest.raises(Unavailable):
        await resolver.resolve("abc")
    failing = False
    assert await resolver.resolve("abc") == TARGET


async def test_a_caller_going_away_does_not_cancel_the_lookup_for_others() -> None:
    release = asyncio.Event()

    async def fetch(code_id: str) -> Target | None:
        await release.wait()
        return TARGET

    resolver = Resolver(make_cache(), fetch)
    impatient = asyncio.create_task(resolver.resolve("abc"))
    patient = asyncio.create_task(resolver.resolve("abc"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    release.set()
    assert await patient == TARGET
    with pytest.raises(asyncio.CancelledError):
        await impatient
