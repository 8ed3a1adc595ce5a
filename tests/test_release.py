"""The release pipeline (.github/workflows/release.yml), checked offline: GitHub's workflow schema
as check-jsonschema vendors it, a timeout on every job, and the design's order: build the image,
test, smoke-run the image, push it only on a version tag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")


def check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", schema, str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"])
def test_the_workflow_validates(schema: str) -> None:
    result = check(schema, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "release.yml"
    broken.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step: []\n")
    assert check("vendor.github-workflows", broken).returncode == 1


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_build_test_smoke_then_push_on_a_version_tag(workflow: dict[str, Any]) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["tags"] == ["v*"]
    jobs = workflow["jobs"]
    assert ".ci/run" in _runs(jobs["test"])  # the suite exactly as CI runs it
    image = jobs["image"]
    assert image["needs"] == "test"
    build = next(step for step in image["steps"] if "build-push-action" in step.get("uses", ""))
    assert build["with"]["file"] == "infra/docker/Dockerfile"
    assert build["with"].get("push") is not True  # pushed only after the smoke run
    smoke = _runs(image)
    assert "docker compose up" in smoke
    assert "migrate 0" in smoke  # the one-shot migration succeeded
    assert "http://127.0.0.1:8080/health" in smoke  # through Traefik
    names = [step.get("name", "") for step in image["steps"]]
    assert names.index("push the tested image") > names.index(
        "smoke run (migrate, then /health through Traefik)"
    )
    for step in image["steps"]:
        if "push" in step.get("run", "") or "login-action" in step.get("uses", ""):
            assert step["if"] == "startsWith(github.ref, 'refs/tags/v')", step
    assert workflow["permissions"] == {"contents": "read"}  # least privilege; packages: write on one job
    assert image["permissions"]["packages"] == "write"
