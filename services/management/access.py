"""Who may use the management API: the network rule, and optional bearer tokens on top.

The edge already refuses addresses outside ``ADMIN_ALLOWLIST``; the service checks again, so that
reaching it around the edge (another container, a mistaken port mapping) opens nothing. With
``ADMIN_TOKENS_FILE`` set, every admin request also needs ``Authorization: Bearer <token>`` for a
token listed there by name and SHA-256; the token's name goes into the history, the token nowhere.
The console signs in with such a token once and keeps a session cookie (console/session.py): it
opens the console's pages, and the API's reads (its images, exports and CSV) from those pages,
never the API's writes.

Whatever the token mode, a request that a page of another site made is refused: browsers say so
in ``Sec-Fetch-Site`` (``cross-site``, ``same-site``), and tools (qrctl, curl, scripts) send no
such header. Without tokens the allowlist alone would otherwise let any page an administrator
opens fire the API's reads from the administrator's browser: exports, 4096 px renders, reports
over every code. The console's own pages are ``same-origin`` (``none`` when typed in or
bookmarked); a link to a console page followed from elsewhere (a top-level navigation) still
opens it, and the page's own requests are then ``same-origin``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from services.management.errors import error_response
from shared.clients import NetworkSet, client_address
from shared.errors import Forbidden, MisdirectedRequest, ServiceError, Unauthorized, Unavailable
from shared.settings import ConfigError

if TYPE_CHECKING:
    from services.management.console.session import Session, Sessions

log = logging.getLogger(__name__)

# Answered for anyone: health for the edge and probes; metrics for Prometheus on this port; the
# edge's refusal pages (asked for by the edge on behalf of a client it refused).
OPEN_PATHS = frozenset({"/health", "/livez", "/metrics"})
EDGE_PAGES = "/edge-error/"
_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
RELOAD_INTERVAL = 2.0
# Sec-Fetch-Site values of a request made by a page of another site (Fetch Metadata).
FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})


def parse_tokens(text: str, *, source: str = "ADMIN_TOKENS_FILE") -> dict[str, str]:
    """``name:sha256hex`` lines (``#`` comments and blank lines allowed) -> {digest: name}."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, digest = line.partition(":")
        name, digest = name.strip(), digest.strip().lower()
        if not _TOKEN_NAME.fullmatch(name) or not _SHA256.fullmatch(digest):
            raise ConfigError(f"{source} line {number}: expected name:sha256-hex-of-token")
        if digest in tokens:
            raise ConfigError(f"{source} line {number}: the same token is listed twice")
        tokens[digest] = name
    return tokens


class TokenFile:
    """The tokens file, read again when it changes (checked at most every two seconds).

    Emptying or deleting the file revokes every token at once; a file that became unreadable as
    text (a syntax error half-way through an edit) keeps the previous tokens until it is fixed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._tokens = parse_tokens(self._read())
        if not self._tokens:
            raise ConfigError("ADMIN_TOKENS_FILE lists no tokens: nobody could use the API")
        self._checked = time.monotonic()

    def _read(self) -> str:
        try:
            return self.path.read_text()
        except OSError as exc:
            raise ConfigError(f"ADMIN_TOKENS_FILE: cannot read {self.path}: {exc.strerror}") from None

    def _stat(self) -> tuple[float, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime, info.st_size)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        if stamp is None:
            self._tokens, self._stamp = {}, None
            log.error("admin tokens file is gone: no token is accepted")
            return
        try:
            self._tokens = parse_tokens(self._read())
        except ConfigError as exc:
            log.error("admin tokens file not reloaded, keeping the previous tokens: %s", exc)
            return
        self._stamp = stamp
        log.info("admin tokens reloaded", extra={"tokens": len(self._tokens)})

    def name_of(self, token: str) -> str | None:
        return self.name_for_digest(hashlib.sha256(token.encode()).hexdigest())

    def listed(self) -> dict[str, str]:
        """Every token the file lists: its SHA-256 (hex) and its name."""
        self._refresh()
        return dict(self._tokens)

    def name_for_digest(self, digest: str) -> str | None:
        """The name of the token with this SHA-256 (hex), while the file lists it."""
        self._refresh()
        for known, name in self._tokens.items():
            if hmac.compare_digest(known, digest):
                return name
        return None


@dataclass(frozen=True)
class AccessRules:
    allowlist: NetworkSet
    trusted_proxies: NetworkSet
    hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1"})
    tokens: TokenFile | None = None
    sessions: Sessions | None = None  # the console's, whose cookie also opens the API's reads


def host_name(header: bytes | None) -> str | None:
    """The name in a ``Host`` header, without its port, lower case (``[::1]`` for IPv6)."""
    if not header:
        return None
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


class AccessControl:
    """ASGI middleware: refuse with 403 outside the allowlist, with 421 for a host name not in
    ADMIN_HOSTS (a page that rebinds its DNS name to an allowed address cannot drive the API from an
    administrator's browser), with 403 for a request another site's page made, 401 without a valid
    token when tokens are on; otherwise note the client address and token name in
    ``scope["state"]``."""

    def __init__(self, app: ASGIApp, rules: AccessRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(EDGE_PAGES):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
        peer = scope.get("client")
        address = client_address(
            peer[0] if peer else None, ",".join(forwarded) if forwarded else None, self.rules.trusted_proxies
        )
        if address is None or not self.rules.allowlist.contains_text(address):
            await send_error(scope, receive, send, Forbidden("this address may not use the management API"))
            return
        host = host_name(next((v for k, v in headers if k == b"host"), None))
        if host is None or (host not in self.rules.hosts and host.strip("[]") not in self.rules.hosts):
            await send_error(
                scope, receive, send, MisdirectedRequest("this host name does not serve the management API")
            )
            return
        site = from_another_site(scope)
        if site is not None:
            await send_error(
                scope,
                receive,
                send,
                Forbidden(
                    f"a page of another site made this request (Sec-Fetch-Site: {site}); the admin API "
                    "answers the console's own pages and tools such as qrctl or curl: open the console, "
                    "or this address, directly"
                ),
            )
            return
        token_name = None
        if self.rules.tokens is not None:
            authorization = next((v.decode("latin-1") for k, v in headers if k == b"authorization"), "")
            scheme, _, token = authorization.partition(" ")
            token_name = self.rules.tokens.name_of(token.strip()) if scheme.lower() == "bearer" else None
            # A console session reads the API too (its images, exports, CSV), never writes it; the
            # console's own pages read their session themselves.
            reads = scope["method"] in ("GET", "HEAD") and not is_console(scope["path"])
            try:
                session = await self._session(scope) if token_name is None and reads else None
            except Unavailable as exc:  # the sign-outs cannot be read
                await send_error(scope, receive, send, exc)
                return
            if session is not None and self.rules.sessions:
                token_name = self.rules.sessions.token_name(session)
            if token_name is None and is_console(scope["path"]):
                pass  # the console's sign-in, and its own check of the session on every page
            elif token_name is None:
                await send_error(
                    scope,
                    receive,
                    send,
                    Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)"),
                )
                return
        state = scope.setdefault("state", {})
        state["client_address"] = address
        state["token_name"] = token_name
        await self.app(scope, receive, send)

    async def _session(self, scope: Scope) -> Session | None:
        """The console session the request's cookie names, for a request from the console's own
        pages (no Sec-Fetch-Site: an older browser or a tool; same-origin; none: typed in)."""
        headers = scope["headers"]
        if self.rules.sessions is None:
            return None
        site = next((v for k, v in headers if k == b"sec-fetch-site"), None)
        if site not in (None, b"same-origin", b"none"):
            return None
        return await self.rules.sessions.from_scope(scope)


def from_another_site(scope: Scope) -> str | None:
    """The ``Sec-Fetch-Site`` of a request another site's page made, when it is refused, else
    ``None``. The console's forms judge their own posts (a 400 page, console/session.py); a link to
    one of its pages followed from elsewhere opens that page (top-level navigation, no cookie with
    it: SameSite=Strict)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    site = next((v for k, v in headers if k == b"sec-fetch-site"), None)
    if site is None or site not in FOREIGN_SITES:
        return None
    if is_console(scope["path"]):
        if scope["method"] not in ("GET", "HEAD"):
            return None
        mode = next((v for k, v in headers if k == b"sec-fetch-mode"), None)
        destination = next((v for k, v in headers if k == b"sec-fetch-dest"), None)
        if mode == b"navigate" and destination == b"document":
            return None
    return site.decode("latin-1")


def is_console(path: str) -> bool:
    """The console's pages and files, which sign in by themselves."""
    return path in ("/", "/console") or path.startswith("/console/")


async def send_error(scope: Scope, receive: Receive, send: Send, error: ServiceError) -> None:
    await error_response(error)(scope, receive, send)
