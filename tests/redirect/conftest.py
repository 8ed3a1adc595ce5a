"""The redirect app on this test's database, and a client that speaks to it in process (its
lifespan run, its change listener connected). A module with other settings declares its own
``app``; ``client`` follows it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.redirect.app import RedirectApp, create_app
from services.redirect.settings import RedirectSettings


@pytest.fixture
def app(database_url: str) -> RedirectApp:
    return create_app(RedirectSettings(lookup_database_url=database_url, primary_database_url=database_url))


@pytest.fixture
async def client(app: RedirectApp) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        await asyncio.wait_for(app.listener.connected.wait(), 5)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as http:
            yield http
