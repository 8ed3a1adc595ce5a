"""Redirect rules on the hot path: a code's rules compiled when it is loaded into the cache, and
the destination they give each scan.

The evaluator is :mod:`shared.rules` (the management service's ``rules/try`` runs the same one);
this module compiles a code's stored JSON into :class:`Routing` (the rule set and each target's
``Location`` bytes, made once) and reads of a scan only what its rules ask for: the device from the
user agent (memoised per agent), the best language of ``Accept-Language`` (memoised per header),
the country of the client's address from the scan writer's GeoIP file (memoised per address, as
the writer's own look-up is), the query string, the clock. A split needs the visitor's daily key
(services/redirect/visitors.py): asked of the scan writer, which holds today's key. A code without
rules has no :class:`Routing`, and the redirect asks nothing of this module.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from shared.rules import (
    DEFAULT,
    NO_QUERY,
    RuleSet,
    Scan,
    best_language,
    compile_rules,
    device_of,
    rule_label,
    variant_label,
)
from shared.urls import location_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Routing:
    """A code's compiled rules, with the ``Location`` of each rule's and variant's target."""

    rules: RuleSet
    rule_locations: tuple[bytes, ...]
    rule_labels: tuple[str, ...]
    variant_locations: tuple[bytes, ...]
    variant_labels: tuple[str, ...]


def compile_routing(code_id: str, rules: Any, split: Any) -> Routing | None:
    """The code's rules as stored, compiled (``None``: none). A rule set written around the API that
    cannot be compiled, or that sends anywhere but to an http(s) URL, is logged and left out: the
    code then answers its own target, as before it had rules."""
    try:
        compiled = compile_rules(rules or None, split or None)
        if compiled is None:
            return None
        targets = [rule.target_url for rule in compiled.rules] + list(compiled.variants)
        if not all(target[:8].lower().startswith(("http://", "https://")) for target in targets):
            raise ValueError("a target is not an http(s) URL")
        return Routing(
            compiled,
            tuple(location_bytes(rule.target_url) for rule in compiled.rules),
            tuple(rule_label(index) for index in range(len(compiled.rules))),
            tuple(location_bytes(target) for target in compiled.variants),
            tuple(variant_label(index) for index in range(len(compiled.variants))),
        )
    except (ValueError, KeyError, TypeError, LookupError) as exc:
        log.error(
            "stored redirect rules cannot be read: ignoring them",
            extra={"code_id": code_id, "error": str(exc)},
        )
        return None


class Clients(Protocol):
    """What the router asks of the scan writer about a client (services/redirect/scans.py)."""

    def country(self, peer: str | None, forwarded: bytes | None) -> str | None: ...

    async def visitor(
        self, peer: str | None, forwarded: bytes | None, user_agent: bytes | None, moment: float
    ) -> bytes: ...


@functools.lru_cache(maxsize=4096)
def _device(user_agent: bytes | None) -> str:
    return device_of(None if user_agent is None else user_agent.decode("latin-1"))


@functools.lru_cache(maxsize=4096)
def _language(header: bytes) -> str | None:
    return best_language(header.decode("latin-1"))


# What is read of a header or query string for the rules, and the memos' keys: cut, so that the
# memos stay small whatever a scan sends (the substrings the rules look for come early).
MAX_READ = 512
MAX_QUERY_READ = 2048
MAX_QUERY_FIELDS = 50


@functools.lru_cache(maxsize=1024)
def parse_query(query_string: bytes) -> Mapping[str, Sequence[str]]:
    """A scan's query string (cut to MAX_QUERY_READ bytes) as names and their values, read only and
    shared between scans; one with more than MAX_QUERY_FIELDS fields is read as none."""
    if not query_string:
        return NO_QUERY
    try:
        return parse_qs(
            query_string.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        return NO_QUERY


class Router:
    """Where a code with rules sends one scan, and what served it (``rule N``, ``variant x``,
    ``default``)."""

    def __init__(self, clients: Clients, clock: Callable[[], float]) -> None:
        self._clients = clients
        self._clock = clock

    def route(
        self,
        routing: Routing,
        own_location: bytes,
        scope: Mapping[str, Any],
        user_agent: bytes | None,
        forwarded: bytes | None,
    ) -> tuple[bytes, str] | None:
        """The rule that sends the scan, or the code's own location (``default``); ``None`` when no
        rule holds and a split decides (:meth:`split`: the visitor's key may need the database).
        Not a coroutine: most scans of a code with rules need no await."""
        rules = routing.rules
        language = None
        if rules.needs_language:
            for name, value in scope["headers"]:
                if name == b"accept-language":
                    language = _language(value[:MAX_READ])
                    break
        country = None
        if rules.needs_country:
            client = scope.get("client")
            country = self._clients.country(client[0] if client else None, forwarded)
        scan = Scan(
            self._clock(),
            _device(None if user_agent is None else user_agent[:MAX_READ]) if rules.needs_device else "other",
            language,
            country,
            parse_query(scope["query_string"][:MAX_QUERY_READ]) if rules.needs_query else NO_QUERY,
        )
        index = rules.first_rule(scan)
        if index is not None:
            return routing.rule_locations[index], routing.rule_labels[index]
        if rules.variants:
            return None
        return own_location, DEFAULT

    async def split(
        self,
        routing: Routing,
        code_id: str,
        scope: Mapping[str, Any],
        user_agent: bytes | None,
        forwarded: bytes | None,
    ) -> tuple[bytes, str]:
        """The split's variant for the scan's visitor (the same all day)."""
        client = scope.get("client")
        visitor = await self._clients.visitor(
            client[0] if client else None, forwarded, user_agent, self._clock()
        )
        chosen = routing.rules.variant(code_id, visitor)
        return routing.variant_locations[chosen], routing.variant_labels[chosen]
