"""Redirect service settings, read once from an explicit environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared import settings as env


@dataclass(frozen=True)
class RedirectSettings:
    # Lookups may go to a replica or through a restricted role; the change listener must reach the
    # primary, because that is where NOTIFY is sent.
    lookup_database_url: str
    primary_database_url: str
    cache_max_entries: int = 100_000
    cache_ttl: float = 300.0
    negative_ttl: float = 5.0
    db_timeout: float = 2.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RedirectSettings:
        primary = env.read_database_url(environ)
        lookups = primary
        if environ.get("REDIRECT_DATABASE_URL", "").strip():
            lookups = env.read_database_url(environ, "REDIRECT_DATABASE_URL")
        return cls(
            lookup_database_url=lookups,
            primary_database_url=primary,
            cache_max_entries=env.read_int(
                environ, "REDIRECT_CACHE_SIZE", cls.cache_max_entries, minimum=1, maximum=10_000_000
            ),
            cache_ttl=env.read_float(
                environ, "REDIRECT_CACHE_TTL", cls.cache_ttl, minimum=0.1, maximum=86_400
            ),
            negative_ttl=env.read_float(
                environ, "REDIRECT_NEGATIVE_TTL", cls.negative_ttl, minimum=0.1, maximum=3_600
            ),
            db_timeout=env.read_float(
                environ, "REDIRECT_DB_TIMEOUT", cls.db_timeout, minimum=0.05, maximum=60
            ),
            log_level=env.read_log_level(environ),
        )
