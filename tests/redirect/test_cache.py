from __future__ import annotations

from services.redirect.cache import NOT_FOUND, LookupCache, Target


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(n: int = 0) -> Target:
    return Target(location=f"https://example.org/{n}".encode(), status=302, enabled=True, expires_at=None)


def test_entries_expire_and_negative_entries_expire_sooner() -> None:
    clock = Clock()
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=clock)
    cache.put("found", target())
    cache.put("unknown", NOT_FOUND)
    assert cache.get("found") == target()
    assert cache.get("unknown") is NOT_FOUND
    clock.now += 6
    assert cache.get("unknown") is None
    assert cache.get("found") == target()
    clock.now += 60
    assert cache.get("found") is None


def test_size_is_bounded_least_recently_used_first() -> None:
    cache = LookupCache(max_entries=3, ttl=60, negative_ttl=5, clock=Clock())
    for n in range(3):
        cache.put(f"k{n}", target(n))
    assert cache.get("k0") is not None  # now the most recently used
    cache.put("k3", target(3))
    assert len(cache) == 3
    assert cache.get("k1") is None
    assert cache.get("k0") is not None
    assert cache.get("k3") is not None


def test_a_value_read_before_an_eviction_is_not_stored() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    epoch = cache.epoch  # a lookup starts ...
    cache.evict("k")  # ... a change notification arrives while it runs ...
    cache.put("k", target(), epoch=epoch)  # ... and its (stale) answer must be dropped
    assert cache.get("k") is None
    cache.put("k", target(), epoch=cache.epoch)
    assert cache.get("k") == target()


def test_clear_and_evict() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    cache.put("a", target())
    cache.put("b", target())
    cache.evict("a")
    assert cache.get("a") is None
    assert cache.get("b") is not None
    cache.clear()
    assert len(cache) == 0


def test_target_liveness() -> None:
    assert target().is_live(0)
    assert not Target(b"x", 302, enabled=False, expires_at=None).is_live(0)
    assert Target(b"x", 302, enabled=True, expires_at=100).is_live(99.9)
    assert not Target(b"x", 302, enabled=True, expires_at=100).is_live(100)


def test_a_code_found_under_other_spellings_is_evicted_under_all_of_them() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    menu = Target(b"https://example.org/", 302, code_id="Menu")
    for spelling in ("Menu", "menu", "MENU"):
        cache.put(spelling, menu)
    cache.put("other", Target(b"https://example.org/o", 302, code_id="other"))
    cache.put("MeNu2", NOT_FOUND)
    assert cache.get("MeNu2") is NOT_FOUND
    cache.evict("Menu")
    assert [cache.get(s) for s in ("Menu", "menu", "MENU")] == [None, None, None]
    assert cache.get("other") is not None
    cache.evict("menu2")  # the code made meanwhile: no spelling stays unknown
    assert cache.get("MeNu2") is None
    assert cache.stats().evictions == {"notify": 3}


def test_capacity_evictions_forget_the_other_spellings_too() -> None:
    cache = LookupCache(max_entries=2, ttl=60, negative_ttl=5, clock=Clock())
    for n in range(50):
        cache.put(f"CODE{n}", Target(b"x", 302, code_id=f"code{n}"))
    assert len(cache) == 2
    assert len(cache._spellings) == 2  # bounded with the entries
    for n in range(5000):
        cache.put(f"GONE{n}", NOT_FOUND)
    assert len(cache._spellings) == 2 + cache.max_missing
