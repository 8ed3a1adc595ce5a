"""Management service settings, read once from an explicit environment mapping."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from services.management import storage
from services.management.auth.roles import Role
from shared import settings as env
from shared.settings import ConfigError
from shared.urls import own_hosts

# A client secret file holds one line; anything larger is not one.
MAX_SECRET_FILE_BYTES = 4096
# Hosts where OIDC_ISSUER may be plain http (a provider on this machine, as in the tests).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CLAIM_PATH = re.compile(r"[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*")


@dataclass(frozen=True)
class OidcSettings:
    """Sign-in through an OpenID Connect provider (set by ``OIDC_ISSUER``; see auth/oidc.py)."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    # Where a token's groups or roles are: a claim's name, or a dotted path (realm_access.roles).
    roles_claim: str = "groups"
    # Group (or role) name at the provider -> the role it gives here, in OIDC_ROLE_MAP's order.
    role_map: tuple[tuple[str, Role], ...] = ()
    # The `aud` a JWT access token must carry to be accepted on the API (default: the client id).
    audience: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OidcSettings | None:
        """The provider's settings, or ``None`` without ``OIDC_ISSUER``; :class:`ConfigError`
        for a missing or malformed one."""
        issuer = env.read_str(environ, "OIDC_ISSUER", "").strip()
        if not issuer:
            others = sorted(name for name in environ if name.startswith("OIDC_") and environ[name].strip())
            if others:
                raise env.ConfigError(f"{others[0]} is set but OIDC_ISSUER is not: set both, or neither")
            return None
        client_id = env.read_str(environ, "OIDC_CLIENT_ID", "").strip()
        if not client_id:
            raise env.ConfigError(
                "OIDC_CLIENT_ID must be set with OIDC_ISSUER (the console's client at the provider)"
            )
        secret_file = env.read_str(environ, "OIDC_CLIENT_SECRET_FILE", "").strip()
        if not secret_file:
            raise env.ConfigError(
                "OIDC_CLIENT_SECRET_FILE must be set with OIDC_ISSUER (a file holding the client's secret)"
            )
        roles_claim = env.read_str(environ, "OIDC_ROLES_CLAIM", "groups").strip()
        if not CLAIM_PATH.fullmatch(roles_claim):
            raise env.ConfigError(
                "OIDC_ROLES_CLAIM must be a claim's name or a dotted path like realm_access.roles, "
                f"got {roles_claim!r}"
            )
        return cls(
            issuer=read_issuer(environ),
            client_id=client_id,
            client_secret=read_client_secret(Path(secret_file)),
            roles_claim=roles_claim,
            role_map=read_role_map(environ),
            audience=env.read_str(environ, "OIDC_AUDIENCE", "").strip() or client_id,
        )


def read_issuer(environ: Mapping[str, str]) -> str:
    """``OIDC_ISSUER``: an https URL (plain http only for a provider on this machine), kept exactly
    as given, since ID tokens must name the same issuer."""
    raw = environ["OIDC_ISSUER"].strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise env.ConfigError(f"OIDC_ISSUER must be the provider's https URL, got {raw!r}")
    if "@" in parts.netloc:
        raise env.ConfigError("OIDC_ISSUER must not contain credentials")
    if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
        raise env.ConfigError(
            f"OIDC_ISSUER must be https (plain http only for 127.0.0.1 or localhost), got {raw!r}"
        )
    return raw


def read_client_secret(path: Path) -> str:
    """The client secret on the first (only) line of ``OIDC_CLIENT_SECRET_FILE``."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise env.ConfigError(f"OIDC_CLIENT_SECRET_FILE {path} cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise env.ConfigError(f"OIDC_CLIENT_SECRET_FILE {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        lines = raw.decode().strip().splitlines()
    except UnicodeDecodeError:
        raise env.ConfigError(f"OIDC_CLIENT_SECRET_FILE {path} is not UTF-8 text") from None
    if len(lines) != 1 or not lines[0].strip():
        raise env.ConfigError(f"OIDC_CLIENT_SECRET_FILE {path} must hold the secret alone on one line")
    return lines[0].strip()


def read_role_map(environ: Mapping[str, str]) -> tuple[tuple[str, Role], ...]:
    """``OIDC_ROLE_MAP``: ``group=role`` pairs, comma-separated; every role one of ours."""
    raw = env.read_str(environ, "OIDC_ROLE_MAP", "").strip()
    if not raw:
        raise env.ConfigError(
            "OIDC_ROLE_MAP must be set with OIDC_ISSUER, e.g. qr-admins=admin,qr-editors=editor "
            "(a person in none of these groups is refused)"
        )
    pairs: list[tuple[str, Role]] = []
    for item in raw.split(","):
        group, equals, role = (part.strip() for part in item.partition("="))
        if not equals or not group or not role:
            raise env.ConfigError(f"OIDC_ROLE_MAP: {item.strip()!r} is not group=role")
        if role not in Role.__members__:
            raise env.ConfigError(
                f"OIDC_ROLE_MAP: {role!r} is not a role (one of {', '.join(Role.__members__)})"
            )
        if any(group == known for known, _ in pairs):
            raise env.ConfigError(f"OIDC_ROLE_MAP names {group!r} twice")
        pairs.append((group, Role(role)))
    return tuple(pairs)


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
    # Sign-in through an OpenID Connect provider, and its JWT access tokens on the API (None: off).
    oidc: OidcSettings | None = None

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
            oidc=OidcSettings.from_env(environ),
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
