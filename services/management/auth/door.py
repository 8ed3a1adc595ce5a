"""The door: every request to the management service passes it once, and leaves it with an
:class:`~.identity.Identity` attached, or with a refusal in the API's error shape.

It refuses with 403 outside the allowlist, with 421 for a host name not in ADMIN_HOSTS (a page that
rebinds its DNS name to an allowed address cannot drive the API from an administrator's browser),
with 403 for a request another site's page made, and, with ``ADMIN_AUTH=identity``, with 401 (and
``WWW-Authenticate: Bearer``) without a valid token (``Authorization: Bearer <token>``: one the
service made, or one of ``ADMIN_TOKENS_FILE``; the token's name goes into the history, the token
nowhere). The identity it attaches carries the token's role and tags; with ``ADMIN_AUTH=network``
every caller the allowlist lets in is an admin over every code, as it always was. The console signs
in with such a token once and keeps a session cookie (sessions.py): it opens the console's pages, and
the API's reads (its images, exports and CSV) from those pages, never the API's writes. The
console's pages check their session themselves (its frame adds it to the identity), as they answer
in HTML.

With ``OIDC_ISSUER`` set, a bearer token that is a JWT (three dot-separated parts) is the identity
provider's access token, checked by auth/oidc.py: a person's (subject, e-mail, the role their groups
map to) or a machine client's (client credentials: named by its client id). A person's console
session opens the API's reads as a token's session does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from starlette.types import ASGIApp, Receive, Scope, Send

from services.management.auth.identity import Identity, attach
from services.management.auth.network import (
    NetworkRule,
    from_another_site,
    from_own_pages,
    is_console,
    is_open,
)
from services.management.auth.oidc import Claims, Provider
from services.management.auth.sessions import Session, Sessions
from services.management.auth.tokens import Token, TokenStore
from services.management.errors import DomainError
from shared.errors import Forbidden, MisdirectedRequest, ServiceError, Unauthorized
from shared.logging import request_id


@dataclass(frozen=True)
class DoorRules:
    network: NetworkRule
    tokens: TokenStore | None = None  # ADMIN_AUTH=identity; None: the allowlist alone decides
    sessions: Sessions | None = None  # the console's, whose cookie also opens the API's reads
    oidc: Provider | None = None  # the identity provider, whose JWT access tokens are bearer tokens


# How a refusal is answered: given by the front end that owns the error shape (the API's JSON),
# so that who-is-calling depends on no front end.
Refusal = Callable[[ServiceError | DomainError], ASGIApp]


class Door:
    """ASGI middleware applying :class:`DoorRules` (see the module's docstring); ``refuse`` renders
    its refusals."""

    def __init__(self, app: ASGIApp, rules: DoorRules, *, refuse: Refusal) -> None:
        self.app = app
        self.rules = rules
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        network = self.rules.network
        address = network.client(scope)
        if is_open(scope["path"]):
            attach(scope, Identity(address, request_id.get()))
            await self.app(scope, receive, send)
            return
        if not network.allows(address):
            await self.refuse(Forbidden("this address may not use the management API"))(scope, receive, send)
            return
        if not network.serves_host(scope):
            misdirected = MisdirectedRequest("this host name does not serve the management API")
            await self.refuse(misdirected)(scope, receive, send)
            return
        site = from_another_site(scope)
        if site is not None:
            refusal = Forbidden(
                f"a page of another site made this request (Sec-Fetch-Site: {site}); the admin API "
                "answers the console's own pages and tools such as qrctl or curl: open the console, "
                "or this address, directly"
            )
            await self.refuse(refusal)(scope, receive, send)
            return
        identity = Identity(address, request_id.get())
        if self.rules.tokens is not None:
            try:
                identity = await self._with_token(scope, identity, self.rules.tokens)
            except (ServiceError, DomainError) as exc:  # no valid token; the sign-outs cannot be read
                await self.refuse(exc)(scope, receive, send)
                return
        attach(scope, identity)
        await self.app(scope, receive, send)

    async def _with_token(self, scope: Scope, identity: Identity, tokens: TokenStore) -> Identity:
        """The caller with the name of its bearer token, or of the token its console session was
        signed in with (for the API's reads); :class:`Unauthorized` without either, but on the
        console's pages (its sign-in, and its own check of the session on every page)."""
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if self.rules.oidc is not None and scheme.lower() == "bearer" and secret.count(".") == 2:
            # Unauthorized (and the reason logged, not the token) for one that does not pass.
            return as_bearer_of(identity, await self.rules.oidc.verify_access_token(secret))
        token = await tokens.authenticate(secret.strip()) if scheme.lower() == "bearer" else None
        if token is not None:
            return as_token(identity, token)
        # A console session reads the API too (its images, exports, CSV), never writes it.
        reads = scope["method"] in ("GET", "HEAD") and not is_console(scope["path"])
        sessions = self.rules.sessions
        session: Session | None = None
        if reads and sessions is not None and from_own_pages(scope):
            session = await sessions.from_scope(scope)  # TryAgain: the sign-outs cannot be read
        if session is not None and session.person is not None:
            return as_person(identity, session)
        if session is not None and sessions is not None:
            signed_in = sessions.token_of(session)
            if signed_in is not None:
                return replace(as_token(identity, signed_in), session=session)
        if is_console(scope["path"]):
            return identity
        raise Unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")


def as_token(identity: Identity, token: Token) -> Identity:
    """The caller, as the bearer of ``token``: its name, role and tags."""
    return replace(identity, token_name=token.name, role=token.role, tags=token.tags, kind="token")


def as_person(identity: Identity, session: Session) -> Identity:
    """The caller, as the person signed in to the console ``session`` (through the identity
    provider): their subject, e-mail, and the role their session carries."""
    assert session.person is not None
    person = session.person
    return replace(
        identity.signed_in(session, None),
        kind="person",
        subject=person.subject,
        email=person.email,
        role=person.role,
        tags=None,
    )


def as_bearer_of(identity: Identity, claims: Claims) -> Identity:
    """The caller, as the bearer of the identity provider's access token with ``claims``: a machine
    client (named by its client id, as a service token by its name) or a person."""
    assert claims.role is not None  # verify_access_token refuses a token that maps to no role
    if claims.machine:
        return replace(identity, token_name=claims.subject, role=claims.role, tags=None, kind="token")
    return replace(
        identity, kind="person", subject=claims.subject, email=claims.email, role=claims.role, tags=None
    )
