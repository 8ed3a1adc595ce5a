"""The hot path: ``GET``/``HEAD /r/{id}``.

A plain ASGI callable, reached before any framework routing: it reads the id and the few headers
it needs straight from ``scope``, answers with prebuilt header lists, and leaves everything that
can wait (client address, visitor hash, bot classification, the write) to the scan writer. The
cache is asked first, inline; only a miss pays for validation and the resolver.

Answers: the code's status with ``Location`` (``Cache-Control: no-store`` for 302 and 307, as the
destination may change any time); for a disabled or expired code its ``fallback_url`` (302) or 410;
a dynamic contact's page or card (contact.py); 404 for an unknown, deleted or malformed id (or a
static code's); 503 with ``Retry-After`` when the database cannot tell.
Every answer carries ``X-Robots-Tag: noindex`` and ``X-Request-ID``. A live code with redirect rules
sends each scan where its rules say (services/redirect/rules.py), with a temporary status.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable

from starlette.types import Receive, Scope, Send

from services.redirect import contact
from services.redirect.answers import CodeAnswer
from services.redirect.cache import NOT_FOUND, LookupCache
from services.redirect.resolver import Resolver
from services.redirect.rules import Router
from services.redirect.scans import ScanRecorder
from shared.errors import Unavailable
from shared.ids import is_well_formed
from shared.metrics import Tally

access_log = logging.getLogger("qr.access")

PREFIX_LENGTH = len("/r/")
RETRY_AFTER_SECONDS = 5
MAX_FORWARDED_QUERY = 2048

_COMMON = [(b"x-robots-tag", b"noindex"), (b"content-length", b"0")]
# A temporary redirect must not be cached anywhere: the destination may change any time.
_TEMPORARY = [(b"cache-control", b"no-store"), *_COMMON]
_HEADERS_BY_STATUS = {301: _COMMON, 302: _TEMPORARY, 307: _TEMPORARY, 308: _COMMON}
# A code with redirect rules answers each scanner its own destination: never a permanent redirect.
_TEMPORARY_STATUS = {301: 302, 302: 302, 307: 307, 308: 307}
_WELL_FORMED_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_UNSAFE_IN_QUERY = re.compile(rb"[^\x21-\x22\x24-\x7e]")  # outside printable ASCII, or '#'

_MESSAGES = {
    404: ("Not found", "This QR code is not known here. Check the link, or ask whoever printed it."),
    405: ("Method not allowed", "Only GET and HEAD are answered here."),
    410: ("No longer active", "This QR code has been switched off or has expired."),
    503: ("Temporarily unavailable", "This QR code cannot be looked up right now. Please try again shortly."),
}


def with_query(location: bytes, query: bytes) -> bytes:
    """``location`` with the scan's query string appended (before any fragment), made header-safe;
    unchanged when the query is too long to carry."""
    query = _UNSAFE_IN_QUERY.sub(lambda m: b"%%%02X" % m.group()[0], query)
    if len(query) > MAX_FORWARDED_QUERY:
        return location
    base, hash_sign, fragment = location.partition(b"#")
    separator = b"" if base.endswith((b"?", b"&")) else b"&" if b"?" in base else b"?"
    return base + separator + query + hash_sign + fragment


class RequestIds:
    """Request ids for answers that did not bring a well-formed one: a random per-process prefix and
    a counter, unique across workers and restarts at a fraction of a UUID's cost."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6) + "-"
        self._counter = itertools.count(1)

    def choose(self, incoming: bytes | None) -> bytes:
        if incoming is not None and _WELL_FORMED_REQUEST_ID.fullmatch(incoming):
            return incoming
        return f"{self._prefix}{next(self._counter):x}".encode()


class RedirectEndpoint:
    def __init__(
        self,
        cache: LookupCache,
        resolver: Resolver,
        recorder: ScanRecorder,
        *,
        tally: Tally,
        outcomes: Counter[str],
        access_log: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tally = tally
        self._outcomes = outcomes
        self._cache = cache
        self._resolver = resolver
        self._recorder = recorder
        self._access_log = access_log
        self._clock = clock
        self._router = Router(recorder, clock)
        self.request_ids = RequestIds()
        self.in_flight = 0  # the lifespan waits for zero before it closes the scan writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        self.in_flight += 1
        try:
            status, request_id, outcome = await self._answer(scope, send)
        finally:
            self.in_flight -= 1
        # Plain counts here; published into Prometheus every second (see metrics.py).
        self._tally.count(scope["method"], status, time.perf_counter() - started)
        self._outcomes[outcome] += 1
        if self._access_log:
            access_log.info(
                "request",
                extra={
                    "request_id": request_id.decode(),
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": "/r/{id}",
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    async def _answer(self, scope: Scope, send: Send) -> tuple[int, bytes, str]:
        """The answer sent: status, request id, outcome (for the metrics)."""
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            return (*await self._refuse(scope, send, 405), "rejected")
        code_id = scope["path"][PREFIX_LENGTH:]
        cached = self._cache.get(code_id)
        if isinstance(cached, CodeAnswer):
            target, outcome = cached, "hit"
        elif cached is NOT_FOUND or not is_well_formed(code_id):
            return (*await self._refuse(scope, send, 404), "not_found")
        else:
            try:
                loaded, stale = await self._resolver.load(code_id)
            except Unavailable:
                return (*await self._refuse(scope, send, 503), "unavailable")
            if loaded is None:
                return (*await self._refuse(scope, send, 404), "not_found")
            target, outcome = loaded, "stale" if stale else "miss"

        user_agent = referrer = forwarded = incoming_id = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value
            elif name == b"referer":
                referrer = value
            elif name == b"x-forwarded-for":
                forwarded = value if forwarded is None else forwarded + b"," + value
            elif name == b"x-request-id":
                incoming_id = value
        request_id = self.request_ids.choose(incoming_id)

        location, status = self._destination(target)
        if location is None:
            return (*await self._refuse(scope, send, 410, request_id), "gone")
        if location is target.fallback:
            outcome = "fallback"
        elif target.contact is not None and contact.wants_card(scope):  # a download is no scan
            return await contact.respond(scope, send, target.contact, request_id), request_id, outcome
        served = None  # which redirect rule sent the scan: a code without rules has none
        if target.rules is not None and location is target.location:
            routed = self._router.route(target.rules, location, scope, user_agent, forwarded)
            if routed is None:  # no rule holds: the split decides, by the visitor's daily key
                routed = await self._router.split(target.rules, target.code_id, scope, user_agent, forwarded)
            location, served = routed
            status = _TEMPORARY_STATUS[status]  # another scanner may be sent elsewhere
        if target.forward_query and scope["query_string"]:
            location = with_query(location, scope["query_string"])
        if method == "GET":
            client = scope.get("client")
            self._recorder.record(
                target.code_id, user_agent, referrer, client[0] if client else None, forwarded, served
            )
        if target.contact is not None and outcome != "fallback":  # services/redirect/contact.py
            return await contact.respond(scope, send, target.contact, request_id), request_id, outcome
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"location", location),
                    *_HEADERS_BY_STATUS[status],
                    (b"x-request-id", request_id),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return status, request_id, outcome

    def _destination(self, target: CodeAnswer) -> tuple[bytes | None, int]:
        if target.is_live(self._clock()):
            return target.location, target.status
        if target.fallback is not None:
            return target.fallback, 302
        return None, 410

    async def _refuse(
        self, scope: Scope, send: Send, status: int, request_id: bytes | None = None
    ) -> tuple[int, bytes]:
        if request_id is None:
            incoming = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
            request_id = self.request_ids.choose(incoming)
        await send_refusal(scope, send, status, request_id)
        return status, request_id


def _wants_html(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept":
            return b"text/html" in value
    return False


async def send_refusal(scope: Scope, send: Send, status: int, request_id: bytes) -> None:
    """A short answer for a scan that does not redirect: a human page for browsers, text otherwise.

    It names nothing but the outcome: no id, no other codes, no stack.
    """
    title, text = _MESSAGES[status]
    if _wants_html(scope):
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></html>\n"
        ).encode()
        content_type = b"text/html; charset=utf-8"
    else:
        body = f"{title}: {text}\n".encode()
        content_type = b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-robots-tag", b"noindex"),
        (b"content-security-policy", b"default-src 'none'"),
        (b"x-request-id", request_id),
    ]
    if status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
    elif status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
