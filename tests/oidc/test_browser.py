"""Sign-in through the provider in a real browser (Debian's Chromium, Playwright), through the real
edge (Traefik) in front of both services: the provider's login page, the console with the mapped
role, sign-out at both ends."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.ops import embedded
from tests.conftest import free_port
from tests.e2e.conftest import own_stack
from tests.oidc.conftest import RunningProvider

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "chromium not installed (apt-get install chromium): the browser tests", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass(frozen=True)
class Edge:
    url: str
    provider: RunningProvider


@pytest.fixture(scope="module")
def edge(
    node_modules: Path,
    pg_server: embedded.EmbeddedServer,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Edge]:
    """The stack behind the edge, signing in through a provider that knows the edge's address."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = RunningProvider(
        redirect_uris=[f"{url}/console/auth/callback"],
        logout_uris=[f"{url}/console/sign-in?notice=signed-out"],
    )
    provider.start()
    var_dir = tmp_path_factory.mktemp("oidc-stack")
    try:
        overrides = provider.environ(var_dir / "client-secret")
        with own_stack(pg_server, var_dir / "var", EDGE_HTTP_PORT=str(port), **overrides):
            yield Edge(url, provider)
    finally:
        provider.stop()


@pytest.fixture(scope="module")
def browser(edge: Edge) -> Iterator[Browser]:
    """Chromium, once the stack runs (Playwright's loop would stand in the way of its start)."""
    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            launched.close()


def sign_in_at_provider(page: Page, login: str) -> None:
    page.get_by_role("link", name="Sign in with your identity provider").click()
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any")
    page.get_by_role("button", name="Sign-in").click()


def test_a_viewer_signs_in_at_the_provider_sees_no_write_buttons_and_signs_out_of_both(
    browser: Browser, edge: Edge
) -> None:
    # The service account's JWT access token through the edge: an editor, it creates a code.
    scripts = {"Authorization": f"Bearer {edge.provider.service_account_token()}"}
    created = httpx.post(
        f"{edge.url}/api/v1/qr", json={"target_url": "https://example.org/menu"}, headers=scripts, timeout=10
    )
    assert created.status_code == 201, created.text
    code = created.json()["id"]
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{edge.url}/console/scans")
        expect(page).to_have_url(f"{edge.url}/console/sign-in?next=%2Fconsole%2Fscans")
        sign_in_at_provider(page, "viewer")
        page.wait_for_url(f"{edge.url}/console/scans")  # back where the person was going
        expect(page.locator("form.sign-out")).to_contain_text("viewer@example.org (viewer)")

        # A viewer sees no write buttons, and a forged post of the page's own session is refused.
        page.goto(f"{edge.url}/console/")
        expect(page.get_by_role("link", name="New code")).to_have_count(0)
        page.goto(f"{edge.url}/console/codes/{code}")
        expect(page.locator(f'form[action="/console/codes/{code}/edit"]')).to_have_count(0)
        csrf = page.locator('form.sign-out input[name="csrf"]').get_attribute("value")
        forged = page.evaluate(
            """async ([path, csrf]) => {
                const body = new URLSearchParams({csrf, target_url: "https://evil.example/"});
                return (await fetch(path, {method: "POST", body})).status;
            }""",
            [f"/console/codes/{code}/edit", csrf],
        )
        assert forged == 403
        unchanged = httpx.get(f"{edge.url}/api/v1/qr/{code}", headers=scripts, timeout=10)
        assert unchanged.json()["target_url"] == "https://example.org/menu"

        page.get_by_role("button", name="Sign out").click()
        # The console's session is over; the provider asks whether to end its own too.
        page.get_by_role("button", name="Yes, sign me out").click()
        page.wait_for_url(f"{edge.url}/console/sign-in?notice=signed-out")
        expect(page.get_by_role("status")).to_contain_text("You are signed out.")
        page.goto(f"{edge.url}/console/")
        expect(page).to_have_url(f"{edge.url}/console/sign-in?next=%2Fconsole%2F")
        # Signing in again: the provider asks for the login again (its session ended as well).
        page.get_by_role("link", name="Sign in with your identity provider").click()
        expect(page.locator('input[name="login"]')).to_be_visible()
    finally:
        context.close()
