"""`make test-compose`: the deployment run for real on a Docker engine. Collected only when the
Makefile target asks (QR_TEST_COMPOSE=1): `make test` leaves these to it, and `make test-compose`
skips them with one line where no engine answers.

One deployment serves every test of the module, in order: the early tests read it as it came up,
the later ones stop, kill, scale, rebuild and wipe parts of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.deploy.harness import (
    BACKUP_UID,
    DOMAIN,
    GATEWAY,
    OFFICE,
    PHASES,
    PROJECT,
    STRANGER,
    VENV,
    Deployment,
    Ports,
    can_make_namespaces,
    compose_plugin_config,
    copy_project,
    docker_engine_version,
    set_env_values,
)

collect_ignore_glob = [] if os.environ.get("QR_TEST_COMPOSE") == "1" else ["test_*.py"]

PEBBLE = shutil.which("pebble") or ("/usr/bin/pebble" if Path("/usr/bin/pebble").exists() else None)
# The README's production steps the fixture runs as written (tests/test_compose.py checks that
# every command of that section is run by these tests or shown with its output there).
FIRST_STEPS = (
    "mkdir -p backups",
    "mkdir -p secrets && chmod 700 secrets",
    "openssl rand -hex 24 > secrets/postgres_password && chmod 644 secrets/postgres_password",
    "cp .env.example .env",
)
FIRST_START = "docker compose --env-file .env --env-file .env.images up -d --wait"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if PHASES.seconds:
        terminalreporter.write_sep("-", "deployment phases (seconds)")
        for name, seconds in PHASES.seconds.items():
            terminalreporter.write_line(f"{name:<48} {seconds:7.1f}")


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path] | None]:
    """Let's Encrypt's test CA on this machine, for Traefik's ACME resolver in its container (which
    reaches it at traefik_net's gateway): its port and the certificate its HTTPS is checked with.
    None without Debian's pebble."""
    if PEBBLE is None:
        yield None
        return
    from services.ops import edge

    folder = tmp_path_factory.mktemp("pebble")
    certificate, key = edge.ensure_certificate(folder, addresses=(GATEWAY, "127.0.0.1"))
    port = free_port()
    config = {
        "pebble": {
            "listenAddress": f"0.0.0.0:{port}",
            "managementListenAddress": f"127.0.0.1:{free_port()}",
            "certificate": str(certificate),
            "privateKey": str(key),
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    environ = {"PATH": "/usr/bin:/bin", "PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1"}
    with (folder / "pebble.log").open("wb") as log:
        process = subprocess.Popen(
            [PEBBLE, "-config", str(folder / "pebble.json")],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port, certificate
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, pebble: tuple[int, Path] | None
) -> Iterator[Deployment]:
    version = docker_engine_version()
    if version is None:
        pytest.skip("no Docker engine answers (docker version)")
    # A folder of its own, not under pytest's basetemp: another pytest session on this machine may
    # prune that, and the containers mount files from here for the whole run.
    base = Path(tempfile.mkdtemp(prefix="qr-deploy-"))
    folder = base / PROJECT
    folder.mkdir()
    ports = Ports(
        http=free_port(),
        https=free_port(),
        admin=free_port(),
        local_admin=free_port(),
        prometheus=free_port(),
    )
    environ = {
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "DOCKER_CONFIG": str(compose_plugin_config(base / "docker-config")),
    }
    deployment = Deployment(folder, ports, environ)
    deployment.notes["engine"] = version
    with PHASES.timed("copy the project, .env and secrets as the README says"):
        copy_project(folder)
        for step in FIRST_STEPS:
            deployment.sh(step)
        set_env_values(
            folder / ".env",
            {
                "PUBLIC_BASE_URL": f"https://{DOMAIN}",
                "ADMIN_HOSTS": f"{DOMAIN},localhost,127.0.0.1",
                "ADMIN_ALLOWLIST": OFFICE.network,
                "EDGE_HTTP_PORT": str(ports.http),
                "EDGE_HTTPS_PORT": str(ports.https),
                "EDGE_ADMIN_PORT": str(ports.admin),
                "EDGE_LOCAL_ADMIN_PORT": str(ports.local_admin),
                "PROMETHEUS_PORT": str(ports.prometheus),
                "BACKUP_UID": str(BACKUP_UID),
                "BACKUP_GID": str(BACKUP_UID),
                # A backup every 14.4 s and the two newest kept, so that the schedule and the
                # retention show within the test; one light redirect worker per container.
                "BACKUP_INTERVAL_HOURS": "0.004",
                "BACKUP_RETENTION": "2",
                "REDIRECT_WORKERS": "1",
                "REDIRECT_DB_POOL_SIZE": "4",
                # Half the default public rate limit: a burst from one client meets it for sure on
                # a busy machine; the steady scanner (20 a second) stays well below it.
                "RATE_LIMIT_AVERAGE": "50",
                "RATE_LIMIT_BURST": "100",
            },
        )
        os.chown(folder / "backups", BACKUP_UID, BACKUP_UID)  # the checkout's owner's, as on a server
        if pebble is not None:
            # Traefik trusts Pebble's HTTPS (lego reads LEGO_CA_CERTIFICATES): the one addition to
            # compose.yaml, as an operator's compose.override.yaml, read by every command below.
            port, certificate = pebble
            shutil.copy(certificate, folder / "pebble-ca.pem")
            (folder / "compose.override.yaml").write_text(
                "services:\n  traefik:\n    environment:\n"
                "      LEGO_CA_CERTIFICATES: /etc/traefik/pebble-ca.pem\n"
                "    volumes: [./pebble-ca.pem:/etc/traefik/pebble-ca.pem:ro]\n"
            )
            deployment.notes["pebble_directory"] = f"https://{GATEWAY}:{port}/dir"
    # Whatever an interrupted earlier run left on this engine under the same names.
    deployment.compose("--profile", "monitoring", "down", "--volumes", "--remove-orphans", check=False)
    try:
        with PHASES.timed("make images (base reused when the engine has it)"):
            started = time.monotonic()
            # The venv is the checkout's (-o: never remade from the copy).
            deployment.run(["make", "-o", f"{VENV}/.installed", "images", f"VENV={VENV}"], timeout=900)
            deployment.notes["images_seconds"] = time.monotonic() - started
        images = dict(
            line.split("=", 1)
            for line in (folder / ".env.images").read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        deployment.notes["base_image"] = images["APP_BASE_IMAGE"]
        with PHASES.timed("docker compose up -d --wait (first start)"):
            deployment.notes["first_up"] = deployment.sh(FIRST_START, timeout=400)
        # From here on, every command reads both files (the README's `export COMPOSE_ENV_FILES=...`).
        deployment.environ["COMPOSE_ENV_FILES"] = ".env,.env.images"
        if can_make_namespaces():
            OFFICE.create()
            STRANGER.create()
        yield deployment
    finally:
        # QR_TEST_COMPOSE_KEEP=1 leaves it running to look into by hand, in its folder with
        # DOCKER_CONFIG=<folder>/../docker-config and COMPOSE_ENV_FILES=.env,.env.images.
        if os.environ.get("QR_TEST_COMPOSE_KEEP") != "1":
            try:
                deployment.compose(
                    "--profile", "monitoring", "down", "--volumes", "--remove-orphans", "--timeout", "10",
                    check=False, timeout=300,
                )  # fmt: skip
            finally:
                OFFICE.remove()
                STRANGER.remove()
                shutil.rmtree(base, ignore_errors=True)
