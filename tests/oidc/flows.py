"""Driving the code flow without a browser: the management app through httpx (ASGI), the provider
over real HTTP with its development login form (any password; the login names the account)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from services.management.settings import ManagementSettings
from tests.management.conftest import serve
from tests.oidc.conftest import RunningProvider

CALLBACK = "http://localhost/console/auth/callback"


async def app_with_provider(
    environ: dict[str, str], provider: RunningProvider, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ManagementSettings.from_env({**environ, **provider.environ(tmp_path / "client-secret")})
    async for http in serve(settings):
        yield http


async def at_provider(location: str, login: str, browser: httpx.AsyncClient) -> tuple[str, bool]:
    """Signs ``login`` in at the provider from its authorization URL: the URL it sends the browser
    back to (the console's callback, with the code and state), and whether it asked for the login
    (not when the browser still has a session there)."""
    url = location
    asked = False
    for _ in range(20):
        if url.startswith(CALLBACK):
            return url, asked
        response = await browser.get(url)
        if response.status_code in (302, 303):
            url = urljoin(url, response.headers["location"])
            continue
        assert response.status_code == 200, response.text
        form = re.search(r'action="([^"]+)"', response.text)
        assert form is not None, response.text
        assert 'name="login"' in response.text, response.text
        asked = True
        posted = await browser.post(
            urljoin(url, form.group(1)), data={"prompt": "login", "login": login, "password": "any"}
        )
        assert posted.status_code in (302, 303), posted.text
        url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider never sent the browser back")


@dataclass
class SignedIn:
    answer: httpx.Response  # the callback's
    callback: str  # the URL the provider sent the browser back to (its code in it)
    asked: bool  # whether the provider asked for the login


async def sign_in(app: httpx.AsyncClient, login: str, browser: httpx.AsyncClient | None = None) -> SignedIn:
    """The console's sign-in through the provider as ``login`` (in ``browser``'s session at the
    provider, when given)."""
    start = await app.get("/console/auth/login", params={"next": "/console/scans"})
    assert start.status_code == 303, start.text
    if browser is None:
        async with httpx.AsyncClient(timeout=10) as fresh:
            back, asked = await at_provider(start.headers["location"], login, fresh)
    else:
        back, asked = await at_provider(start.headers["location"], login, browser)
    return SignedIn(await app.get(back.removeprefix("http://localhost")), back, asked)


async def end_at_provider(url: str, browser: httpx.AsyncClient) -> str:
    """Confirms the sign-out on the provider's page: where it sends the browser then."""
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert form is not None, page.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    done = await browser.post(urljoin(url, form.group(1)), data={**fields, "logout": "yes"})
    assert done.status_code in (302, 303), done.text
    return done.headers["location"]


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)
