"""Bearer tokens: those the service makes (``qr-manage token create``, ``POST /api/v1/tokens``), kept in
``admin_tokens``, and those ``ADMIN_TOKENS_FILE`` lists.

A service token is ``qr_`` and 32 random bytes (URL-safe base64); the table keeps only an HMAC-SHA256
of it under a key of the server's own (``QR_DATA_DIR/.token-secret``, mode 0600, made on first use by
the service or qr-manage, whichever comes first: both must see the same folder). A token is looked
up by that keyed hash (a unique index), then compared in constant time; one expired or revoked is
refused as an unknown one is, its reason logged without the token. Each token has a role and, when
it has tags, sees and changes only the codes that carry one of them.

The tokens file lists each token by name and SHA-256, never the token itself; its tokens are
``admin`` over every code. The file is read again when it changes (checked at most every two
seconds). Emptying or deleting it revokes every token at once; a file that became unreadable as text
(a syntax error half-way through an edit) keeps the previous tokens until it is fixed.

Each management process keeps the service's tokens in memory for at most ``CACHE_SECONDS``: a
revocation (or expiry, checked on every use) takes effect in every process within that bound, and a
token just made elsewhere is found by its hash in the table at its first use. ``last_used_at`` is
written at most once a minute per token and process, never on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management.auth import keys
from services.management.auth.roles import Role
from services.management.models import admin_tokens
from shared.settings import ConfigError

log = logging.getLogger(__name__)

_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
RELOAD_INTERVAL = 2.0
PREFIX = "qr_"
SECRET_BYTES = 32
KEY_FILE = ".token-secret"
# How long a process trusts its copy of the service's tokens: the bound on a revocation's delay.
CACHE_SECONDS = 5.0
# How often a token's last_used_at is written, at most (per process).
LAST_USED_EVERY = 60.0
# A token longer than this is no token of ours nor of a file worth hashing.
MAX_TOKEN_LENGTH = 4096


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


def sha256_of(token: str) -> str:
    """A token's SHA-256 (hex), as the file lists it."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The tokens file, read again when it changes (see the module's docstring)."""

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
        return self.name_for_digest(sha256_of(token))

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


# -- the service's own tokens ------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """A token the service accepts: its name, role and tags (None: every code), and the digest a
    console session signed in with it is tagged with (the file's SHA-256, or the keyed hash)."""

    name: str
    role: Role
    tags: frozenset[str] | None
    digest: str
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def new_secret() -> str:
    """A fresh token: ``qr_`` and 32 random bytes, URL-safe."""
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def keyed_hash(key: bytes, secret: str) -> str:
    """What the table keeps of a token: its HMAC-SHA256 under the server's key (hex)."""
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def kept_key(folder: Path) -> bytes:
    """The key of the service's tokens in ``folder`` (made there, mode 0600, the first time).
    Unlike the console's key, no stand-in will do: a token hashed under another key would never be
    found again, so a folder that cannot hold it is a :class:`ConfigError`."""
    try:
        return keys.kept_key(folder / KEY_FILE)
    except OSError as exc:
        raise ConfigError(f"the key of the service's tokens cannot be kept in {folder}: {exc}") from None


def token_of_row(row: Any) -> Token:
    return Token(
        row.name,
        Role(row.role),
        frozenset(row.tags) if row.tags else None,
        row.secret_hash,
        row.expires_at,
    )


_COLUMNS = (
    admin_tokens.c.name,
    admin_tokens.c.role,
    admin_tokens.c.tags,
    admin_tokens.c.secret_hash,
    admin_tokens.c.expires_at,
    admin_tokens.c.revoked_at,
)


class Database(Protocol):
    def connect(self, *, write: bool = False) -> AbstractAsyncContextManager[AsyncConnection]: ...


class TokenStore:
    """Every token the service accepts (ADMIN_AUTH=identity): its own, kept in ``admin_tokens``, and
    the tokens file's, if one is given (see the module's docstring)."""

    def __init__(self, database: Database, key: bytes | Path, file: TokenFile | None = None) -> None:
        """``key``: the key itself, or the folder it is kept in (read, or made, at first use)."""
        self.database = database
        self._key = key if isinstance(key, bytes) else None
        self._folder = key if isinstance(key, Path) else None
        self.file = file
        self._tokens: dict[str, Token] = {}  # by keyed hash: the active ones, as last read
        self._loaded = -CACHE_SECONDS  # monotonic time of that read
        self._used: dict[str, float] = {}  # name -> when last_used_at was last written

    @property
    def key(self) -> bytes:
        if self._key is None:
            assert self._folder is not None
            self._key = kept_key(self._folder)
        return self._key

    async def refresh(self, *, now: float | None = None) -> None:
        """Read the active tokens again when the copy is older than CACHE_SECONDS (``TryAgain``
        with the database away)."""
        moment = time.monotonic() if now is None else now
        if moment - self._loaded < CACHE_SECONDS:
            return
        statement = select(*_COLUMNS).where(admin_tokens.c.revoked_at.is_(None))
        async with self.database.connect() as conn:
            rows = (await conn.execute(statement)).all()
        self._tokens = {row.secret_hash: token_of_row(row) for row in rows}
        self._loaded = moment

    def listed(self) -> dict[str, Token]:
        """Every token accepted as far as this process knows (expired ones aside), by the digest its
        console sessions carry: the file's (SHA-256) and the service's (keyed hash)."""
        now = datetime.now(UTC)
        tokens = {digest: token for digest, token in self._tokens.items() if not token.expired(now)}
        if self.file is not None:
            for digest, name in self.file.listed().items():
                tokens[digest] = Token(name, Role.admin, None, digest)
        return tokens

    async def authenticate(self, secret: str) -> Token | None:
        """The token ``secret`` is, while it is accepted; None otherwise (``TryAgain`` with the
        database away)."""
        if not secret or len(secret) > MAX_TOKEN_LENGTH:
            return None
        if secret.startswith(PREFIX):
            token = await self._service_token(secret)
            if token is not None:
                return token
        name = self.file.name_of(secret) if self.file is not None else None
        return Token(name, Role.admin, None, sha256_of(secret)) if name is not None else None

    async def _service_token(self, secret: str) -> Token | None:
        await self.refresh()
        digest = keyed_hash(self.key, secret)
        token = self._tokens.get(digest)
        if token is None:  # made in the last few seconds, or refused: the table says which
            statement = select(*_COLUMNS).where(admin_tokens.c.secret_hash == digest)
            async with self.database.connect() as conn:
                row = (await conn.execute(statement)).first()
            if row is None or not hmac.compare_digest(row.secret_hash, digest):
                return None
            if row.revoked_at is not None:
                log.warning("bearer token refused: revoked", extra={"token_name": row.name})
                return None
            token = token_of_row(row)
            self._tokens[digest] = token
        if token.expired(datetime.now(UTC)):
            log.warning("bearer token refused: expired", extra={"token_name": token.name})
            return None
        await self._used_now(token)
        return token

    async def _used_now(self, token: Token) -> None:
        """Write the token's last_used_at, when this process has not for LAST_USED_EVERY seconds."""
        moment = time.monotonic()
        if moment - self._used.get(token.name, -LAST_USED_EVERY) < LAST_USED_EVERY:
            return
        self._used[token.name] = moment
        statement = (
            update(admin_tokens)
            .where(admin_tokens.c.name == token.name)
            .values(last_used_at=datetime.now(UTC))
        )
        async with self.database.connect(write=True) as conn:
            await conn.execute(statement)

    def forget(self) -> None:
        """Read the tokens again at the next use (after a change made in this process)."""
        self._loaded = -CACHE_SECONDS
