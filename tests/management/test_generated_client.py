"""A typed client generated from the service's own OpenAPI document, with openapi-python-client's
default settings, works: it creates, lists, updates and deletes a code, and reads a 422 as the
document's error. (A generator refuses a document whose enum lists one value twice, L and l.)"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

pytestmark = pytest.mark.anyio

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "qr_service_management_api_client"  # from the document's title


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """Where the client goes; its modules forgotten afterwards."""
    yield tmp_path / "client"
    for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
        del sys.modules[name]
    if str(tmp_path / "client") in sys.path:
        sys.path.remove(str(tmp_path / "client"))


def _generate(document: bytes, out: Path) -> None:
    path = out.parent / "openapi.json"
    path.write_bytes(document)
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(path), "--output-path", str(out)],
        # Its default post-hooks run ruff, from this environment.
        env={**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / PACKAGE / "api" / "default" / "create_code.py").exists(), result.stdout[-3000:]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_creates_lists_updates_and_deletes_a_code(
    client: httpx.AsyncClient, generated: Path
) -> None:
    _generate((await client.get("/api/v1/openapi.json")).content, generated)
    sys.path.insert(0, str(generated))
    package = importlib.import_module(PACKAGE)
    models = _module("models")
    create_code, list_codes = _module("api.default.create_code"), _module("api.default.list_codes")
    update_code, delete_code = _module("api.default.update_code"), _module("api.default.delete_code")
    get_code = _module("api.default.get_code")

    typed = package.Client(base_url="http://localhost")
    typed.set_async_httpx_client(client)  # the service's ASGI app, as every test here reaches it

    made = await create_code.asyncio_detailed(
        client=typed, body=models.NewQRCode(target_url="https://example.org/menu", slug="menu")
    )
    assert made.status_code == 201
    assert isinstance(made.parsed, models.QRCode)
    assert (made.parsed.id, made.parsed.redirect_status) == ("menu", 302)

    listed = await list_codes.asyncio(client=typed)
    assert isinstance(listed, models.QRCodeList)
    assert [code.id for code in listed.items] == ["menu"]

    changed = await update_code.asyncio(code_id="menu", client=typed, body=models.QRCodeChanges(title="Menu"))
    assert isinstance(changed, models.QRCode)
    assert (changed.title, changed.target_url) == ("Menu", "https://example.org/menu")

    refused = await create_code.asyncio_detailed(
        client=typed, body=models.NewQRCode(target_url="javascript:alert(1)")
    )
    assert refused.status_code == 422
    assert isinstance(refused.parsed, models.Error)
    assert refused.parsed.error.code == "invalid_field"
    assert refused.parsed.error.message == "target_url: must be an absolute http or https URL"
    assert refused.parsed.error.details.to_dict() == {"field": "target_url"}

    deleted = await delete_code.asyncio_detailed(code_id="menu", client=typed)
    assert deleted.status_code == 204
    gone = await get_code.asyncio_detailed(code_id="menu", client=typed)
    assert gone.status_code == 404
    assert isinstance(gone.parsed, models.Error)
