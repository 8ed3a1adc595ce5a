"""Operator-side settings: where the checkout keeps its data, ports, and the stack's choices.

Relative paths (``var``, ``backups``) are taken relative to the checkout, not the current folder,
so ``qr-manage`` finds the same embedded database wherever it is run from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.management import storage
from shared import settings as env

# The entrypoints' write timeout (services/ops/edge.py): how long an answer may take to send, so an
# hour (an export of 10,000 images streams for minutes); it still bounds a client that stops reading.
ENTRYPOINT_WRITE_TIMEOUT = 3600
# The longest a backend may take to start answering before the client gets a 504.
MAX_BACKEND_TIMEOUT = 50

CHECKOUT = Path(__file__).resolve().parents[2]


def _path(environ: Mapping[str, str], name: str, default: str) -> Path:
    path = Path(env.read_str(environ, name, default)).expanduser()
    return path if path.is_absolute() else CHECKOUT / path


@dataclass(frozen=True)
class OpsSettings:
    var_dir: Path
    backup_dir: Path
    backup_retention: int
    database_url: str | None  # None: the embedded server under var/
    # Scheduled backups (qr-manage run, and compose's backup job: qr-manage backup --schedule).
    backup_interval_hours: float = 24.0
    # qr-manage status asks for attention when the newest backup is older (the schedule + 2 h slack
    # unless set).
    backup_max_age_hours: float = 26.0
    # Raw scans older than this go (a month's partition at a time); the rollups stay for ever.
    scan_retention_days: int = 400
    # The audit log's entries older than this go (qr-manage maintain).
    audit_retention_days: int = 400
    # The management service's image store and its bound (qr-manage status shows both).
    qr_data_dir: Path = CHECKOUT / "var" / "qr_data"
    qr_data_max_bytes: int = storage.DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OpsSettings:
        database_url = None
        if environ.get("DATABASE_URL", "").strip():
            database_url = env.read_database_url(environ)
        interval = env.read_float(
            environ, "BACKUP_INTERVAL_HOURS", cls.backup_interval_hours, minimum=0.001, maximum=24 * 365
        )
        return cls(
            var_dir=_path(environ, "QR_VAR_DIR", "var"),
            backup_dir=_path(environ, "BACKUP_DIR", "backups"),
            backup_retention=env.read_int(environ, "BACKUP_RETENTION", 7, minimum=1, maximum=10_000),
            database_url=database_url,
            # Down to 3.6 s: the tests take backups on a schedule of a few seconds.
            backup_interval_hours=interval,
            backup_max_age_hours=env.read_float(
                environ, "BACKUP_MAX_AGE_HOURS", interval + 2, minimum=0.1, maximum=24 * 365
            ),
            scan_retention_days=env.read_int(
                environ, "SCAN_RETENTION_DAYS", cls.scan_retention_days, minimum=32, maximum=36_500
            ),
            audit_retention_days=env.read_int(
                environ, "AUDIT_RETENTION_DAYS", cls.audit_retention_days, minimum=1, maximum=36_500
            ),
            qr_data_dir=_path(environ, "QR_DATA_DIR", "var/qr_data"),
            qr_data_max_bytes=storage.read_max_bytes(environ),
        )


@dataclass(frozen=True)
class StackSettings:
    """Everything ``make run`` decides before it starts a process."""

    ops: OpsSettings
    http_port: int
    https_port: int
    edge_admin_port: int
    redirect_port: int
    management_port: int
    redirect_workers: int
    public_base_url: str
    admin_allowlist: str
    qr_data_dir: Path
    rate_limits: dict[str, int]
    admin_hosts: str = "localhost,127.0.0.1"
    edge_trusted_proxies: tuple[str, ...] = ()
    backend_timeouts: dict[str, int] = field(
        default_factory=lambda: {"REDIRECT_BACKEND_TIMEOUT": 5, "MANAGEMENT_BACKEND_TIMEOUT": 30}
    )
    # Go's GOGC for Traefik: collect garbage when the heap has grown by this percentage. 200, not
    # Go's 100: collection falls from 3.8% to 1.9% of Traefik's CPU per redirect (make profile), and
    # make bench found its CPU per redirect lower in four runs of five (by 5-10%; the other 10%
    # higher), for some 20 MB more heap under load; 400 did no better.
    edge_gogc: int = 200
    tls_files: tuple[Path, Path] | None = None  # EDGE_TLS_CERT and EDGE_TLS_KEY; None: self-signed
    host: str = "127.0.0.1"
    # A hot standby of the embedded server under var/replica for the redirect service's lookups.
    embedded_replica: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StackSettings:
        ports = {
            name: env.read_int(environ, name, default, minimum=1, maximum=65535)
            for name, default in (
                ("EDGE_HTTP_PORT", 8080),
                ("EDGE_HTTPS_PORT", 8443),
                ("EDGE_ADMIN_PORT", 8082),
                ("REDIRECT_PORT", 8001),
                ("MANAGEMENT_PORT", 8002),
            )
        }
        if len(set(ports.values())) != len(ports):
            raise env.ConfigError(f"the ports must all differ: {ports}")
        allowlist = environ.get("ADMIN_ALLOWLIST", env.LOOPBACK_NETWORKS)
        env.parse_networks("ADMIN_ALLOWLIST", allowlist)  # fail here, not silently inside Traefik
        ops = OpsSettings.from_env(environ)
        rate_limits = {
            name: env.read_int(environ, name, default, minimum=0, maximum=1_000_000)
            for name, default in (
                ("RATE_LIMIT_AVERAGE", 100),
                ("RATE_LIMIT_BURST", 200),
                ("ADMIN_RATE_LIMIT_AVERAGE", 50),
                ("ADMIN_RATE_LIMIT_BURST", 100),
            )
        }
        trusted = environ.get("EDGE_TRUSTED_PROXIES", "").strip()
        # Clearly below the entrypoints' write timeout: a backend that hangs then gets the client a
        # 504, where an equal or longer one would have the client's connection closed without a status.
        backend_timeouts = {
            name: env.read_int(environ, name, default, minimum=1, maximum=MAX_BACKEND_TIMEOUT)
            for name, default in (("REDIRECT_BACKEND_TIMEOUT", 5), ("MANAGEMENT_BACKEND_TIMEOUT", 30))
        }
        return cls(
            ops=ops,
            edge_gogc=env.read_int(environ, "EDGE_GOGC", cls.edge_gogc, minimum=50, maximum=1000),
            http_port=ports["EDGE_HTTP_PORT"],
            https_port=ports["EDGE_HTTPS_PORT"],
            edge_admin_port=ports["EDGE_ADMIN_PORT"],
            redirect_port=ports["REDIRECT_PORT"],
            management_port=ports["MANAGEMENT_PORT"],
            redirect_workers=env.read_int(environ, "REDIRECT_WORKERS", 1, minimum=1, maximum=64),
            public_base_url=env.read_base_url(
                environ, "PUBLIC_BASE_URL", f"http://localhost:{ports['EDGE_HTTP_PORT']}"
            ),
            admin_allowlist=",".join(part.strip() for part in allowlist.split(",")),
            qr_data_dir=_path(environ, "QR_DATA_DIR", "var/qr_data"),
            rate_limits=rate_limits,
            admin_hosts=",".join(sorted(env.read_host_names(environ, "ADMIN_HOSTS", "localhost,127.0.0.1"))),
            edge_trusted_proxies=tuple(
                str(network) for network in env.parse_networks("EDGE_TRUSTED_PROXIES", trusted)
            )
            if trusted
            else (),
            backend_timeouts=backend_timeouts,
            tls_files=_tls_files(environ),
            embedded_replica=_embedded_replica(environ, ops),
        )

    def edge_environment(self) -> dict[str, str]:
        """What the dynamic file is templated from (besides the upstreams and the certificate)."""
        return {
            "ADMIN_ALLOWLIST": self.admin_allowlist,
            "ADMIN_HOSTS": self.admin_hosts,
            "EDGE_TRUSTED_PROXIES": ",".join(self.edge_trusted_proxies),
            **{name: str(value) for name, value in self.rate_limits.items()},
            **{name: str(value) for name, value in self.backend_timeouts.items()},
            "GOGC": str(self.edge_gogc),
        }


def _tls_files(environ: Mapping[str, str]) -> tuple[Path, Path] | None:
    cert, key = environ.get("EDGE_TLS_CERT", "").strip(), environ.get("EDGE_TLS_KEY", "").strip()
    if not cert and not key:
        return None
    if not (cert and key):
        raise env.ConfigError("EDGE_TLS_CERT and EDGE_TLS_KEY go together: set both or neither")
    files = Path(cert).resolve(), Path(key).resolve()
    for name, path in zip(("EDGE_TLS_CERT", "EDGE_TLS_KEY"), files, strict=True):
        if not path.is_file():
            raise env.ConfigError(f"{name}: {path} is not a readable file")
    return files


def _embedded_replica(environ: Mapping[str, str], ops: OpsSettings) -> bool:
    wanted = env.read_bool(environ, "EMBEDDED_REPLICA", False)
    if wanted and ops.database_url is not None:
        raise env.ConfigError(
            "EMBEDDED_REPLICA=true makes a standby of the embedded server: leave DATABASE_URL unset "
            "(with a server of your own, point REDIRECT_DATABASE_URL at its replica)"
        )
    if wanted and environ.get("REDIRECT_DATABASE_URL", "").strip():
        raise env.ConfigError("EMBEDDED_REPLICA=true sets REDIRECT_DATABASE_URL itself: leave it unset")
    return wanted
