"""Driving the code flow without a browser: the management app through httpx (ASGI), the provider
over real HTTP with its development login form (any password; the login names the account)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin

import httpx

from services.management.settings import ManagementSettings
from tests.management.conftest import serve
from tests.oidc.conftest import TestProvider

CALLBACK = "http://localhost/console/auth/callback"


async def app_with_provider(
    environ: dict[str, str], provider: TestProvider, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ManagementSettings.from_env({**environ, **provider.environ(tmp_path / "client-secret")})
    async for http in serve(settings):
        yield http


async def at_provider(location: str, login: str, browser: httpx.AsyncClient) -> str:
    """Signs ``login`` in at the provider from its authorization URL; the URL it sends the browser
    back to (the console's callback, with the code and state)."""
    url = location
    for _ in range(20):
        if url.startswith(CALLBACK):
            return url
        response = await browser.get(url)
        if response.status_code in (302, 303):
            url = urljoin(url, response.headers["location"])
            continue
        assert response.status_code == 200, response.text
        form = re.search(r'action="([^"]+)"', response.text)
        assert form is not None, response.text
        assert 'name="login"' in response.text, response.text
        posted = await browser.post(
            urljoin(url, form.group(1)), data={"prompt": "login", "login": login, "password": "any"}
        )
        assert posted.status_code in (302, 303), posted.text
        url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider never sent the browser back")


async def sign_in(
    app: httpx.AsyncClient, login: str, browser: httpx.AsyncClient | None = None
) -> httpx.Response:
    """The console's sign-in through the provider as ``login``: the callback's answer."""
    start = await app.get("/console/auth/login", params={"next": "/console/scans"})
    assert start.status_code == 303, start.text
    if browser is None:
        async with httpx.AsyncClient(timeout=10) as fresh:
            back = await at_provider(start.headers["location"], login, fresh)
    else:
        back = await at_provider(start.headers["location"], login, browser)
    return await app.get(back.removeprefix("http://localhost"))
