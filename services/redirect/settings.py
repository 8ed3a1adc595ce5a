"""Redirect service settings, read once from an explicit environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared import settings as env


@dataclass(frozen=True)
class RedirectSettings:
    # Lookups may go to a replica or through a restricted role; scan writes and the change
    # listener must reach the primary, where the scans live and NOTIFY is sent.
    lookup_database_url: str
    primary_database_url: str
    trusted_proxies: tuple[env.Network, ...] = env.parse_networks("TRUSTED_PROXIES", env.LOOPBACK_NETWORKS)
    cache_max_entries: int = 100_000
    cache_ttl: float = 300.0
    negative_ttl: float = 5.0
    db_timeout: float = 2.0
    # Lookup connections per worker; a worker also holds up to 2 for scan writes and 1 listener.
    db_pool_size: int = 16
    # Prepared statements asyncpg keeps per lookup connection (its default, 100). Set 0 when
    # REDIRECT_DATABASE_URL points at PgBouncer in transaction mode: a statement prepared on one
    # server connection is unknown on the next. Only lookups go there; scan writes (which prepare
    # their statements too) and the listener (whose LISTEN needs a session) stay on DATABASE_URL,
    # straight to PostgreSQL.
    db_statement_cache_size: int = 100
    replica_max_lag: float = 5.0  # seconds a replica may lag before lookups go to the primary
    scan_flush_interval: float = 1.0
    scan_buffer_max: int = 100_000
    access_log: bool = False
    log_level: str = "INFO"
    geoip_database: Path | None = None  # a MaxMind-format file: scans get their country

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RedirectSettings:
        primary = env.read_database_url(environ)
        lookups = primary
        if environ.get("REDIRECT_DATABASE_URL", "").strip():
            lookups = env.read_database_url(environ, "REDIRECT_DATABASE_URL")
        return cls(
            lookup_database_url=lookups,
            primary_database_url=primary,
            trusted_proxies=env.read_networks(environ, "TRUSTED_PROXIES", env.LOOPBACK_NETWORKS),
            cache_max_entries=env.read_int(
                environ, "REDIRECT_CACHE_SIZE", cls.cache_max_entries, minimum=1, maximum=10_000_000
            ),
            cache_ttl=env.read_float(
                environ, "REDIRECT_CACHE_TTL", cls.cache_ttl, minimum=0.1, maximum=86_400
            ),
            negative_ttl=env.read_float(
                environ, "REDIRECT_NEGATIVE_TTL", cls.negative_ttl, minimum=0.1, maximum=3_600
            ),
            db_pool_size=env.read_int(
                environ, "REDIRECT_DB_POOL_SIZE", cls.db_pool_size, minimum=1, maximum=500
            ),
            replica_max_lag=env.read_float(
                environ, "REPLICA_MAX_LAG_SECONDS", cls.replica_max_lag, minimum=0.1, maximum=3600
            ),
            db_statement_cache_size=env.read_int(
                environ,
                "REDIRECT_DB_STATEMENT_CACHE_SIZE",
                cls.db_statement_cache_size,
                minimum=0,
                maximum=10_000,
            ),
            db_timeout=env.read_float(
                environ, "REDIRECT_DB_TIMEOUT", cls.db_timeout, minimum=0.05, maximum=60
            ),
            scan_flush_interval=env.read_float(
                environ, "SCAN_FLUSH_INTERVAL", cls.scan_flush_interval, minimum=0.05, maximum=60
            ),
            scan_buffer_max=env.read_int(
                environ, "SCAN_BUFFER_MAX", cls.scan_buffer_max, minimum=100, maximum=10_000_000
            ),
            access_log=env.read_bool(environ, "REDIRECT_ACCESS_LOG", cls.access_log),
            log_level=env.read_log_level(environ),
            geoip_database=_geoip_database(environ),
        )


def _geoip_database(environ: Mapping[str, str]) -> Path | None:
    """GEOIP_DATABASE, checked at start: a readable MaxMind-format file, or unset."""
    raw = environ.get("GEOIP_DATABASE", "").strip()
    if not raw:
        return None
    path = Path(raw)
    try:
        with path.open("rb") as file:
            file.seek(-128 * 1024, 2) if path.stat().st_size > 128 * 1024 else file.seek(0)
            if b"\xab\xcd\xefMaxMind.com" not in file.read():
                raise env.ConfigError(f"GEOIP_DATABASE: {path} is not a MaxMind-format (.mmdb) file")
    except OSError as exc:
        raise env.ConfigError(f"GEOIP_DATABASE: cannot read {path}: {exc.strerror or exc}") from None
    return path
