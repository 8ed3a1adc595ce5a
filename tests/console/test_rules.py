"""The console's editor of redirect rules, over HTTP against the real service: the code's page shows
them, saves them with the API's validation (every problem named by its path), keeps the rest of the
code as it was, tries a made-up scanner, and the scans page shows each rule's share."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from services.management.settings import ManagementSettings
from services.redirect.scans import ScanRecorder
from tests.console.test_pages import make_code, post_form
from tests.management.conftest import serve

pytestmark = pytest.mark.anyio

RULES = [
    {"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"},
    {
        "if": {"weekdays": ["sat"], "hours": ["10:00", "16:00"], "tz": "Europe/Paris"},
        "target_url": "https://example.org/brunch",
    },
]
SPLIT = [
    {"target_url": "https://example.org/a", "weight": 1},
    {"target_url": "https://example.org/b", "weight": 3},
]


@pytest.fixture
async def console(settings: ManagementSettings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(settings):
        yield client


async def test_rules_are_edited_and_tried_on_the_codes_page(console: httpx.AsyncClient) -> None:
    code = await make_code(console, title="Menu")
    page = await console.get(f"/console/codes/{code}")
    assert page.status_code == 200
    assert 'id="rules-heading"' in page.text
    saved = await post_form(
        console, f"/console/codes/{code}/rules", {"rules": json.dumps(RULES), "split": json.dumps(SPLIT)}
    )
    assert saved.status_code == 303, saved.text
    answered = (await console.get(f"/api/v1/qr/{code}")).json()
    assert (answered["rules"], answered["split"], answered["title"]) == (RULES, SPLIT, "Menu")
    assert "apps.apple.com/app/id1" in (await console.get(f"/console/codes/{code}")).text

    refused = await post_form(
        console,
        f"/console/codes/{code}/rules",
        {
            "rules": json.dumps([{"if": {"country": ["FRA"]}, "target_url": "https://example.fr/"}]),
            "split": "",
        },
    )
    assert refused.status_code == 422
    assert "<code>rules[0].if.country</code>" in refused.text
    assert "&#34;FRA&#34;" in refused.text  # shown again as typed, escaped
    broken = await post_form(console, f"/console/codes/{code}/rules", {"rules": "[{", "split": ""})
    assert broken.status_code == 422
    assert "must be JSON" in broken.text
    assert (await console.get(f"/api/v1/qr/{code}")).json()["rules"] == RULES  # nothing half-written

    warned = await post_form(
        console,
        f"/console/codes/{code}/rules",
        {
            "rules": json.dumps([{"if": {"country": ["FR"]}, "target_url": "https://example.fr/"}]),
            "split": "",
        },
    )
    assert warned.status_code == 200
    assert "no GEOIP_DATABASE" in warned.text
    assert (await console.get(f"/api/v1/qr/{code}")).json()["split"] is None

    await post_form(console, f"/console/codes/{code}/rules", {"rules": json.dumps(RULES), "split": ""})
    tried = await console.get(
        f"/console/codes/{code}/rules/try",
        params={"agent": "desktop", "moment": "2026-12-05T11:00", "tz": "Europe/Paris", "language": "fr-BE"},
    )
    assert tried.status_code == 200
    assert "<strong>rule 2</strong>" in tried.text
    assert "https://example.org/brunch" in tried.text
    iphone = await console.get(f"/console/codes/{code}/rules/try", params={"agent": "iphone"})
    assert "<strong>rule 1</strong>" in iphone.text
    nonsense = await console.get(
        f"/console/codes/{code}/rules/try", params={"moment": "soon", "tz": "Nowhere"}
    )
    assert nonsense.status_code == 200
    assert "must be a date and time" in nonsense.text


async def test_the_scans_page_shows_each_rules_share(console: httpx.AsyncClient, database_url: str) -> None:
    code = await make_code(console)
    assert (await console.patch(f"/api/v1/qr/{code}", json={"rules": RULES})).status_code == 200
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60)
    await recorder.start()
    try:
        for n, served in enumerate(["rule 1"] * 3 + ["default"]):
            recorder.record(code, b"Mozilla/5.0 (iPhone)", None, f"198.51.100.{n}", None, served)
    finally:
        await recorder.close()
    page = (await console.get(f"/console/codes/{code}/scans")).text
    assert "Redirect rules&#39; shares" in page or "Redirect rules' shares" in page
    assert '<td>rule 1</td><td class="number">3</td><td class="number">75.0%</td>' in page
    every = (await console.get("/console/scans")).text
    assert "rule-shares" not in every
