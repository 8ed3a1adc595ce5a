"""DSN spellings: one ``DATABASE_URL`` for people, the form each driver wants."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(SplitResult(scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def asyncpg_dsn(url: str) -> str:
    """``postgresql://...`` for asyncpg (which does not accept a driver suffix)."""
    return _with_scheme(url, "postgresql")


def sqlalchemy_url(url: str) -> str:
    """``postgresql+asyncpg://...`` for SQLAlchemy's async engine."""
    return _with_scheme(url, "postgresql+asyncpg")


def redacted(url: str) -> str:
    """The DSN with any password replaced, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))
