"""A dynamic contact's short link serves its page and its card; a static code's short link answers
nothing. The codes are made through the management API, scanned through the redirect service, both
on one real PostgreSQL: scan → page → .vcf read by vobject; an edit reaches the next download."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import vobject

from services.management.settings import ManagementSettings
from services.redirect.app import RedirectApp
from services.redirect.contact import contact_of
from tests.management.conftest import BASE, serve
from tests.management.test_contents import VCARD, WIFI

CONTACT = {**VCARD, "note": 'Ask for <b>Zoë</b> & "friends"\n<script>alert(1)</script>'}
AXE = Path(__file__).parents[1] / "console" / "vendor" / "axe-4.14.1.min.js"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def admin(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    environ = {"DATABASE_URL": database_url, "PUBLIC_BASE_URL": BASE, "QR_DATA_DIR": str(tmp_path / "images")}
    async for http in serve(ManagementSettings.from_env(environ)):
        yield http


async def next_download(client: httpx.AsyncClient, path: str, phone: str) -> Any:
    """The card downloaded once the change notification has reached the redirect service."""
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        card = vobject.readOne((await client.get(path)).text)
        if [tel.value for tel in card.tel_list] == [phone]:
            return card
        assert asyncio.get_running_loop().time() < deadline, "the edit did not reach the download"
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_scan_page_card_and_an_edit_reaching_the_next_download(
    app: RedirectApp, client: httpx.AsyncClient, admin: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    code = (
        await admin.post("/api/v1/qr", json={"kind": "vcard", "content": CONTACT, "dynamic": True})
    ).json()
    path = f"/r/{code['id']}"

    page = await client.get(path, headers={"user-agent": "Mozilla/5.0 (iPhone)"})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-security-policy"].startswith("default-src 'none'; style-src 'sha256-")
    assert "<h1>Zoë Ångström</h1>" in page.text
    assert "<script" not in page.text
    assert "&lt;script&gt;" in page.text
    assert 'href="tel:+33123456789"' in page.text
    assert re.search(r'<a class="save" href="\?download=vcf" download>Save contact</a>', page.text)
    assert (await client.head(path)).content == b""

    download = await client.get(path, params={"download": "vcf"})
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/vcard; charset=utf-8"
    disposition = download.headers["content-disposition"]
    assert (
        disposition
        == "attachment; filename=\"Zo ngstrm.vcf\"; filename*=UTF-8''Zo%C3%AB%20%C3%85ngstr%C3%B6m.vcf"
    )
    card = vobject.readOne(download.text)
    assert card.fn.value == CONTACT["name"]
    assert card.org.value == [CONTACT["organisation"]]
    assert card.note.value == CONTACT["note"]
    assert [tel.value for tel in card.tel_list] == CONTACT["phones"]

    # The card is asked for among other query parameters too (a campaign's tags).
    tagged = await client.get(f"{path}?utm_source=poster&download=vcf")
    assert tagged.headers["content-type"] == "text/vcard; charset=utf-8"

    # The page view was a scan (the HEAD and the downloads were not).
    await app.recorder.flush()
    assert await db.fetchval("SELECT total FROM scan_counts WHERE code_id = $1", code["id"]) == 1

    changed = await admin.patch(
        f"/api/v1/qr/{code['id']}", json={"content": {**CONTACT, "phones": ["+33 9 87 65 43 21"]}}
    )
    assert changed.status_code == 200, changed.text
    await next_download(client, f"{path}?download=vcf", "+33 9 87 65 43 21")

    # Switched off: no contact any more (410), as for a link.
    await admin.patch(f"/api/v1/qr/{code['id']}", json={"enabled": False})
    deadline = asyncio.get_running_loop().time() + 2.0
    while (await client.get(path)).status_code != 410:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert (await client.get(path, params={"download": "vcf"})).status_code == 410
    # With a fallback (and the query forwarded), a switched-off contact sends people there.
    await admin.patch(
        f"/api/v1/qr/{code['id']}", json={"fallback_url": "https://example.org/moved", "forward_query": True}
    )
    deadline = asyncio.get_running_loop().time() + 2.0
    while (moved := await client.get(path, params={"utm": "x"})).status_code != 302:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert moved.headers["location"] == "https://example.org/moved?utm=x"


@pytest.mark.anyio
async def test_a_static_code_has_no_short_link(client: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    static = (await admin.post("/api/v1/qr", json={"kind": "wifi", "content": WIFI})).json()
    contact = (await admin.post("/api/v1/qr", json={"kind": "vcard", "content": VCARD})).json()
    for code in (static, contact):
        assert (await client.get(f"/r/{code['id']}")).status_code == 404
        assert (await client.get(f"/r/{code['id']}?download=vcf")).status_code == 404


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium): the contact page's accessibility")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


def test_the_contact_page_passes_axe_and_its_own_policy(chromium: Any) -> None:
    from services.redirect import contact

    served = contact_of(CONTACT)
    page = chromium.new_page(viewport={"width": 390, "height": 844})
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if message.type == "error" else None)
    page.route(
        "http://qr.test/r/contact123",
        lambda route: route.fulfill(
            status=200,
            headers={
                "content-type": "text/html; charset=utf-8",
                "content-security-policy": contact._CSP.decode(),
            },
            body=served.page,
        ),
    )
    page.goto("http://qr.test/r/contact123")
    # The one stylesheet applies under the page's own policy (no violation reported).
    assert page.evaluate("getComputedStyle(document.querySelector('a.save')).color") == "rgb(255, 255, 255)"
    assert violations == []
    page.evaluate(AXE.read_text())  # through the debugger, so the page's CSP does not apply to it
    findings = page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ["violations"]});
          return r.violations.map(
            v => v.id + " (" + v.impact + "): " + v.nodes.map(n => n.target.join(" ")).join(", "));
        }"""
    )
    assert findings == []
    page.close()
