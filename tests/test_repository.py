"""Facts about the repository itself: documented settings, deploy files, layout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from services.ops.processes import granian_command

ROOT = Path(__file__).resolve().parents[1]
# Read by the code, but the platform's, not ours to document.
PLATFORM_VARIABLES = {"XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "HOME"}


def _documented() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def _read_by_code() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("shared/*.py"), ROOT / "migrations/env.py"]:
        source = path.read_text()
        names |= set(
            re.findall(
                r'(?:read_\w+|environ\.get|read_required)\(\s*(?:environ,\s*)?"([A-Z][A-Z0-9_]+)"', source
            )
        )
        names |= set(re.findall(r'\(\s*"([A-Z][A-Z0-9_]+)",\s*\d+\)', source))  # (name, default) tables
    template = (ROOT / "infra/traefik/dynamic_conf.yml").read_text()
    template = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("#"))
    names |= set(re.findall(r'env "([A-Z][A-Z0-9_]+)"', template))
    return names - PLATFORM_VARIABLES


def test_every_setting_the_code_reads_is_in_env_example() -> None:
    read = _read_by_code()
    assert {"DATABASE_URL", "PUBLIC_BASE_URL", "ADMIN_ALLOWLIST", "REDIRECT_PORT"} <= read  # the scan works
    assert read - _documented() == set()


def test_compose_wires_every_service_to_real_commands() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {
        "db",
        "migrate",
        "redirect",
        "management",
        "backup",
        "maintenance",
        "traefik",
        "docker-socket-proxy",
        "prometheus",
        "grafana",
    }
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert "./infra/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert services["db"]["image"] == "${POSTGRES_IMAGE:-postgres:18}"  # the embedded server's major version
    assert services["redirect"]["command"] == granian_command(
        "0.0.0.0", 8001, workers="${REDIRECT_WORKERS:-2}"
    )
    assert services["management"]["command"] == ["python", "-m", "services.management"]
    mounts = services["traefik"]["volumes"]
    assert "./infra/traefik/${EDGE_STATIC_FILE:-traefik.yml}:/etc/traefik/traefik.yml:ro" in mounts
    assert "traefik-certificates:/etc/traefik/acme" in mounts
    assert "traefik-certificates" in compose["volumes"]
    assert "./infra/traefik/dynamic_conf.yml:/etc/traefik/dynamic_conf.yml:ro" in mounts
    assert services["traefik"]["environment"]["REDIRECT_SERVICE"] == "redirect@docker"
    assert services["traefik"]["environment"]["MANAGEMENT_UPSTREAM"] == "http://management:8002"
    for name in ("migrate", "redirect", "management", "backup", "maintenance"):
        assert services[name]["build"]["dockerfile"] == "infra/docker/Dockerfile"
    # Every qr-manage command a container runs (once or on a schedule) is one the tool has.
    from services.ops.cli import main as qr_manage

    used = {
        word
        for name in ("migrate", "backup", "maintenance")
        for word in re.findall(r"qr-manage ([a-z-]+)", " ".join(services[name]["command"]))
    }
    assert used == {"migrate", "backup", "maintain"}
    assert used <= set(qr_manage.commands)
    # Logs rotate in every container (docs/operations.md, "Rotate logs").
    for name, service in services.items():
        assert service["logging"]["options"] == {"max-size": "10m", "max-file": "5"}, name
    # Every module a container runs exists in the checkout.
    for module in ("services.redirect.app", "services.management.__main__"):
        assert (
            subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=False).returncode == 0
        )


def test_the_redirect_service_starts_without_the_heavy_libraries() -> None:
    probe = (
        "import sys, services.redirect.app; "
        "loaded = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted({'sqlalchemy', 'PIL', 'qrcode', 'zxingcpp', 'alembic', 'pydantic'} & loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_qrctl_starts_without_the_services_libraries() -> None:
    """qrctl reads the API's limits, but must start as quickly as a shell tool: no pydantic, no
    database or image libraries, and httpx only once a request is made."""
    probe = (
        "import sys, services.qrctl.cli; "
        "loaded = {m.split('.')[0] for m in sys.modules}; "
        "print(sorted({'pydantic', 'sqlalchemy', 'asyncpg', 'PIL', 'qrcode', 'httpx'} & loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_layout() -> None:
    for path in (
        "services/redirect",
        "services/management",
        "shared",
        "migrations",
        "infra",
        "tests",
        "compose.yaml",
        "Makefile",
        "pyproject.toml",
        "README.md",
        ".env.example",
        ".ci/run",
    ):
        assert (ROOT / path).exists(), path


def test_the_readme_states_the_limits_the_service_enforces() -> None:
    from services.management import limits

    text = (ROOT / "README.md").read_text()
    dash = "\N{EN DASH}"  # as the README writes ranges
    for stated in (
        f"pixels, {limits.MIN_SIZE}{dash}{limits.MAX_SIZE} (default {limits.DEFAULT_SIZE})",
        f"(default {limits.DEFAULT_PRINT_DPI}, {limits.MIN_DPI}{dash}{limits.MAX_DPI})",
        f"the SVG takes {limits.MIN_SIZE_MM:g}{dash}{limits.MAX_SIZE_MM:g} mm",
        f"the PNG takes {limits.MIN_SIZE_MM:g}{dash}{limits.MAX_PNG_SIZE_MM:g} mm",
        f"modules, 0{dash}{limits.MAX_BORDER} (default {limits.DEFAULT_BORDER}",
        f"`{limits.DEFAULT_ECC}` (default)",
        f"contrast ratio of at least {limits.MIN_CONTRAST}",
        f"`redirect_status` ({'/'.join(map(str, limits.REDIRECT_STATUSES))})",
    ):
        assert stated in text, stated
