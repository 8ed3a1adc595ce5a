"""What every process agrees on about the database: DSN spellings (one ``DATABASE_URL`` for
people, the form each driver wants), the faults a driver raises when the server is away, the
advisory-lock keys, and the change channel."""

from __future__ import annotations

import enum
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

# What a database that is down, restarting, frozen, overloaded or refusing a statement raises
# through asyncpg (a refused or missing socket comes through as a bare OSError).
FAULTS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
# Those of them worth retrying: the database away, busy, restarting or shutting down.
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)


@enum.unique  # a repeated value would silently make two names one lock
class AdvisoryLock(enum.IntEnum):
    """Advisory-lock keys, one per purpose: a key shared by two purposes would make them wait for
    each other (or, with a try-lock, refuse each other) for no reason."""

    MIGRATE = 7_265_031_001  # session lock: one migrator at a time
    CREATE_CODE = 7_265_031_002  # transaction lock: codes commit in created_at order
    RESTORE = 7_265_031_003  # session lock on the maintenance database: one restore per server
    # Transaction lock: one scan batch, erasure or move of a code's tags at a time. They add to and
    # take from the same every-code and per-tag rows; taken first, it orders them all (no deadlock),
    # and each then reads the tags and rollups the one before committed. Its value is also written
    # in migration 0011's trigger function, which takes it too.
    SCAN_WRITE = 7_265_031_004


# Every write that changes what /r/{id} answers sends NOTIFY on this channel in its transaction:
# the id as payload, or FLUSH_ALL after a restore or a statement that changed several codes (the
# statement triggers of migration 0008). A bulk create sends NEW_CODES just before its rows: the
# FLUSH_ALL that follows from the same backend (a transaction's notifications arrive together, in
# order) is new codes only, which changes no answer but a 404's. A delete, or a change that switches
# a code off (disabled, expired), also sends STOPPED followed by the id: the redirect processes then
# forget what they held of it instead of keeping it stale (a stale entry answers while the database
# cannot, and a code switched off must never be answered from memory). No id holds a "!".
CHANGE_CHANNEL = "qr_changed"
FLUSH_ALL = "*"
NEW_CODES = "+"
STOPPED = "!"


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(SplitResult(scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def asyncpg_dsn(url: str) -> str:
    """``postgresql://...`` for asyncpg (which does not accept a driver suffix)."""
    return _with_scheme(url, "postgresql")


def sqlalchemy_url(url: str) -> str:
    """``postgresql+asyncpg://...`` for SQLAlchemy's async engine."""
    return _with_scheme(url, "postgresql+asyncpg")


def split_password(url: str, *, placeholder: str = "") -> tuple[str, str | None]:
    """The DSN with its password taken out (or replaced by ``placeholder``), and the password itself,
    percent-decoded (``p%40ss`` in a URL is the password ``p@ss``). A ``password`` query parameter,
    which libpq also reads, is taken out the same way."""
    parts = urlsplit(url)
    password = None if parts.password is None else unquote(parts.password)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{placeholder}@{hostinfo}" if placeholder else f"{user}@{hostinfo}"
    query = parts.query
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        password = password or next(value for key, value in pairs if key == "password")
        kept = [
            (k, placeholder if k == "password" else v) for k, v in pairs if placeholder or k != "password"
        ]
        query = urlencode(kept, quote_via=quote, safe="/*")
    if password is None:
        return url, None
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment)), password


def redacted(url: str) -> str:
    """The DSN with any password replaced, for logs and messages."""
    return split_password(url, placeholder="***")[0]


_DATABASE_PARAMETERS = ("dbname", "database")


def database_name(url: str) -> str:
    """The database a DSN names: a ``dbname``/``database`` query parameter (which wins, as in libpq),
    else its path, else libpq's default, the user's name."""
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query):
        if key in _DATABASE_PARAMETERS and value:
            return value
    name = unquote(parts.path.lstrip("/"))
    return name or unquote(parts.username or "postgres")


def with_database(url: str, name: str) -> str:
    """The same DSN naming another database on the same server."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in _DATABASE_PARAMETERS]
    query = urlencode(kept, quote_via=quote, safe="/")  # %20, not +: libpq does not read + as a space
    path = "/" + quote(name, safe="")
    return urlunsplit(SplitResult(parts.scheme, parts.netloc, path, query, parts.fragment))
