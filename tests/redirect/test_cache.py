from __future__ import annotations

from services.redirect.answers import CodeAnswer
from services.redirect.cache import NOT_FOUND, LookupCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(n: int = 0) -> CodeAnswer:
    return CodeAnswer(location=f"https://example.org/{n}".encode(), status=302, enabled=True, expires_at=None)


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


def test_a_value_read_before_a_change_is_not_stored() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    epoch = cache.epoch  # a lookup starts ...
    cache.mark_stale("k")  # ... a change notification arrives while it runs ...
    cache.put("k", target(), epoch=epoch)  # ... and its (old) answer must be no answer
    assert cache.get("k") is None
    assert cache.get_stale("k") == target()  # (but better than nothing in an outage)
    cache.put("u", NOT_FOUND, epoch=epoch)
    assert cache.get("u") is None
    cache.put("k", target(), epoch=cache.epoch)
    assert cache.get("k") == target()
    for change in (cache.mark_all_stale, cache.forget_unknown):
        epoch = cache.epoch
        change()
        cache.put("k", target(1), epoch=epoch)
        assert cache.get_stale("k") == target()


def test_a_change_marks_the_code_stale_without_dropping_it() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    cache.put("a", target(1))
    cache.put("b", target(2))
    cache.mark_stale("a")
    assert cache.get("a") is None  # looked up again before it answers ...
    assert cache.get_stale("a") == target(1)  # ... and answers meanwhile if that lookup fails
    assert cache.get("b") == target(2)
    assert len(cache) == 2
    cache.put("a", target(3))  # the lookup succeeded: replaced at once
    assert cache.get("a") == target(3)
    assert cache.stats().evictions == {"notify": 1}


def test_a_flush_marks_every_entry_stale_and_forgets_unknown_ids() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    cache.put("a", target(1))
    cache.put("b", target(2))
    cache.put("nope", NOT_FOUND)
    cache.mark_all_stale()
    assert [cache.get(k) for k in ("a", "b", "nope")] == [None, None, None]
    assert [cache.get_stale(k) for k in ("a", "b")] == [target(1), target(2)]
    assert len(cache) == 2
    cache.put("a", target(1))  # revalidated after the flush: fresh again, the other still stale
    assert cache.get("a") == target(1)
    assert cache.get("b") is None
    assert cache.stats().evictions == {"flush": 2}


def test_new_codes_forget_only_unknown_ids() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    cache.put("a", target(1))
    cache.put("nope", NOT_FOUND)
    cache.forget_unknown()
    assert cache.get("a") == target(1)  # fresh still: a create can only turn a 404 into a code
    assert cache.get("nope") is None
    assert cache.stats().evictions == {}


def test_target_liveness() -> None:
    assert target().is_live(0)
    assert not CodeAnswer(b"x", 302, enabled=False, expires_at=None).is_live(0)
    assert CodeAnswer(b"x", 302, enabled=True, expires_at=100).is_live(99.9)
    assert not CodeAnswer(b"x", 302, enabled=True, expires_at=100).is_live(100)


def spellings(word: str) -> list[str]:
    """Every spelling of ``word`` in upper and lower case."""
    return [
        "".join(c.upper() if n >> i & 1 else c for i, c in enumerate(word.lower()))
        for n in range(2 ** len(word))
    ]


def test_every_spelling_of_an_id_shares_one_entry() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    menu = CodeAnswer(b"https://example.org/", 302, code_id="Menu")
    cache.put("mEnU", menu)
    assert len(spellings("menu")) == 16
    assert all(cache.get(s) == menu for s in spellings("menu"))
    assert len(cache) == 1
    cache.put("MeNu2", NOT_FOUND)
    assert all(cache.get(s) is NOT_FOUND for s in spellings("menu2"))
    assert len(cache._missing) == 1
    cache.mark_stale("Menu")  # the notification carries the id as stored
    assert all(cache.get(s) is None for s in spellings("menu"))
    assert cache.get_stale("MENU") == menu
    cache.mark_stale("menu2")  # the code made meanwhile: no spelling stays unknown
    assert cache.get("MeNu2") is None
    assert cache.stats().evictions == {"notify": 1}


def test_an_id_shared_by_codes_of_another_case_is_kept_per_spelling() -> None:
    cache = LookupCache(max_entries=10, ttl=60, negative_ttl=5, clock=Clock())
    first = CodeAnswer(b"https://example.org/first", 302, code_id="Poster")
    second = CodeAnswer(b"https://example.org/second", 302, code_id="poster")
    cache.put("Poster", first, shared=True)
    cache.put("poster", second, shared=True)
    cache.put("POSTER", NOT_FOUND, shared=True)  # a deleted code's own spelling
    assert (cache.get("Poster"), cache.get("poster"), cache.get("POSTER")) == (first, second, NOT_FOUND)
    assert cache.get("pOsTeR") is None  # not asked yet: its own lookup
    assert cache.spelling_matters("POSTer")
    cache.mark_stale("poster")
    assert (cache.get("Poster"), cache.get("poster"), cache.get("POSTER")) == (None, None, None)
    assert (cache.get_stale("Poster"), cache.get_stale("poster")) == (first, second)
    cache.put("Poster", first)  # no longer shared (a restore): one entry for every spelling again
    assert (cache.get("poster"), cache.get("POSTER")) == (first, first)
    assert len(cache) == 1
    assert not cache.spelling_matters("poster")


def test_capacity_evictions_forget_the_other_spellings_too() -> None:
    cache = LookupCache(max_entries=2, ttl=60, negative_ttl=5, clock=Clock())
    for n in range(50):
        cache.put(f"CODE{n}", CodeAnswer(b"x", 302, code_id=f"code{n}"), shared=True)
    assert len(cache) == 2
    assert len(cache._spellings) == 2  # bounded with the entries
    for n in range(5000):
        cache.put(f"GONE{n}", NOT_FOUND, shared=True)
    assert len(cache._spellings) == 2 + cache.max_missing
    cache.mark_all_stale()
    assert len(cache._spellings) == 2


def test_a_stale_entry_keeps_its_place_until_the_bound_pushes_it_out() -> None:
    cache = LookupCache(max_entries=2, ttl=60, negative_ttl=5, clock=Clock())
    cache.put("a", target(1))
    cache.put("b", target(2))
    cache.mark_stale("b")
    cache.put("c", target(3))  # room for it: the least recently used goes, stale or not
    assert cache.get_stale("a") is None
    assert cache.get_stale("b") == target(2)
