"""DSN spellings: one ``DATABASE_URL`` for people, the form each driver wants."""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit


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
