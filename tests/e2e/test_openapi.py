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
    """The live service's document against the app's routes (the same walk runs without a server
    in tests/management/test_operations.py)."""
    from services.management.app import create_app
    from services.management.settings import ManagementSettings
    from tests.management.test_operations import starlette_of, unmatched

    base = f"http://127.0.0.1:{running_stack.settings.management_port}"
    document = httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    app = create_app(ManagementSettings.from_env({"DATABASE_URL": "postgresql://unused@/x"}))
    assert unmatched(starlette_of(app).routes, document) == []


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
