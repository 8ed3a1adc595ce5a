"""The redirect rules' evaluator (shared/rules.py), as both services run it: real agents and
Accept-Language headers, query strings, and frozen moments on both sides of each window, a change of
Paris's clocks included. The moment is the scan's own (an argument), never the process's clock."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.rules import DEFAULT, Scan, best_language, compile_rules, device_of
from tests.agents import ANDROID, FIREFOX, GOOGLEBOT, IPHONE

IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
MAC_SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
LINUX_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
CURL = "curl/8.5.0"

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("agent", "device"),
    [
        (IPHONE, "ios"),
        (IPAD, "ios"),
        (ANDROID, "android"),
        (FIREFOX, "desktop"),
        (MAC_SAFARI, "desktop"),
        (LINUX_CHROME, "desktop"),
        (GOOGLEBOT, "other"),
        (CURL, "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_devices_from_real_agents(agent: str | None, device: str) -> None:
    assert device_of(agent) == device


@pytest.mark.parametrize(
    ("header", "best"),
    [
        ("de-CH,de;q=0.9", "de-ch"),
        ("fr-BE", "fr-be"),
        ("*", None),
        ("", None),
        (None, None),
        ("en;q=0.5, fr;q=0.8", "fr"),
        ("da, en-gb;q=0.8, en;q=0.7", "da"),
        ("de;q=0, en;q=0.1", "en"),  # q=0 means "not this"
        ("xx;q=abc, it", "it"),
        (",,;;", None),
    ],
)
def test_the_best_language_of_accept_language(header: str | None, best: str | None) -> None:
    assert best_language(header) == best


def paris(*parts: int) -> float:
    return datetime(*parts, tzinfo=PARIS).timestamp()  # type: ignore[arg-type, misc]


RULES: list[dict[str, Any]] = [
    {"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"},
    {"if": {"device": ["android"]}, "target_url": "https://play.google.com/store/apps/details?id=x"},
    {"if": {"language": ["de"]}, "target_url": "https://example.de/menu"},
    {"if": {"language": ["fr-CA"]}, "target_url": "https://example.ca/menu"},
    {"if": {"country": ["FR", "be"]}, "target_url": "https://example.fr/menu"},
    {"if": {"query": {"src": "poster", "lang": ["a", "b"]}}, "target_url": "https://example.org/poster"},
    {
        "if": {"weekdays": ["sat", "sun"], "hours": ["10:00", "16:00"], "tz": "Europe/Paris"},
        "target_url": "https://example.org/brunch",
    },
    {"if": {"hours": ["22:00", "02:00"], "tz": "Europe/Paris"}, "target_url": "https://example.org/night"},
    {
        "if": {"between": ["2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z"]},
        "target_url": "https://example.org/xmas",
    },
]
TUESDAY_NOON = paris(2026, 12, 1, 12, 0)


@pytest.mark.parametrize(
    ("scan", "served"),
    [
        (Scan(TUESDAY_NOON, device="ios", language="de-ch"), "rule 1"),  # the first that holds wins
        (Scan(TUESDAY_NOON, device="android"), "rule 2"),
        (Scan(TUESDAY_NOON, device="desktop", language="de-ch"), "rule 3"),  # by primary tag
        (Scan(TUESDAY_NOON, device="desktop", language="de"), "rule 3"),
        (Scan(TUESDAY_NOON, device="desktop", language="fr-ca"), "rule 4"),  # the whole tag
        (Scan(TUESDAY_NOON, device="desktop", language="fr"), DEFAULT),  # fr is not fr-CA
        (Scan(TUESDAY_NOON, language="fr-be", country="BE"), "rule 5"),
        (Scan(TUESDAY_NOON, country="FR"), "rule 5"),
        (Scan(TUESDAY_NOON, country="DE"), DEFAULT),
        (Scan(TUESDAY_NOON, query={"src": ["poster"], "lang": ["b"]}), "rule 6"),
        (Scan(TUESDAY_NOON, query={"src": ["poster"]}), DEFAULT),  # every name given must hold
        (Scan(TUESDAY_NOON, query={"src": ["Poster"], "lang": ["a"]}), DEFAULT),  # exact values
        (Scan(TUESDAY_NOON, query={"src": ["x", "poster"], "lang": ["a"]}), "rule 6"),
        # Saturday in Paris, either side of 10:00 and 16:00.
        (Scan(paris(2026, 12, 5, 9, 59)), DEFAULT),
        (Scan(paris(2026, 12, 5, 10, 0)), "rule 7"),
        (Scan(paris(2026, 12, 5, 15, 59)), "rule 7"),
        (Scan(paris(2026, 12, 5, 16, 0)), DEFAULT),
        (Scan(paris(2026, 12, 4, 11, 0)), DEFAULT),  # a Friday
        # Sunday 29 March 2026: Paris goes from 02:00 CET to 03:00 CEST. 10:00 local is 08:00 UTC
        # that day, 09:00 UTC the day before.
        (Scan(datetime(2026, 3, 29, 7, 59, tzinfo=UTC).timestamp()), DEFAULT),
        (Scan(datetime(2026, 3, 29, 8, 0, tzinfo=UTC).timestamp()), "rule 7"),
        (Scan(datetime(2026, 3, 28, 8, 30, tzinfo=UTC).timestamp()), DEFAULT),
        (Scan(datetime(2026, 3, 28, 9, 0, tzinfo=UTC).timestamp()), "rule 7"),
        (Scan(datetime(2026, 3, 29, 13, 59, tzinfo=UTC).timestamp()), "rule 7"),
        (Scan(datetime(2026, 3, 29, 14, 0, tzinfo=UTC).timestamp()), DEFAULT),
        # The October change: 25 October 2026, 03:00 CEST is 02:00 CET again; 16:00 is 15:00 UTC.
        (Scan(datetime(2026, 10, 25, 14, 59, tzinfo=UTC).timestamp()), "rule 7"),
        (Scan(datetime(2026, 10, 25, 15, 0, tzinfo=UTC).timestamp()), DEFAULT),
        # A window past midnight: [22:00, 02:00) on a Tuesday.
        (Scan(paris(2026, 12, 1, 21, 59)), DEFAULT),
        (Scan(paris(2026, 12, 1, 22, 0)), "rule 8"),
        (Scan(paris(2026, 12, 2, 1, 59)), "rule 8"),
        (Scan(paris(2026, 12, 2, 2, 0)), DEFAULT),
        # between: [start, end).
        (Scan(datetime(2026, 12, 23, 23, 59, 59, tzinfo=UTC).timestamp()), "rule 8"),  # 00:59 in Paris
        (Scan(datetime(2026, 12, 24, 9, 0, tzinfo=UTC).timestamp()), "rule 9"),
        (Scan(datetime(2026, 12, 26, 23, 59, 59, 999000, tzinfo=UTC).timestamp()), "rule 8"),  # night first
        (Scan(datetime(2026, 12, 26, 20, 0, tzinfo=UTC).timestamp()), "rule 9"),
        (Scan(datetime(2026, 12, 28, 9, 0, tzinfo=UTC).timestamp()), DEFAULT),
    ],
)
def test_the_first_rule_that_holds_serves(scan: Scan, served: str) -> None:
    rules = compile_rules(RULES, None)
    assert rules is not None
    assert rules.choose("menu", scan, b"")[0] == served


@pytest.mark.parametrize(
    ("moment", "held"),
    [
        (datetime(2026, 12, 23, 23, 59, 59, 999000, tzinfo=UTC), False),
        (datetime(2026, 12, 24, tzinfo=UTC), True),
        (datetime(2026, 12, 26, 23, 59, 59, 999000, tzinfo=UTC), True),
        (datetime(2026, 12, 27, tzinfo=UTC), False),
    ],
)
def test_between_is_start_to_end_excluded(moment: datetime, held: bool) -> None:
    rules = compile_rules([RULES[-1]], None)
    assert rules is not None
    assert (rules.first_rule(Scan(moment.timestamp())) == 0) is held


def test_a_fifty_fifty_split_over_two_thousand_visitors_is_even_and_sticky() -> None:
    rules = compile_rules(
        [{"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"}],
        [
            {"target_url": "https://example.org/a", "weight": 50},
            {"target_url": "https://example.org/b", "weight": 50},
        ],
    )
    assert rules is not None
    visitors = [hashlib.blake2b(str(n).encode(), digest_size=16).digest() for n in range(2000)]
    served = [rules.choose("menu", Scan(TUESDAY_NOON), visitor) for visitor in visitors]
    shares = Counter(label for label, _ in served)
    assert set(shares) == {"variant a", "variant b"}
    assert 900 <= shares["variant a"] <= 1100, shares
    assert served == [rules.choose("menu", Scan(TUESDAY_NOON + 3600), visitor) for visitor in visitors]
    # A rule that holds comes before the split.
    assert rules.choose("menu", Scan(TUESDAY_NOON, device="ios"), visitors[0])[0] == "rule 1"


def test_weights_set_the_shares() -> None:
    rules = compile_rules(
        None,
        [
            {"target_url": "https://example.org/a", "weight": 1},
            {"target_url": "https://example.org/b", "weight": 3},
        ],
    )
    assert rules is not None
    shares = Counter(rules.variant("menu", n.to_bytes(4, "big")) for n in range(4000))
    assert 850 <= shares[0] <= 1150, shares


def test_no_rules_and_no_split_compile_to_nothing() -> None:
    assert compile_rules([], None) is None
    assert compile_rules(None, []) is None


@pytest.mark.parametrize(
    "rules",
    [
        [{"if": {}, "target_url": "https://example.org/"}],
        [{"if": {"tz": "Europe/Paris"}, "target_url": "https://example.org/"}],
        [{"if": {"colour": ["red"]}, "target_url": "https://example.org/"}],
        [{"if": {"device": "ios"}, "target_url": "https://example.org/"}],
        [{"if": {"hours": ["10:00"]}, "target_url": "https://example.org/"}],
        [{"if": {"weekdays": ["someday"]}, "target_url": "https://example.org/"}],
        [{"if": {"hours": ["10:00", "11:00"], "tz": "Mars/Olympus"}, "target_url": "https://example.org/"}],
        [{"target_url": "https://example.org/"}],
        [{"if": {"device": ["ios"]}}],
    ],
)
def test_json_of_another_shape_is_refused(rules: list[dict[str, Any]]) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        compile_rules(rules, None)
