"""The management service against a real PostgreSQL, through its ASGI app and lifespan."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import zxingcpp
from asgi_lifespan import LifespanManager
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.management.app import create_app
from services.management.settings import ManagementSettings
from shared.database import sqlalchemy_url

BASE = "http://qr.test:8080"


@pytest.fixture
def environ(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "PUBLIC_BASE_URL": BASE, "QR_DATA_DIR": str(tmp_path / "images")}


@pytest.fixture
def settings(environ: dict[str, str]) -> ManagementSettings:
    return ManagementSettings.from_env(environ)


async def serve(
    settings: ManagementSettings, *, client_address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_address, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            yield http


@pytest.fixture
async def client(settings: ManagementSettings) -> AsyncIterator[httpx.AsyncClient]:
    async for http in serve(settings):
        yield http


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/qr", json=body)


def decode(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


async def count_rows(database_url: str, table: str = "qr_codes") -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await connection.close()


async def bulk_codes(
    client: httpx.AsyncClient, count: int, tag: str, *, title: str = "Table {n}"
) -> list[dict[str, Any]]:
    """``count`` codes tagged ``tag`` in one bulk request, as created (in order)."""
    rows = [
        {"target_url": f"https://example.org/{tag}/{n}", "title": title.format(n=n), "tags": [tag]}
        for n in range(count)
    ]
    response = await client.post("/api/v1/qr/bulk", json=rows)
    assert response.status_code == 201, response.text
    return response.json()["created"]  # type: ignore[no-any-return]


async def measure_stream(
    database_url: str, stream: Callable[[AsyncEngine], AsyncIterator[bytes]]
) -> tuple[int, int, int]:
    """Lines and bytes of what ``stream`` yields, read chunk by chunk as a server sends it, and the
    most memory Python held meanwhile."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    tracemalloc.start()
    try:
        received = lines = 0
        async for chunk in stream(engine):
            received += len(chunk)
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await engine.dispose()
    return lines, received, peak
