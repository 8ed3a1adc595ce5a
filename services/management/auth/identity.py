"""Who is calling: a typed, frozen :class:`Identity`, made once at the door and passed down.

The door (:mod:`.door`) attaches it to the request; a front end reads it with :func:`identity_of`
and hands it to the operations below, which record it in a code's history and in their log lines.
Nothing else reads who is calling from the request.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from starlette.types import Scope

from services.management.auth.roles import Role
from services.management.auth.sessions import Session

# How the caller was recognised: by its address alone (ADMIN_AUTH=network), by a bearer token
# (the service's own, a tokens file's, or the provider's JWT access token), or as a person signed in
# through the identity provider.
Kind = Literal["network", "token", "person"]

# Where the door leaves the identity in the ASGI scope (an extension key of its own, not "state").
SCOPE_KEY = "qr.identity"


@dataclass(frozen=True)
class Identity:
    """A caller: the client's address (behind a trusted proxy, the one it forwarded), the request's
    id, the name of the bearer token it showed (or that its console session was signed in with), and
    that session, if any."""

    client_address: str | None
    request_id: str | None = None
    token_name: str | None = None
    session: Session | None = None
    # What this caller may do. ADMIN_AUTH=network: admin, as the allowlist alone decides.
    role: Role = Role.admin
    # The tags a token is limited to: it sees and changes only codes carrying one of them (None: every code).
    tags: frozenset[str] | None = None
    kind: Kind = "network"
    # A person signed in through the provider (or its JWT's client): the provider's subject and e-mail.
    subject: str | None = None
    email: str | None = None

    @property
    def actor(self) -> str | None:
        """Who, in one word, for the history and the audit log: the token's name, or the person's
        e-mail (their subject without one); None when only the address is known."""
        return self.token_name or self.email or self.subject

    def signed_in(self, session: Session, token_name: str | None) -> Identity:
        """This caller, as the console session ``session`` (signed in with ``token_name``'s token)."""
        return replace(self, session=session, token_name=token_name)


def attach(scope: Scope, identity: Identity) -> None:
    """Give the request its caller (the door's job, once per request)."""
    scope[SCOPE_KEY] = identity


def identity_of(scope: Scope) -> Identity:
    """The caller the door attached to the request."""
    identity = scope.get(SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise LookupError("no identity: the request did not come through the door (auth/door.py)")
    return identity
