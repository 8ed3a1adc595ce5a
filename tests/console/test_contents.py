"""The new-code page's kinds: a panel per kind, said to be static where the kind is chosen; a code
of another kind made through the form, its refusals beside their fields."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.test_pages import console, post_form  # noqa: F401 - the fixture
from tests.management.test_images import read

pytestmark = pytest.mark.anyio


async def test_the_form_makes_a_wifi_code_and_says_it_is_static(console: httpx.AsyncClient) -> None:  # noqa: F811
    page = (await console.get("/console/new")).text
    assert '<option value="wifi">wifi (static: cannot change after printing)</option>' in page
    assert "Static: cannot change after printing." in page
    assert 'name="content.vcard.note"' in page
    assert 'name="content.wifi.ssid"' in page

    form = {
        "kind": "wifi",
        "enabled": "on",
        "content.wifi.ssid": 'Café ;guests"',
        "content.wifi.password": "croissant;42",
        "content.wifi.security": "WPA",
        "content.wifi.hidden": "on",
        "content.vcard.name": "ignored: another kind's panel",
    }
    response = await post_form(console, "/console/new", form)
    assert response.status_code == 303, response.text
    code_id = re.fullmatch(r"/console/codes/([A-Za-z0-9_-]+)\?notice=created", response.headers["location"])
    assert code_id
    code = (await console.get(f"/api/v1/qr/{code_id[1]}")).json()
    assert code["kind"] == "wifi"
    assert code["static"] is True
    assert code["content"] == {
        "ssid": 'Café ;guests"',
        "password": "croissant;42",
        "security": "WPA",
        "hidden": True,
    }
    image = await console.get(f"/api/v1/qr/{code_id[1]}/image.png?size=600")
    assert read("png", image.content)[0].text == 'WIFI:T:WPA;S:Café \\;guests\\";P:croissant\\;42;H:true;;'
    # Its page shows and edits it (the content stays as it was).
    assert (await console.get(f"/console/codes/{code_id[1]}")).status_code == 200


async def test_a_refused_content_is_shown_beside_its_field(console: httpx.AsyncClient) -> None:  # noqa: F811
    form = {
        "kind": "event",
        "content.event.title": "Sail",
        "content.event.start": "2026-03-28T20:00",
        "content.event.end": "2026-03-28T19:00",
        "content.event.tz": "Europe/Paris",
    }
    response = await post_form(console, "/console/new", form)
    assert response.status_code == 422
    assert '<p class="error" id="e-content.event.end">must be after start</p>' in response.text
    assert 'value="Sail"' in response.text  # typed values kept
