from __future__ import annotations

import math
import re
from collections import Counter

import pytest

from shared import ids


def test_generated_ids_are_url_safe_unambiguous_and_long_enough() -> None:
    assert ids.ID_BITS >= 40
    for ch in "01ilo":  # the symbols people confuse on paper
        assert ch not in ids.ALPHABET
    sample = [ids.new_id() for _ in range(20_000)]
    assert len(set(sample)) == len(sample)
    pattern = re.compile(f"[{ids.ALPHABET}]{{{ids.ID_LENGTH}}}")
    assert all(pattern.fullmatch(code) for code in sample)
    assert all(ids.is_well_formed(code) and ids.slug_problem(code) is None for code in sample[:100])


def test_generated_ids_use_the_whole_alphabet_evenly() -> None:
    # A chi-squared test per position would be stricter; a coarse bound catches a broken generator
    # (a constant, a missing symbol, a modulo bias towards the first symbols).
    counts = Counter("".join(ids.new_id() for _ in range(20_000)))
    expected = 20_000 * ids.ID_LENGTH / len(ids.ALPHABET)
    assert set(counts) == set(ids.ALPHABET)
    assert all(abs(n - expected) < 6 * math.sqrt(expected) for n in counts.values())


@pytest.mark.parametrize(
    "value",
    [
        "ab",
        "a" * 65,
        "",
        "has space",
        "slash/es",
        "dot.ted",
        "pct%2F",
        "ünï",
        "new\nline",
        "../etc",
        "a\x00b",
    ],
)
def test_malformed_ids_are_refused(value: str) -> None:
    assert not ids.is_well_formed(value)
    assert ids.slug_problem(value) is not None


@pytest.mark.parametrize("value", ["abc", "Spring-Menu_2027", "x" * 64, "A1-_"])
def test_slugs(value: str) -> None:
    assert ids.slug_problem(value) is None


@pytest.mark.parametrize("value", ["api", "health", "Metrics", "ADMIN", "static"])
def test_reserved_slugs_are_refused(value: str) -> None:
    assert "reserved" in (ids.slug_problem(value) or "")
