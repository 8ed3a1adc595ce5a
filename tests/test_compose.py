"""compose.yaml as the deployment design draws it, checked from the file: the Compose
Specification's schema, the two networks, the volumes, ./backups on the host, health checks, start
order, restart policies, read-only containers, image names. `make test-compose`
(tests/deploy/) runs the same file for real on a Docker engine; these checks run everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = Path(__file__).with_name("schemas") / "compose-spec.json"

EDGE = "traefik_net"
INTERNAL = "qr_generator_network"
DOCKER_API = "docker_api"
PROXY = "docker-socket-proxy"
LONG_RUNNING = ("db", "redirect", "management", "backup", "maintenance", "traefik", PROXY)
APP = ("migrate", "redirect", "management", "backup", "maintenance")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def _networks(service: dict[str, Any]) -> set[str]:
    networks = service.get("networks", [])
    return set(networks if isinstance(networks, list) else networks.keys())


def test_compose_yaml_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_file(compose: dict[str, Any]) -> None:
    """The validation above can fail: a misspelt key and a wrong type are both refused."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["db"]["restrat"] = "always"
    broken["services"]["traefik"]["ports"] = "80:80"
    assert len(list(validator.iter_errors(broken))) >= 2


def test_networks_as_designed(compose: dict[str, Any]) -> None:
    services, networks = compose["services"], compose["networks"]
    assert set(networks) == {EDGE, INTERNAL, DOCKER_API}
    assert networks[INTERNAL]["internal"] is True  # PostgreSQL and the jobs have no route out
    assert networks[DOCKER_API]["internal"] is True
    assert not networks[EDGE].get("internal", False)
    # Its Docker provider finds the redirect containers on the network of this very name.
    assert networks[EDGE]["name"] == EDGE
    assert _networks(services["traefik"]) == {EDGE, DOCKER_API}  # Traefik cannot reach PostgreSQL
    assert _networks(services[PROXY]) == {DOCKER_API}  # the socket proxy: Traefik alone reaches it
    assert _networks(services["db"]) == {INTERNAL}
    for name in ("redirect", "management"):
        assert _networks(services[name]) == {EDGE, INTERNAL}, name
    for name in ("migrate", "backup", "maintenance"):
        assert _networks(services[name]) == {INTERNAL}, name
    for name in ("prometheus", "grafana"):
        assert _networks(services[name]) == {EDGE}, name
    # The services believe forwarded headers from Traefik's fixed address on traefik_net only.
    address = services["traefik"]["networks"][EDGE]["ipv4_address"]
    assert services["redirect"]["environment"]["TRUSTED_PROXIES"] == f"{address}/32"
    subnet = networks[EDGE]["ipam"]["config"][0]["subnet"]
    assert address.rsplit(".", 1)[0] == subnet.rsplit(".", 1)[0]


def test_only_traefik_publishes_beyond_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            published_to_network = not str(port).startswith("127.0.0.1:")
            if name == "traefik" and published_to_network:
                assert str(port).endswith((":80", ":443")), port
            else:
                assert not published_to_network, (name, port)
    assert {str(p).rsplit(":", 1)[1] for p in compose["services"]["traefik"]["ports"]} == {
        "80",
        "443",
        "8081",  # the admin API for the Docker host itself, on its loopback
        "8082",
    }


def test_volumes_as_designed_and_backups_on_the_host(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"qr_data", "postgres_data", "traefik-certificates"} <= set(compose["volumes"])
    assert "postgres_data:/var/lib/postgresql" in services["db"]["volumes"]
    assert "qr_data:/data/qr" in services["management"]["volumes"]
    assert "traefik-certificates:/etc/traefik/acme" in services["traefik"]["volumes"]
    # ./backups bind-mounted: `ls backups/` on the host shows the archives.
    assert "./backups:/backups" in services["backup"]["volumes"]
    assert "./backups:/backups:ro" in services["management"]["volumes"]  # the backup-age metric
    assert services["backup"]["environment"]["BACKUP_DIR"] == "/backups"
    # Written as the host user who owns ./backups, so that the archives are theirs to read.
    assert services["backup"]["user"] == "${BACKUP_UID:-1000}:${BACKUP_GID:-1000}"
    assert (ROOT / "backups" / ".gitkeep").exists()  # the folder exists in a clone, owned by its user
    # Every named volume a service mounts is declared, and every declared one is used.
    used = {
        mount.split(":", 1)[0]
        for service in services.values()
        for mount in service.get("volumes", [])
        if not mount.startswith(("./", "/"))
    }
    assert used == set(compose["volumes"])


def test_backups_and_maintenance_run_on_the_schedules_qr_manage_keeps(compose: dict[str, Any]) -> None:
    from services.ops import cli

    backup, maintenance = compose["services"]["backup"], compose["services"]["maintenance"]
    assert backup["command"] == ["qr-manage", "backup", "--schedule"]
    assert backup["environment"]["BACKUP_INTERVAL_HOURS"] == "${BACKUP_INTERVAL_HOURS:-24}"
    # Python itself, never a shell loop, as PID 1: a SIGTERM stops it at once.
    assert maintenance["command"] == ["qr-manage", "maintain", "--schedule"]
    # The health checks read, with the shell, what the schedules write at every turn.
    for service, written in ((backup, cli.BACKUP_HEALTH), (maintenance, cli.MAINTAINED_STAMP)):
        kind, line = service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        assert f"/tmp/{written.name}" in line, line
        assert "python" not in line, line


def test_health_checks_start_order_restarts_and_read_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck", {})
        assert not check.get("disable"), f"{name}'s health check is off"
        assert check.get("test"), f"{name} has no health check"
        assert services[name]["restart"] == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"  # a one-shot job
    # postgres healthy -> migrate completed -> the services and jobs -> Traefik once they are healthy.
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("redirect", "management", "backup", "maintenance"):
        assert services[name]["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    assert services["traefik"]["depends_on"] == {
        PROXY: {"condition": "service_healthy"},
        "redirect": {"condition": "service_healthy"},
        "management": {"condition": "service_healthy"},
    }
    # Docker Engine 20.10 (Debian's and Ubuntu's packages) refuses start_interval (Engine 25+).
    for name, service in services.items():
        assert "start_interval" not in service.get("healthcheck", {}), name
    for name in (*APP, "traefik"):
        assert services[name]["read_only"] is True, name
    for name in APP:
        assert services[name]["tmpfs"] == ["/tmp"], name


def test_the_health_checks_name_real_commands(compose: dict[str, Any]) -> None:
    from services.ops.cli import main as qr_manage

    services = compose["services"]
    backup_options = {option for param in qr_manage.commands["backup"].params for option in param.opts}
    assert {"--schedule", "--check"} <= backup_options
    # The services' checks ask /livez on the port each one is told it serves.
    for name, port in (("redirect", "8001"), ("management", "8002")):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "/livez" in test, name
        assert "SERVICE_PORT" in test, name
        assert services[name]["environment"]["SERVICE_PORT"] == port
    assert re.search(
        r"--configfile=/etc/traefik/traefik.yml", " ".join(services["traefik"]["healthcheck"]["test"])
    )


def test_the_database_password_is_a_secret_file_not_an_environment_variable(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert compose["secrets"] == {"postgres_password": {"file": "./secrets/postgres_password"}}
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in services["db"]["environment"]
    for name in ("db", *APP):
        assert services[name]["secrets"] == ["postgres_password"], name
    for name in APP:
        environment = services[name]["environment"]
        assert environment["DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password", name
        assert "@" in environment["DATABASE_URL"], name
        assert ":" not in environment["DATABASE_URL"].split("//", 1)[1].split("@", 1)[0], name  # no password
    text = (ROOT / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD}" not in text
    for ignore in (".gitignore", ".dockerignore"):  # never committed, never sent to a build
        assert "secrets/" in (ROOT / ignore).read_text().split(), ignore


def test_the_documented_secret_commands_make_a_password_the_services_read(tmp_path: Path) -> None:
    """The two lines docs/operations.md gives for the secret, run as written."""
    import shutil
    import subprocess

    from shared.database import split_password
    from shared.settings import read_database_url

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    page = (ROOT / "docs" / "operations.md").read_text().splitlines()
    lines = [
        line.split("  #", 1)[0].strip()
        for line in page
        if line.startswith(("mkdir -p secrets", "openssl rand"))
    ]
    assert len(lines) == 2, lines
    for line in lines:
        subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True, timeout=30)
    secret = tmp_path / "secrets" / "postgres_password"
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert secret.stat().st_mode & 0o777 == 0o644
    assert re.fullmatch(r"[0-9a-f]{48}\n", secret.read_text())
    environ = {"DATABASE_URL": "postgresql://qr@db:5432/qr", "DATABASE_PASSWORD_FILE": str(secret)}
    assert split_password(read_database_url(environ))[1] == secret.read_text().strip()


def _file_redirect_service() -> dict[str, str]:
    """The health check and transport of the dynamic file's own redirect service (make run)."""
    text = (ROOT / "infra" / "traefik" / "dynamic_conf.yml").read_text()
    block = text.split("\n    redirect:\n      loadBalancer:\n", 1)[1].split("\n{{- end }}", 1)[0]
    found = dict(re.findall(r"^\s+(serversTransport|path|interval|timeout): (\S+)$", block, re.M))
    assert set(found) == {"serversTransport", "path", "interval", "timeout"}, block
    return found


def test_scaled_redirect_containers_are_served_as_the_file_serves_one(compose: dict[str, Any]) -> None:
    """`--scale redirect=N`: Traefik's Docker provider builds the redirect service from these labels;
    they say what the dynamic file says for the one server of `make run`, and no router."""
    services = compose["services"]
    labels = services["redirect"]["labels"]
    prefix = "traefik.http.services.redirect.loadbalancer."
    file_service = _file_redirect_service()
    assert labels["traefik.enable"] == "true"
    assert labels[prefix + "server.port"] == services["redirect"]["environment"]["SERVICE_PORT"]
    assert labels[prefix + "serverstransport"] == file_service["serversTransport"] + "@file"
    for name in ("path", "interval", "timeout"):
        assert labels[prefix + "healthcheck." + name] == file_service[name], name
    assert not [label for label in labels if label.startswith("traefik.http.routers.")]
    # Two services, so the provider makes no router of its own (tests/e2e/test_docker_provider.py).
    assert len({label.split(".")[3] for label in labels if label.startswith("traefik.http.services.")}) == 2
    assert services["traefik"]["environment"]["REDIRECT_SERVICE"] == "redirect@docker"
    # Only the redirect service is discovered; every other container stays unknown to Traefik.
    for name, service in services.items():
        if name != "redirect":
            assert not any(str(label).startswith("traefik.") for label in service.get("labels", {})), name


def test_traefik_reads_docker_through_a_read_only_proxy(compose: dict[str, Any]) -> None:
    from services.ops import edge

    services = compose["services"]
    proxy = services[PROXY]
    assert proxy["volumes"] == ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    assert proxy["environment"]["POST"] == "0"
    assert {k for k, v in proxy["environment"].items() if v == "1"} == {
        "CONTAINERS",
        "EVENTS",
        "PING",
        "VERSION",
    }
    assert "ports" not in proxy
    for name, service in services.items():
        if name != PROXY:
            assert not any("docker.sock" in str(mount) for mount in service.get("volumes", [])), name
    for name in edge.STATIC_FILES:
        options = edge.STATIC_FILES[name]
        assert options.docker_endpoint == f"tcp://{PROXY}:2375", name
        assert options.docker_network == EDGE, name
        assert "exposedByDefault: false" in (ROOT / "infra" / "traefik" / name).read_text(), name


OFFICIAL_IMAGES = {
    "db": ("POSTGRES_IMAGE", "postgres:18"),
    "traefik": ("TRAEFIK_IMAGE", "traefik:v3.7"),
    PROXY: ("DOCKER_SOCKET_PROXY_IMAGE", "tecnativa/docker-socket-proxy:0.3.0"),
    "prometheus": ("PROMETHEUS_IMAGE", "prom/prometheus:v2.53.0"),
    "grafana": ("GRAFANA_IMAGE", "grafana/grafana:11.1.0"),
}


def test_every_image_is_named_from_the_environment_with_the_official_one_by_default(
    compose: dict[str, Any],
) -> None:
    """An engine without a registry runs the stand-ins `make images` builds (.env.images)."""
    services = compose["services"]
    for name, (variable, official) in OFFICIAL_IMAGES.items():
        assert services[name]["image"] == f"${{{variable}:-{official}}}", name
    for name in (*APP,):
        assert services[name]["image"] == "${QR_IMAGE:-qr-service:local}", name
        assert services[name]["build"]["args"] == {"BASE_IMAGE": "${APP_BASE_IMAGE:-python:3.11-slim}"}
    script = (ROOT / "infra" / "docker" / "local-images.sh").read_text()
    # The script writes a line for each image it builds, the official names' variables.
    for variable in (
        "APP_BASE_IMAGE",
        "QR_IMAGE",
        *(v for v, _ in OFFICIAL_IMAGES.values() if v != "GRAFANA_IMAGE"),
    ):
        assert f"\n{variable}=" in script or f"{variable}=$" in script, variable
        assert re.search(rf"^{variable}=", (ROOT / ".env.example").read_text(), re.M), variable
    for folder in ("postgres", "traefik", "docker-socket-proxy", "prometheus"):
        assert (ROOT / "infra" / "docker" / "local" / folder / "Dockerfile").exists(), folder
    assert ".env.images" in (ROOT / ".gitignore").read_text().split()


def test_least_privilege_in_every_container(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in (*APP, "migrate", "traefik", PROXY, "prometheus", "grafana"):
        assert services[name]["cap_drop"] == ["ALL"], name
        assert services[name]["security_opt"] == ["no-new-privileges:true"], name
    for name in (*APP, "migrate", "traefik", PROXY, "prometheus"):  # Grafana writes its own database
        assert services[name]["read_only"] is True, name
    assert services["traefik"]["cap_add"] == ["NET_BIND_SERVICE"]
    assert services["db"]["security_opt"] == ["no-new-privileges:true"]


def test_the_host_door_lets_in_the_gateway_and_only_on_loopback(compose: dict[str, Any]) -> None:
    """Clients on the Docker host reach Traefik as traefik_net's gateway (Docker's proxy), and so
    does any client of the public ports over IPv6: only the loopback-published localadmin entry
    point admits that address, in Traefik and in the management service."""
    services = compose["services"]
    gateway = compose["networks"][EDGE]["ipam"]["config"][0]["subnet"].replace(".0/24", ".1")
    assert services["traefik"]["environment"]["LOCAL_ADMIN_ALLOWLIST"] == f"{gateway}/32"
    assert "127.0.0.1:${EDGE_LOCAL_ADMIN_PORT:-8081}:8081" in services["traefik"]["ports"]
    assert (
        services["traefik"]["environment"]["ADMIN_ALLOWLIST"]
        == "${ADMIN_ALLOWLIST:?set ADMIN_ALLOWLIST in .env}"
    )
    assert services["management"]["environment"]["ADMIN_ALLOWLIST"].endswith(f",{gateway}/32")


def test_every_production_command_of_the_readme_runs_on_a_real_engine() -> None:
    """Each command of the README's production section is run as written by make test-compose, or
    is one the README shows with its output (an operator's clone, a registry, DNS)."""
    from tests.deploy.conftest import FIRST_START, FIRST_STEPS
    from tests.deploy.harness import readme_production_commands
    from tests.deploy.test_deployment import RUN_AS_WRITTEN, SHOWN

    commands = readme_production_commands()
    assert commands
    run = {*RUN_AS_WRITTEN.values(), *FIRST_STEPS, FIRST_START}
    unexercised = [line for line in commands if line not in run | SHOWN]
    assert not unexercised, unexercised
    assert set(commands) >= SHOWN  # nothing listed that the README no longer says
