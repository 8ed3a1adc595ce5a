"""The console's sessions: a signed cookie, sign-outs kept in the database, the token against
cross-site forms, and the checks every state-changing request passes.

The cookie (HttpOnly, SameSite=Strict) holds a random session id, a tag of the bearer token it was
signed in with (``-`` when no tokens are configured, or for a person), its expiry, for a person
signed in through the identity provider who they are (subject, e-mail, role: :class:`Person`), and
an HMAC of them all. A person's role is the one their groups mapped to at sign-in, fixed for the
session's life (12 hours at most, whatever the ID token's own short expiry: it proved who signed
in, it does not keep them signed in); a change of groups at the provider shows at the next sign-in. The tag
is an HMAC of the token's SHA-256, not the digest itself: a copied cookie gives nothing to test
guesses of a weak token against without the key. Both HMACs are under a key kept in the image
store's folder (``QR_DATA_DIR/.console-secret``, made once, mode 0600, shared by every management
process and kept across restarts, as sessions are). Each request checks that the tokens file still
lists a token with that tag, so removing a token from the file ends its sessions at once.

Over HTTPS the cookie is ``__Host-qr_console``, Secure, with ``Path=/`` and no ``Domain``: browsers
then take it only from this very host over HTTPS, so neither a sibling domain nor a page on plain
HTTP can plant one. Over HTTP, where browsers refuse that prefix, it is ``qr_console``; each name
is read only on its own scheme.

Signing out writes the session's id to ``console_sign_outs`` until its cookie would have expired:
every management process, this one after a restart included, refuses that cookie from then on
(the rows past their expiry go with the next sign-out).

A form post is accepted only with the session's CSRF token (an HMAC of the session id: no state on
the server), and only when the browser's ``Sec-Fetch-Site`` (if sent) says ``same-origin`` and its
``Origin`` (if sent) names this very host. Any one of the three refuses a form posted from another
site.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from services.management.auth import keys
from services.management.auth.roles import Role
from services.management.auth.tokens import Token, TokenStore
from shared.clients import NetworkSet

log = logging.getLogger(__name__)

LIFETIME_SECONDS = 12 * 3600
SECRET_FILE = ".console-secret"  # noqa: S105 - the name of the file that holds it
NO_TOKEN = "-"  # noqa: S105 - in place of a token's tag
COOKIE = "qr_console"  # over HTTP
HOST_COOKIE = f"__Host-{COOKIE}"  # over HTTPS

SIGNED_OUT = "SELECT 1 FROM console_sign_outs WHERE session_id = :sid"
SIGN_OUT = """
INSERT INTO console_sign_outs (session_id, expires_at) VALUES (:sid, to_timestamp(:expires))
ON CONFLICT (session_id) DO NOTHING
"""
FORGET_EXPIRED = "DELETE FROM console_sign_outs WHERE expires_at < now()"
MAX_COOKIE_CHARS = 1500  # a person's subject and e-mail (255 + 254 characters, encoded) fit


class Database(Protocol):
    """A connection to the service's database (in a transaction for ``write``); ``TryAgain``
    when it is away."""

    def __call__(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]: ...


@dataclass(frozen=True)
class Person:
    """Who signed in through the identity provider: its subject and e-mail, and the role their
    groups mapped to then."""

    subject: str
    email: str | None
    role: Role

    def encoded(self) -> str:
        text = json.dumps({"s": self.subject, "e": self.email, "r": self.role.value}, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decoded(cls, value: str) -> Person | None:
        try:
            data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            return cls(str(data["s"]), data["e"] if isinstance(data["e"], str) else None, Role(data["r"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None


@dataclass(frozen=True)
class Session:
    sid: str
    token_tag: str  # NO_TOKEN when the service has no tokens, and for a person
    expires: int
    person: Person | None = None  # signed in through the identity provider


def cookie_name(https: bool) -> str:
    """The cookie's name on a request that came over HTTPS (``__Host-``) or plain HTTP."""
    return HOST_COOKIE if https else COOKIE


class Sessions:
    def __init__(
        self,
        secret: bytes | Path,
        tokens: TokenStore | None,
        database: Database | None = None,
        trusted: NetworkSet | None = None,
        *,
        people: bool = False,
    ) -> None:
        """``secret``: the key itself, or the folder to keep it in (read or made on first use).
        ``database`` keeps the sign-outs (without it only :meth:`verify` can be used);
        ``trusted``: the proxies whose ``X-Forwarded-Proto`` says whether a request came over HTTPS;
        ``people``: people sign in through the identity provider (OIDC_ISSUER is set)."""
        self._secret = secret if isinstance(secret, bytes) else None
        self._folder = secret if isinstance(secret, Path) else None
        self.tokens = tokens
        self._database = database
        self.trusted = trusted or NetworkSet(())
        self.people = people

    @classmethod
    def in_folder(
        cls,
        folder: Path,
        tokens: TokenStore | None,
        database: Database | None = None,
        trusted: NetworkSet | None = None,
        *,
        people: bool = False,
    ) -> Sessions:
        return cls(folder, tokens, database, trusted, people=people)

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            assert self._folder is not None
            self._secret = _kept_secret(self._folder)
        return self._secret

    @property
    def sign_in_required(self) -> bool:
        return self.tokens is not None or self.people

    def _mac(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def token_tag(self, token_digest: str) -> str:
        """What a cookie holds of a token: an HMAC of its SHA-256 under the key."""
        return self._mac(f"token.{token_digest}")

    def issue(
        self, token_digest: str | None = None, *, person: Person | None = None, now: float | None = None
    ) -> tuple[Session, str]:
        """A new session, for the token with this SHA-256 (hex) when given, or for a person signed
        in through the identity provider, and its cookie value."""
        expires = int(now if now is not None else time.time()) + LIFETIME_SECONDS
        tag = NO_TOKEN if token_digest is None else self.token_tag(token_digest)
        session = Session(secrets.token_urlsafe(18), tag, expires, person)
        body = f"{session.sid}.{session.token_tag}.{session.expires}"
        if person is not None:
            body += f".{person.encoded()}"
        return session, f"{body}.{self._mac(body)}"

    def verify(self, value: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie value names, when its signature holds, it has not expired, and
        (with tokens) its token is still listed; whether it was signed out is :meth:`read`'s."""
        if not value or len(value) > MAX_COOKIE_CHARS or not value.isascii():
            return None
        parts = value.split(".")
        if len(parts) not in (4, 5) or not parts[2].isdigit():
            return None
        body, mac = value.rpartition(".")[::2]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        sid, tag, expires = parts[:3]
        if int(expires) <= (now if now is not None else time.time()):
            return None
        if len(parts) == 5:
            # A person's session: while people sign in through the provider (not after OIDC_ISSUER
            # is unset), whatever the tokens file says.
            person = Person.decoded(parts[3])
            return Session(sid, tag, int(expires), person) if person is not None and self.people else None
        session = Session(sid, tag, int(expires))
        if self.tokens is not None and self.token_name(session) is None:
            return None
        if self.tokens is None and self.people:
            return None  # an anonymous session from before sign-in was required
        return session

    async def read(self, value: str | None, *, now: float | None = None) -> Session | None:
        """:meth:`verify`, and not signed out (in any process, ever); ``TryAgain`` with the
        database away."""
        if self.tokens is not None:
            await self.tokens.refresh()  # revoked tokens' sessions end within its bound
        session = self.verify(value, now=now)
        if session is None:
            return None
        async with self._connect() as conn:
            if (await conn.execute(text(SIGNED_OUT), {"sid": session.sid})).first() is not None:
                return None
        return session

    def https(self, scope: Scope) -> bool:
        """Whether the request came over HTTPS (itself, or as a trusted proxy says)."""
        client = scope.get("client")
        peer = client[0] if client else None
        return over_https(scope.get("scheme", "http"), peer, Headers(scope=scope), self.trusted)

    async def from_scope(self, scope: Scope) -> Session | None:
        """The session of the request's cookie: ``__Host-qr_console`` over HTTPS, ``qr_console``
        over HTTP (see :meth:`read`)."""
        raw = "; ".join(Headers(scope=scope).getlist("cookie"))
        return await self.read(cookie_parser(raw).get(cookie_name(self.https(scope))) if raw else None)

    async def end(self, session: Session) -> None:
        """Sign out: this session's cookie opens nothing any more, in every process, until it would
        have expired anyway; ``TryAgain`` with the database away."""
        async with self._connect(write=True) as conn:
            await conn.execute(text(SIGN_OUT), {"sid": session.sid, "expires": session.expires})
            await conn.execute(text(FORGET_EXPIRED))

    def _connect(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        if self._database is None:
            raise RuntimeError("these sessions have no database to keep sign-outs in")
        return self._database(write=write)

    def token_name(self, session: Session) -> str | None:
        """The name of the listed token the session was signed in with."""
        token = self.token_of(session)
        return token.name if token is not None else None

    def token_of(self, session: Session) -> Token | None:
        """The listed token the session was signed in with (its name, role and tags)."""
        if self.tokens is None or session.token_tag == NO_TOKEN:
            return None
        for digest, token in self.tokens.listed().items():
            if hmac.compare_digest(self.token_tag(digest), session.token_tag):
                return token
        return None

    def seal(self, purpose: str, data: dict[str, str], *, lifetime: int, now: float | None = None) -> str:
        """``data`` in a value only this service can have made, for ``purpose``, for ``lifetime``
        seconds (a sign-in's state, nonce and PKCE verifier between the login and its callback).
        Signed, not encrypted: what it holds is for this browser's own sign-in."""
        expires = int(now if now is not None else time.time()) + lifetime
        text = json.dumps({**data, "expires": expires}, separators=(",", ":"))
        body = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return f"{body}.{self._mac(f'{purpose}.{body}')}"

    def unseal(self, purpose: str, value: str | None, *, now: float | None = None) -> dict[str, str] | None:
        """What :meth:`seal` put in ``value`` for ``purpose``, unless it was changed or has expired."""
        if not value or len(value) > MAX_COOKIE_CHARS * 2 or not value.isascii():
            return None
        body, _, mac = value.partition(".")
        if not hmac.compare_digest(mac, self._mac(f"{purpose}.{body}")):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("expires"), int):
            return None
        if data.pop("expires") <= (now if now is not None else time.time()):
            return None
        return {key: item for key, item in data.items() if isinstance(item, str)}

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf.{session.sid}")[:40]

    def forged(self, headers: Headers, session: Session | None, token: str | None) -> str | None:
        """Why a state-changing request is refused as possibly cross-site, or ``None``."""
        site = headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return f"the form came from another site (Sec-Fetch-Site: {site[:20]})"
        origin = headers.get("origin")
        if origin is not None:
            host = (headers.get("host") or "").lower()
            try:
                netloc = urlsplit(origin).netloc.lower()
            except ValueError:  # not a URL at all (an unbalanced [)
                netloc = None
            if origin == "null" or netloc != host:
                return "the form came from another origin"
        if session is None:
            return "the session has ended; open the page again"
        if not token or not hmac.compare_digest(token.encode(), self.csrf_token(session).encode()):
            return "the form's security token does not match this session; reload the page"
        return None


def _kept_secret(folder: Path) -> bytes:
    """The key in ``folder`` (made there, mode 0600, the first time); one of this process's own
    when the folder cannot hold it (sessions then end with the process)."""
    try:
        return keys.kept_key(folder / SECRET_FILE)
    except OSError as exc:
        log.warning("console sessions end with this process: %s", exc)
        return secrets.token_bytes(keys.KEY_BYTES)


def over_https(scheme: str, peer: str | None, headers: Headers, trusted: NetworkSet) -> bool:
    """Whether the browser's request came over HTTPS: the connection's own scheme, or what the
    edge says in ``X-Forwarded-Proto`` when the peer is a trusted proxy."""
    if scheme == "https":
        return True
    forwarded = headers.get("x-forwarded-proto")
    if forwarded is None or peer is None or not trusted.contains_text(peer):
        return False
    return forwarded.split(",")[-1].strip().lower() == "https"
