"""Redirect rules: which destination a scan gets, decided by the code's ``rules`` and ``split``.

One evaluator for both services: the redirect service compiles a code's rules when it loads the
code into its cache and asks them on every scan; the management service asks the same compiled
rules what a made-up scanner would get (``POST /api/v1/qr/{id}/rules/try``). Validation of what a
client sends lives in the management service's schemas; :func:`compile_rules` only trusts that the
stored JSON has the shape those schemas give it, and raises :class:`ValueError` otherwise.

Evaluation: the first rule whose conditions all hold wins (a list inside a condition means any of
its values); otherwise the split picks a variant by weight, sticky per visitor (the visitor's daily
key, hashed with the code id, so that one visitor's variants of two codes are independent);
otherwise the code's own ``target_url``.

What a condition reads, from what a scan brings (:class:`Scan`):

- ``device``: ``ios``, ``android``, ``desktop`` or ``other``, from a few substring tests on the user
  agent (:func:`device_of`; no full parser on the hot path);
- ``language``: the best tag of ``Accept-Language`` (highest quality, the first of equals; ``*`` is
  none), matched by its primary tag (a rule's ``de`` holds for ``de-CH``) or as a whole (``de-CH``);
- ``country``: the ISO code of the client's address from the GeoIP file (none without one);
- ``query``: exact values of the scan's query string (each name given must have one of its values);
- ``weekdays`` and ``hours`` (``[from, until)``, wrapping past midnight when ``until`` is earlier)
  in the rule's ``tz`` (UTC when absent);
- ``between``: ``[start, end)``, two moments with a time zone.

Nothing here imports more than the standard library: the redirect service must start light.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

DEVICES: Final = ("ios", "android", "desktop", "other")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CONDITIONS: Final = ("device", "language", "country", "query", "weekdays", "hours", "tz", "between")
DEFAULT: Final = "default"  # what a scan no rule and no variant served is counted as

# Substrings of a user agent, tested in this order: an iPad asking for the desktop site says
# "Macintosh" and counts as a desktop, as it renders one.
_IOS = ("iPhone", "iPad", "iPod")
_ANDROID = ("Android",)
_DESKTOP = ("Windows NT", "Macintosh", "X11", "CrOS")


@functools.lru_cache(maxsize=4096)  # distinct agents are few; the tests are then one look-up
def device_of(agent: str | None) -> str:
    """``ios``, ``android``, ``desktop`` or ``other`` (bots, scripts, no agent)."""
    if not agent:
        return "other"
    if any(each in agent for each in _IOS):
        return "ios"
    if any(each in agent for each in _ANDROID):
        return "android"
    if any(each in agent for each in _DESKTOP):
        return "desktop"
    return "other"


@functools.lru_cache(maxsize=4096)
def best_language(header: str | None) -> str | None:
    """The tag an ``Accept-Language`` header prefers most, in lower case (``None``: none, or ``*``)."""
    if not header:
        return None
    best, best_quality = None, 0.0
    for part in header[:512].split(","):
        tag, _, parameters = part.partition(";")
        tag = tag.strip().lower()
        quality = 1.0
        parameters = parameters.strip()
        if parameters.startswith("q="):
            try:
                quality = float(parameters[2:7])
            except ValueError:
                continue
        if not tag or tag == "*" or not 0.0 < quality <= 1.0:
            continue
        if quality > best_quality:
            best, best_quality = tag, quality
    return best


NO_QUERY: Final[Mapping[str, Sequence[str]]] = MappingProxyType({})


class Scan(NamedTuple):
    """What the rules may read of a scan: each field is filled only when some rule reads it (a
    tuple: made on every scan of a code with rules, it costs a tenth of a frozen dataclass)."""

    moment: float = 0.0  # Unix time
    device: str = "other"
    language: str | None = None  # from best_language
    country: str | None = None
    query: Mapping[str, Sequence[str]] = NO_QUERY


Test = Callable[[Scan], bool]


@dataclass(frozen=True, slots=True)
class Rule:
    target_url: str
    holds: Test  # all of its conditions, as one call


def _all_of(tests: tuple[Test, ...]) -> Test:
    """One call for a rule's conditions (a call per condition and a loop cost twice as much)."""
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda scan: first(scan) and second(scan)

    def holds(scan: Scan) -> bool:
        for test in tests:  # noqa: SIM110 - all() over a generator costs twice this, per scan
            if not test(scan):
                return False
        return True

    return holds


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A code's rules and split as the evaluator runs them, and what a scan must be asked for."""

    rules: tuple[Rule, ...]
    variants: tuple[str, ...]  # the split's target URLs
    bounds: tuple[int, ...]  # each variant's cumulative weight
    tests: tuple[Test, ...] = ()  # each rule's holds, in order (one attribute read less per rule)
    needs_device: bool = False
    needs_language: bool = False
    needs_country: bool = False
    needs_query: bool = False
    needs_moment: bool = False

    def first_rule(self, scan: Scan) -> int | None:
        """The index of the first rule that holds for ``scan`` (``None``: none does)."""
        for index, holds in enumerate(self.tests):
            if holds(scan):
                return index
        return None

    def variant(self, code_id: str, visitor: bytes) -> int:
        """The split's variant for ``visitor`` (the same all day): by weight, sticky."""
        digest = hashlib.blake2b(code_id.lower().encode() + b"\x00" + visitor, digest_size=8).digest()
        point = int.from_bytes(digest, "big") % self.bounds[-1]
        for index, bound in enumerate(self.bounds):
            if point < bound:
                return index
        return len(self.bounds) - 1  # unreachable: the last bound is the total

    def choose(self, code_id: str, scan: Scan, visitor: bytes) -> tuple[str, str | None]:
        """What serves ``scan`` (``rule N``, ``variant x`` or ``default``) and its target URL
        (``None``: the code's own). The redirect service asks :meth:`first_rule` and
        :meth:`variant` itself, so that it hashes a visitor only when a split decides."""
        index = self.first_rule(scan)
        if index is not None:
            return rule_label(index), self.rules[index].target_url
        if self.variants:
            chosen = self.variant(code_id, visitor)
            return variant_label(chosen), self.variants[chosen]
        return DEFAULT, None


def rule_label(index: int) -> str:
    """How scans served by the rule at ``index`` are counted: ``rule 1`` is the first."""
    return f"rule {index + 1}"


def variant_label(index: int) -> str:
    """How scans served by the variant at ``index`` are counted: ``variant a`` is the first."""
    return f"variant {chr(ord('a') + index)}"


def compile_rules(
    rules: Sequence[Mapping[str, Any]] | None, split: Sequence[Mapping[str, Any]] | None
) -> RuleSet | None:
    """The rules and split as stored (validated JSON), compiled; ``None`` when there are neither.
    :class:`ValueError` (or a ``KeyError``/``TypeError``) for JSON of another shape."""
    if not rules and not split:
        return None
    compiled = []
    reads: set[str] = set()
    for rule in rules or ():
        conditions = rule["if"]
        if not isinstance(conditions, Mapping) or not conditions:
            raise ValueError("a rule needs conditions")
        target = rule["target_url"]
        if not isinstance(target, str):
            raise ValueError("a rule's target_url is text")
        compiled.append(Rule(target, _all_of(_tests(conditions, reads))))
    bounds, total = [], 0
    for variant in split or ():
        weight = variant["weight"]
        if type(weight) is not int or weight < 1:
            raise ValueError("a variant's weight is a whole number from 1")
        total += weight
        bounds.append(total)
    return RuleSet(
        tuple(compiled),
        tuple(str(variant["target_url"]) for variant in split or ()),
        tuple(bounds),
        tuple(rule.holds for rule in compiled),
        needs_device="device" in reads,
        needs_language="language" in reads,
        needs_country="country" in reads,
        needs_query="query" in reads,
        needs_moment="moment" in reads,
    )


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(each, str) for each in value):
        raise ValueError("a condition's values are a list of text")
    return value


def _tests(conditions: Mapping[str, Any], reads: set[str]) -> tuple[Test, ...]:
    """One test per condition, the cheapest first."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown conditions: {sorted(unknown)}")
    tests: list[Test] = []
    if "device" in conditions:
        devices = frozenset(_strings(conditions["device"]))
        tests.append(lambda scan: scan.device in devices)
        reads.add("device")
    if "country" in conditions:
        countries = frozenset(each.upper() for each in _strings(conditions["country"]))
        tests.append(lambda scan: scan.country in countries)
        reads.add("country")
    if "language" in conditions:
        tests.append(_language_test(_strings(conditions["language"])))
        reads.add("language")
    if "between" in conditions:
        start, end = (datetime.fromisoformat(each).timestamp() for each in _strings(conditions["between"]))
        tests.append(lambda scan: start <= scan.moment < end)
        reads.add("moment")
    if "weekdays" in conditions or "hours" in conditions:
        tests.append(_clock_test(conditions.get("weekdays"), conditions.get("hours"), conditions.get("tz")))
        reads.add("moment")
    if "query" in conditions:
        tests.append(_query_test(conditions["query"]))
        reads.add("query")
    if not tests:
        raise ValueError("a rule needs a condition besides tz")
    return tuple(tests)


def _language_test(tags: list[str]) -> Test:
    wanted = frozenset(tag.lower() for tag in tags)

    def test(scan: Scan) -> bool:
        language = scan.language
        if language is None:
            return False
        return language in wanted or language.partition("-")[0] in wanted

    return test


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value <= 24 * 60:
        raise ValueError("an hour is from 00:00 to 24:00")
    return value


def _clock_test(weekdays: object, hours: object, tz: object) -> Test:
    days = None if weekdays is None else frozenset(WEEKDAYS.index(day) for day in _strings(weekdays))
    span = None if hours is None else tuple(_minutes(each) for each in _strings(hours))
    if span is not None and len(span) != 2:
        raise ValueError("hours are [from, until]")
    zone = ZoneInfo(tz) if isinstance(tz, str) else ZoneInfo("UTC")
    # The last minute read and its (weekday, minute of the day) in the zone: scans come many a
    # minute, and a zone's offset changes on a minute's boundary.
    memo: list[Any] = [None, 0, 0]

    def test(scan: Scan) -> bool:
        minute = int(scan.moment // 60)
        if memo[0] != minute:
            local = datetime.fromtimestamp(minute * 60, zone)
            memo[1], memo[2], memo[0] = local.weekday(), local.hour * 60 + local.minute, minute
        if days is not None and memo[1] not in days:
            return False
        if span is None:
            return True
        start, end = span
        of_day: int = memo[2]
        return start <= of_day < end if start < end else of_day >= start or of_day < end

    return test


def _query_test(query: object) -> Test:
    if not isinstance(query, Mapping) or not query:
        raise ValueError("a query condition names parameters")
    wanted = tuple(
        (name, frozenset([values] if isinstance(values, str) else _strings(values)))
        for name, values in query.items()
    )

    def test(scan: Scan) -> bool:
        for name, values in wanted:
            given = scan.query.get(name)
            if not given or not any(each in values for each in given):
                return False
        return True

    return test
