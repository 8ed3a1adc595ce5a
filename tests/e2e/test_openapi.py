"""The management API against its own OpenAPI document: a schemathesis run on the live service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

ST = str(Path(sys.executable).parent / "st")


def test_the_document_describes_every_route(running_stack: RunningStack) -> None:
    from services.management.app import create_app
    from services.management.settings import ManagementSettings

    base = f"http://127.0.0.1:{running_stack.settings.management_port}"
    document = httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    app = create_app(ManagementSettings.from_env({"DATABASE_URL": "postgresql://unused@/x"}))
    starlette = app.app.app  # RequestContext -> Door -> Starlette
    api_routes = [route for route in starlette.routes if hasattr(getattr(route, "app", None), "handlers")]
    # Every other route is the console's (HTML pages, not the API: the document leaves them out),
    # or the edge's refusal pages (shared/edge_pages.py).
    others = {route.path for route in starlette.routes if route not in api_routes}
    assert others
    assert all(
        path in ("/", "/console") or path.startswith(("/console/", "/edge-error/")) for path in others
    ), others
    served = {
        (route.path, method.lower())
        for route in api_routes
        for method in route.app.handlers  # every API route dispatches by method (by_method)
    }
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == described


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(
    running_stack: RunningStack, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{running_stack.settings.management_port}"
    result = subprocess.run(
        [
            ST,
            "run",
            f"{base}/api/v1/openapi.json",
            "--checks=all",
            # Our rules are stricter than a schema can say (URL safety, printable text, image sizes
            # drawable at whole pixels), so schema-valid data may rightly get a 422; and a code's
            # history outlives the code on purpose ("where did it point last March?").
            "--exclude-checks=positive_data_acceptance,use_after_free",
            "--max-examples=25",
            # The exports draw every code the run has made, at sizes up to 4096 px: minutes each.
            # Their parameters are the images' and the filters' (walked bound by bound in
            # tests/management/test_openapi.py), their answers tested in test_prints and test_labels.
            "--exclude-operation-id=exportCodesZip",
            "--exclude-operation-id=exportCodesPdf",
            "--workers=1",  # 2 workers trip a thread-safety bug in Hypothesis (lambda source cache)
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
