"""Management service settings, read once from an explicit environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.management import storage
from shared import settings as env
from shared.settings import ConfigError
from shared.urls import own_hosts

# network: the allowlist alone decides (every caller it lets in is an admin); identity: the
# allowlist and a token or a signed-in person on every admin request.
AdminAuth = Literal["network", "identity"]
ADMIN_AUTH_MODES: tuple[AdminAuth, ...] = ("network", "identity")


@dataclass(frozen=True)
class ManagementSettings:
    database_url: str
    public_base_url: str
    qr_data_dir: Path
    admin_allowlist: tuple[env.Network, ...]
    trusted_proxies: tuple[env.Network, ...]
    host: str = "127.0.0.1"
    port: int = 8002
    log_level: str = "INFO"
    max_body_bytes: int = 64 * 1024
    bulk_max_body_bytes: int = 16 * 1024 * 1024  # POST /api/v1/qr/bulk: 10,000 rows
    render_concurrency: int = 2
    image_cache_bytes: int = 64 * 1024 * 1024
    # The image store on disk, least recently used images dropped beyond it (0: no bound).
    qr_data_max_bytes: int = storage.DEFAULT_MAX_BYTES
    # Codes in one PDF or ZIP export; a larger selection is refused before any work starts.
    export_max_codes: int = 2000
    logo_max_bytes: int = 1024 * 1024
    admin_tokens_file: Path | None = None
    admin_auth: AdminAuth = "network"
    admin_hosts: frozenset[str] = frozenset({"localhost", "127.0.0.1"})
    backup_dir: Path | None = None  # read for the backup-age metric
    # Database connections per worker: kept open, and opened beyond that under load (then closed).
    db_pool_size: int = 4
    db_max_overflow: int = 4
    # Whether the scan writer has a GeoIP file (GEOIP_DATABASE): without one, "countries" is null.
    geoip_configured: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ManagementSettings:
        tokens = env.read_str(environ, "ADMIN_TOKENS_FILE", "")
        return cls(
            database_url=env.read_database_url(environ),
            public_base_url=env.read_base_url(environ, "PUBLIC_BASE_URL", "http://localhost:8080"),
            qr_data_dir=Path(env.read_str(environ, "QR_DATA_DIR", "var/qr_data")),
            admin_allowlist=env.read_networks(environ, "ADMIN_ALLOWLIST", env.LOOPBACK_NETWORKS),
            trusted_proxies=env.read_networks(environ, "TRUSTED_PROXIES", env.LOOPBACK_NETWORKS),
            host=env.read_str(environ, "MANAGEMENT_HOST", cls.host),
            port=env.read_int(environ, "MANAGEMENT_PORT", cls.port, minimum=1, maximum=65535),
            log_level=env.read_log_level(environ),
            render_concurrency=env.read_int(
                environ, "RENDER_CONCURRENCY", cls.render_concurrency, minimum=1, maximum=64
            ),
            image_cache_bytes=env.read_int(
                environ, "IMAGE_CACHE_BYTES", cls.image_cache_bytes, minimum=0, maximum=16 * 1024**3
            ),
            qr_data_max_bytes=storage.read_max_bytes(environ),
            export_max_codes=env.read_int(
                environ, "EXPORT_MAX_CODES", cls.export_max_codes, minimum=1, maximum=1_000_000
            ),
            logo_max_bytes=env.read_int(
                environ, "LOGO_MAX_BYTES", cls.logo_max_bytes, minimum=1024, maximum=16 * 1024 * 1024
            ),
            max_body_bytes=env.read_int(
                environ, "MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024, maximum=16 * 1024 * 1024
            ),
            bulk_max_body_bytes=env.read_int(
                environ,
                "BULK_MAX_BODY_BYTES",
                cls.bulk_max_body_bytes,
                minimum=1024,
                maximum=256 * 1024 * 1024,
            ),
            db_pool_size=env.read_int(
                environ, "MANAGEMENT_DB_POOL_SIZE", cls.db_pool_size, minimum=1, maximum=200
            ),
            db_max_overflow=env.read_int(
                environ, "MANAGEMENT_DB_MAX_OVERFLOW", cls.db_max_overflow, minimum=0, maximum=200
            ),
            admin_hosts=env.read_host_names(environ, "ADMIN_HOSTS", "localhost,127.0.0.1"),
            geoip_configured=bool(env.read_str(environ, "GEOIP_DATABASE", "")),
            backup_dir=Path(env.read_str(environ, "BACKUP_DIR", "backups")),
            admin_tokens_file=Path(tokens) if tokens else None,
            admin_auth=read_admin_auth(environ),
        )

    @property
    def own_hosts(self) -> frozenset[str]:
        """Where this service's short links live; destinations there would loop."""
        return own_hosts(self.public_base_url)


def read_admin_auth(environ: Mapping[str, str]) -> AdminAuth:
    """ADMIN_AUTH: ``network`` by default; ``identity`` when set so, or implied by ADMIN_TOKENS_FILE
    or OIDC_ISSUER (either with ``network`` said out loud is a contradiction, refused)."""
    given = env.read_str(environ, "ADMIN_AUTH", "").strip().lower()
    if given and given not in ADMIN_AUTH_MODES:
        raise ConfigError(f"ADMIN_AUTH must be network or identity, not {given[:40]!r}")
    implied = [name for name in ("ADMIN_TOKENS_FILE", "OIDC_ISSUER") if env.read_str(environ, name, "")]
    if given == "network" and implied:
        raise ConfigError(
            f"ADMIN_AUTH=network lets every allowed address in as an admin, but {' and '.join(implied)} "
            "asks for an identity on every admin request: set ADMIN_AUTH=identity, or unset "
            + " and ".join(implied)
        )
    return "identity" if given == "identity" or implied else "network"
