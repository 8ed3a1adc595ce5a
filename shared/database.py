"""DSN spellings: one ``DATABASE_URL`` for people, the form each driver wants."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit


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
    percent-decoded (``p%40ss`` in a URL is the password ``p@ss``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:{placeholder}@{hostinfo}" if placeholder else f"{user}@{hostinfo}"
    stripped = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return stripped, unquote(parts.password)


def redacted(url: str) -> str:
    """The DSN with any password replaced, for logs and messages."""
    return split_password(url, placeholder="***")[0]
