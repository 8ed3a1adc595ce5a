from __future__ import annotations

import asyncio

import pytest

from services.redirect.answers import CodeAnswer, Found
from services.redirect.cache import NOT_FOUND, LookupCache
from services.redirect.resolver import Resolver
from shared.errors import Unavailable

pytestmark = pytest.mark.anyio


async def ask(resolver: Resolver, code_id: str) -> CodeAnswer | None:
    """What the endpoint does: the cache inline, the resolver on a miss."""
    cached = resolver.cache.get(code_id)
    if isinstance(cached, CodeAnswer):
        return cached
    if cached is NOT_FOUND:
        return None
    target, _stale = await resolver.load(code_id)
    return target


TARGET = CodeAnswer(location=b"https://example.org/", status=302, enabled=True, expires_at=None)


def make_cache() -> LookupCache:
    return LookupCache(max_entries=100, ttl=60, negative_ttl=5)


async def test_concurrent_misses_for_one_id_make_one_query() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def fetch(code_id: str) -> Found:
        calls.append(code_id)
        await release.wait()
        return Found(TARGET)

    resolver = Resolver(make_cache(), fetch)
    waiters = [asyncio.create_task(ask(resolver, "abc")) for _ in range(100)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiters) == [TARGET] * 100
    assert calls == ["abc"]
    assert await ask(resolver, "abc") == TARGET  # from the cache now
    assert calls == ["abc"]


async def test_unknown_ids_are_remembered_briefly() -> None:
    calls: list[str] = []

    async def fetch(code_id: str) -> Found:
        calls.append(code_id)
        return Found(None)

    resolver = Resolver(make_cache(), fetch)
    assert await ask(resolver, "nope") is None
    assert await ask(resolver, "nope") is None
    assert calls == ["nope"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_database_fault_is_unavailable_not_unknown_and_not_cached() -> None:
    failing = True
    calls = 0

    async def fetch(code_id: str) -> Found:
        nonlocal calls
        calls += 1
        if failing:
            raise ConnectionRefusedError("database down")
        return Found(TARGET)

    clock = Clock()
    resolver = Resolver(make_cache(), fetch, cooldown=1.0, clock=clock)
    with pytest.raises(Unavailable):
        await ask(resolver, "abc")
    failing = False
    # Within the cooldown the database is not asked again: the answer comes at once.
    with pytest.raises(Unavailable):
        await ask(resolver, "abc")
    assert calls == 1
    clock.now += 1.0
    assert await ask(resolver, "abc") == TARGET
    assert calls == 2


async def test_stale_entries_answer_while_the_database_fails() -> None:
    failing = False
    calls = 0

    async def fetch(code_id: str) -> Found:
        nonlocal calls
        calls += 1
        if failing:
            raise TimeoutError
        return Found(TARGET if code_id == "known" else None)

    cache_clock, breaker_clock = Clock(), Clock()
    cache = LookupCache(max_entries=100, ttl=60, negative_ttl=5, clock=cache_clock)
    resolver = Resolver(cache, fetch, cooldown=2.0, clock=breaker_clock)
    assert await ask(resolver, "known") == TARGET
    assert await ask(resolver, "unknown") is None
    cache_clock.now += 3600  # every entry expired
    failing = True
    assert await ask(resolver, "known") == TARGET  # stale, after one failed attempt
    assert resolver.stale_served == 1
    assert await ask(resolver, "known") == TARGET  # stale at once: the breaker is open
    assert calls == 3
    with pytest.raises(Unavailable):  # a stale "unknown" is no answer
        await ask(resolver, "unknown")
    failing = False
    breaker_clock.now += 2.0
    assert await ask(resolver, "known") == TARGET
    assert calls == 4
    assert cache.get("known") == TARGET  # fresh again


async def test_a_caller_going_away_does_not_cancel_the_lookup_for_others() -> None:
    release = asyncio.Event()

    async def fetch(code_id: str) -> Found:
        await release.wait()
        return Found(TARGET)

    resolver = Resolver(make_cache(), fetch)
    impatient = asyncio.create_task(ask(resolver, "abc"))
    patient = asyncio.create_task(ask(resolver, "abc"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    release.set()
    assert await patient == TARGET
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_change_during_a_lookup_is_not_answered_with_the_old_value() -> None:
    release = asyncio.Event()
    answers = iter([TARGET, CodeAnswer(location=b"https://example.org/new", status=302)])

    async def fetch(code_id: str) -> Found:
        await release.wait()
        return Found(next(answers))

    resolver = Resolver(make_cache(), fetch)
    before = asyncio.create_task(ask(resolver, "abc"))
    await asyncio.sleep(0.01)
    resolver.cache.mark_stale("abc")  # a change notification while the first lookup runs
    after = asyncio.create_task(ask(resolver, "abc"))  # must not join the old lookup
    await asyncio.sleep(0.01)
    release.set()
    assert (await before).location == b"https://example.org/"
    assert (await after).location == b"https://example.org/new"


def test_a_flood_of_unknown_ids_cannot_push_out_known_codes() -> None:
    cache = LookupCache(max_entries=100, ttl=60, negative_ttl=5)
    for n in range(100):
        cache.put(f"code{n}", TARGET)
    for n in range(10_000):
        cache.put(f"random{n}", NOT_FOUND)
    assert len(cache) == 100
    assert all(cache.get(f"code{n}") == TARGET for n in range(100))
    assert cache.get("random9999") is NOT_FOUND
    assert cache.get("random0") is None  # the unknown ids' own bound (a tenth) pushed that out


async def test_sixteen_spellings_of_an_id_make_one_query_and_one_entry() -> None:
    calls: list[str] = []
    release = asyncio.Event()
    menu = CodeAnswer(location=b"https://example.org/menu", status=302, code_id="Menu")

    async def fetch(code_id: str) -> Found:
        calls.append(code_id)
        await release.wait()
        return Found(menu)

    resolver = Resolver(make_cache(), fetch)
    spellings = ["".join(c.upper() if n >> i & 1 else c for i, c in enumerate("menu")) for n in range(16)]
    assert len(set(spellings)) == 16
    waiters = [asyncio.create_task(ask(resolver, spelling)) for spelling in spellings]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiters) == [menu] * 16
    assert len(calls) == 1
    assert len(resolver.cache) == 1
    assert [await ask(resolver, spelling) for spelling in spellings] == [menu] * 16  # from the cache
    assert len(calls) == 1


async def test_an_id_shared_by_codes_of_another_case_is_answered_per_spelling() -> None:
    # Codes made before ids were case-insensitive: Poster and poster, the oldest (Poster) for the rest.
    codes = {
        spelling: CodeAnswer(
            location=f"https://example.org/{spelling}".encode(), status=302, code_id=spelling
        )
        for spelling in ("Poster", "poster")
    }
    calls: list[str] = []
    release = asyncio.Event()

    async def fetch(code_id: str) -> Found:
        calls.append(code_id)
        await release.wait()
        return Found(codes.get(code_id, codes["Poster"]), shared=True)

    resolver = Resolver(make_cache(), fetch)
    asked = ["Poster", "poster", "POSTER"]
    waiters = [asyncio.create_task(ask(resolver, spelling)) for spelling in asked]
    await asyncio.sleep(0.01)
    release.set()
    answers = await asyncio.gather(*waiters)
    assert [a.code_id if a else None for a in answers] == ["Poster", "poster", "Poster"]
    assert sorted(calls) == sorted(asked)  # each spelling its own query ...
    assert [(await ask(resolver, s) or TARGET).code_id for s in asked] == ["Poster", "poster", "Poster"]
    assert len(calls) == 3  # ... and its own entry
    resolver.cache.mark_stale("Poster")  # a change of either code: every spelling is asked again
    assert all(resolver.cache.get(s) is None for s in asked)


async def test_a_changed_code_keeps_answering_while_its_lookup_fails_and_is_replaced_when_it_succeeds() -> (
    None
):
    failing = False
    current = TARGET

    async def fetch(code_id: str) -> Found:
        if failing:
            raise ConnectionRefusedError("database down")
        return Found(current)

    cache = make_cache()
    breaker = Clock()
    resolver = Resolver(cache, fetch, cooldown=1.0, clock=breaker)
    assert await ask(resolver, "abc") == TARGET
    cache.mark_stale("abc")  # edited: the notification came, then the database went away
    failing = True
    assert await ask(resolver, "abc") == TARGET  # the previous target rather than a 503
    assert resolver.stale_served == 1
    cache.mark_all_stale()  # the listener reconnected meanwhile
    assert await ask(resolver, "abc") == TARGET
    failing, current = False, CodeAnswer(location=b"https://example.org/new", status=302)
    breaker.now += 1.0
    assert await ask(resolver, "abc") == current  # the database back: the edit at once
    assert cache.get("abc") == current
