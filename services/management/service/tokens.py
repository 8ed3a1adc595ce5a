"""The service's bearer tokens: made, listed and revoked, each change with its audit entry in its
own transaction. The API (``/api/v1/tokens``) and qr-manage (``token create/list/revoke``) both come
here; the functions take a connection, so that qr-manage, which has no service running, can too."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management import audit
from services.management.auth.identity import Identity
from services.management.auth.tokens import TokenStore, keyed_hash, new_secret
from services.management.errors import NotPermitted, TokenNameTaken, TokenNotFound
from services.management.models import admin_tokens
from services.management.schemas import NewToken, NewTokenMade, TokenInfo, TokenList
from services.management.schemas.tokens import NAME_PATTERN
from services.management.service.database import Database

log = logging.getLogger(__name__)

_LISTED = tuple(admin_tokens.c[name] for name in TokenInfo.model_fields)


def _info(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in TokenInfo.model_fields}


async def create(conn: AsyncConnection, key: bytes, new: NewToken, identity: Identity) -> NewTokenMade:
    """Make the token ``new`` describes; :class:`TokenNameTaken` when a token has or had its name.
    The answer holds the token itself, which is kept nowhere."""
    secret = new_secret()
    expires_at = (
        datetime.now(UTC) + timedelta(days=new.expires_in_days) if new.expires_in_days is not None else None
    )
    tags = sorted(set(new.tags or ()))
    statement = (
        insert(admin_tokens)
        .values(
            name=new.name,
            role=new.role,
            tags=tags,
            secret_hash=keyed_hash(key, secret),
            created_by=identity.actor,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=[admin_tokens.c.name])
        .returning(*_LISTED)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise TokenNameTaken(new.name)
    await audit.record(
        conn, identity, "token.create", target=new.name, detail=_detail(identity, new.role, tags)
    )
    return NewTokenMade(**_info(row), token=secret)


async def listing(conn: AsyncConnection) -> TokenList:
    rows = await conn.execute(select(*_LISTED).order_by(admin_tokens.c.created_at, admin_tokens.c.name))
    return TokenList(items=[TokenInfo(**_info(row)) for row in rows])


async def revoke(conn: AsyncConnection, name: str, identity: Identity) -> None:
    """The token ``name`` opens nothing from now on (within the stores' CACHE_SECONDS);
    :class:`TokenNotFound` for a name no token has, or one revoked already (a name no token could
    have is not looked for: PostgreSQL refuses some characters in text, NUL among them)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise TokenNotFound(name if len(name) <= 64 else name[:64] + "…")
    statement = (
        update(admin_tokens)
        .where(admin_tokens.c.name == name, admin_tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(admin_tokens.c.role, admin_tokens.c.tags)
    )
    row = (await conn.execute(statement)).first()
    if row is None:
        raise TokenNotFound(name)
    await audit.record(
        conn, identity, "token.revoke", target=name, detail=_detail(identity, row.role, list(row.tags))
    )


def _detail(identity: Identity, role: str, tags: list[str]) -> dict[str, Any]:
    detail: dict[str, Any] = {"role": role, "tags": tags}
    if identity.subject == QR_MANAGE.subject and identity.kind == QR_MANAGE.kind:
        detail["via"] = "qr-manage"
    return detail


# Who qr-manage's changes are recorded as: the operator at the server, with no address.
QR_MANAGE = Identity(None, subject="qr-manage")


def require_every_code(identity: Identity) -> None:
    """:class:`NotPermitted` for a caller limited to tags, where an operation reaches past them:
    managing tokens (it could make itself one over every code), reading the audit log (it names
    every tag's codes)."""
    if identity.tags is not None:
        raise NotPermitted("a token limited to tags cannot manage tokens nor read the audit log")


class TokenService:
    def __init__(self, database: Database, store: TokenStore) -> None:
        self.database = database
        self.store = store

    async def create(self, new: NewToken, identity: Identity) -> NewTokenMade:
        require_every_code(identity)
        async with self.database.connect(write=True) as conn:
            made = await create(conn, self.store.key, new, identity)
        log.info("token created", extra={"token_name": new.name, "role": new.role})
        return made

    async def listing(self, identity: Identity) -> TokenList:
        require_every_code(identity)
        async with self.database.connect() as conn:
            return await listing(conn)

    async def revoke(self, name: str, identity: Identity) -> None:
        require_every_code(identity)
        async with self.database.connect(write=True) as conn:
            await revoke(conn, name, identity)
        self.store.forget()
        log.info("token revoked", extra={"token_name": name})
