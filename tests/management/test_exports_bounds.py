"""The bounds of the PDF and ZIP exports: how many codes one holds (EXPORT_MAX_CODES, counted before
any work), that a client going away stops the work, and that exports never take the render slots
the image requests wait for. Over real HTTP (Hypercorn, as the service runs) where a disconnect
must be real."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from services.management.app import create_app
from services.management.images import Images
from services.management.settings import ManagementSettings
from tests.conftest import free_port
from tests.management.conftest import bulk_codes, serve
from tests.metrics_checks import parse, value

pytestmark = pytest.mark.anyio

EXPORTS = ("/api/v1/qr/export.pdf", "/api/v1/qr/export.zip")


def pipeline_of(app: Any) -> Images:
    """The image pipeline behind the request context and the door (to read its limiters)."""
    images: Images = app.app.app.state.service.images.pipeline
    return images


async def renders(client: httpx.AsyncClient) -> float:
    samples = parse((await client.get("/metrics")).text)
    return sum(value(samples, "qr_image_renders_total", format=f, result="ok") for f in ("png", "svg"))


async def test_an_export_of_more_than_export_max_codes_is_refused_before_any_work(
    client: httpx.AsyncClient,
) -> None:
    await bulk_codes(client, 2001, "hall")
    for path in EXPORTS:
        response = await client.get(path, params={"tag": "hall"})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["details"] == {"field": "selection"}
        assert "more than 2,000 codes" in error["message"]
        assert "at most 2,000 (EXPORT_MAX_CODES)" in error["message"]
    assert await renders(client) == 0  # refused before a single image was made
    document = (await client.get("/api/v1/openapi.json")).json()
    for path in EXPORTS:
        operation = document["paths"][path]["get"]
        assert operation["x-max-codes"] == 2000
        assert "At most 2,000 codes (EXPORT_MAX_CODES)" in operation["description"]
        assert "more than 2,000 codes" in operation["responses"]["422"]["description"]
    # The CSV streams in bounded memory whatever the number: no bound on it.
    assert (await client.get("/api/v1/qr/export.csv", params={"tag": "hall"})).status_code == 200


async def test_the_bound_is_a_setting_and_the_document_states_it(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "EXPORT_MAX_CODES": "3"})
    async for client in serve(settings):
        await bulk_codes(client, 3, "three")
        await bulk_codes(client, 4, "four")
        for path in EXPORTS:
            assert (await client.get(path, params={"tag": "three"})).status_code == 200
            refused = await client.get(path, params={"tag": "four"})
            assert refused.status_code == 422
            assert "at most 3 (EXPORT_MAX_CODES)" in refused.json()["error"]["message"]
        document = (await client.get("/api/v1/openapi.json")).json()
        assert document["paths"]["/api/v1/qr/export.pdf"]["get"]["x-max-codes"] == 3


@pytest.mark.parametrize("value", ["0", "-1", "many", "2000000"])
def test_a_bad_export_bound_stops_the_service(environ: dict[str, str], value: str) -> None:
    from shared.settings import ConfigError

    with pytest.raises(ConfigError, match="EXPORT_MAX_CODES"):
        ManagementSettings.from_env({**environ, "EXPORT_MAX_CODES": value})


# -- a client that goes away -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def over_http(settings: ManagementSettings) -> AsyncIterator[tuple[str, Any]]:
    """The service under Hypercorn on a free port (as ``python -m services.management`` serves
    it), its base URL and app; stopped on the way out."""
    app = create_app(settings)
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 2.0
    stop = asyncio.Event()
    server = asyncio.create_task(hypercorn_serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            await asyncio.sleep(0.05)
        yield f"http://localhost:{port}", app
    finally:
        stop.set()
        await server


def stopped_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "export stopped: the client went away"]


@pytest.mark.parametrize(
    ("path", "params", "kind"),
    [
        ("/api/v1/qr/export.pdf", {"tag": "gone", "size_mm": "10"}, "pdf"),
        ("/api/v1/qr/export.zip", {"tag": "gone", "size": "1200"}, "zip"),
    ],
)
async def test_a_client_that_goes_away_stops_the_export(
    environ: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    path: str,
    params: dict[str, str],
    kind: str,
) -> None:
    caplog.set_level(logging.INFO)
    settings = ManagementSettings.from_env(environ)
    async with over_http(settings) as (base, _), httpx.AsyncClient(base_url=base, timeout=30) as client:
        await bulk_codes(client, 1000, "gone")
        async with client.stream("GET", path, params=params) as response:
            assert response.status_code == 200  # the answer starts at once; then the client hangs up
        for _ in range(600):
            if stopped_lines(caplog):
                break
            await asyncio.sleep(0.05)
        (line,) = stopped_lines(caplog)
        assert line.export == kind  # type: ignore[attr-defined]
        assert line.codes == 1000  # type: ignore[attr-defined]
        assert line.codes_done < 1000  # type: ignore[attr-defined]
        # Nothing more is made for it: the render counter stands still from then on.
        made = await renders(client)
        await asyncio.sleep(1.0)
        assert await renders(client) == made
        assert "export finished" not in caplog.text


async def test_an_image_is_served_while_a_large_export_runs(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "RENDER_CONCURRENCY": "1", "IMAGE_CACHE_BYTES": "0"})
    app = create_app(settings)
    images = pipeline_of(app)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as client:
            made = await bulk_codes(client, 60, "big")
            export = asyncio.create_task(
                client.get("/api/v1/qr/export.zip", params={"tag": "big", "size": "2000"})
            )
            while await renders(client) < 4:  # the export is under way
                # It renders in the exports' own slot: the image requests' slot stays free.
                assert images.limiter.borrowed_tokens == 0
                assert images.limiter.statistics().tasks_waiting == 0
                await asyncio.sleep(0.02)
            image = await client.get(f"/api/v1/qr/{made[0]['id']}/image.png", params={"size": "300"})
            assert image.status_code == 200
            assert not export.done()
            export.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await export
