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
    assert '<option value="vcard">vcard (static unless dynamic)</option>' in page
    assert "Static unless dynamic: the image carries the content itself" in page
    assert '<label for="f-content.wifi.ssid">SSID (network name)</label>' in page
    assert '<select id="f-content.wifi.security" name="content.wifi.security"' in page
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
    # Its page shows the content, and nothing of a short link (it has none that answers).
    path = f"/console/codes/{code_id[1]}"
    page = (await console.get(path)).text
    assert 'id="short-url"' not in page
    assert "redirects to" not in page
    assert "<strong>Static</strong>: its images carry the content itself" in page
    assert 'alt="QR code: Wi-Fi network Café ;guests&#34;"' in page
    assert "<dt>SSID (network name)</dt><dd>Café ;guests&#34;</dd>" in page
    for redirect_field in ("enabled", "expires_at", "fallback_url", "forward_query", "redirect_status"):
        assert f'name="{redirect_field}"' not in page
    assert "Switch off" not in page
    assert "cannot be switched off" in (await console.get(f"{path}/switch-off")).text
    assert "Printed copies do not change" in (await console.get(f"{path}/delete")).text
    # Its title still changes; the history shows the content field by field, not as a dict.
    response = await post_form(console, f"{path}/edit", {"title": "Guests"})
    assert response.status_code == 303, response.text
    page = (await console.get(path)).text
    assert "<ins>SSID (network name): Café ;guests&#34;; Hidden: yes; Password: croissant;42" in page
    assert "{&#39;ssid&#39;" not in page
    listing = (await console.get("/console/")).text
    assert 'alt="QR code: Wi-Fi network Café ;guests&#34;"' in listing
    assert f'id="short-{code_id[1]}"' not in listing  # no short URL to copy


async def test_a_dynamic_contact_is_edited_on_its_page(console: httpx.AsyncClient) -> None:  # noqa: F811
    form = {
        "kind": "vcard",
        "dynamic": "on",
        "enabled": "on",
        "content.vcard.name": "Ada Lovelace",
        "content.vcard.phones": "+44 20 7946 0958",
    }
    response = await post_form(console, "/console/new", form)
    assert response.status_code == 303, response.text
    path = response.headers["location"].split("?")[0]
    page = (await console.get(path)).text
    assert "Switched on: its short link serves the contact page." in page
    assert 'id="short-url"' in page
    assert '<input type="hidden" name="kind" value="vcard">' in page
    assert 'name="content.vcard.name" type="text" value="Ada Lovelace"' in page
    assert 'name="content.wifi.ssid"' not in page  # only its own panel

    shown = {"enabled": "on", "redirect_status": "302", "kind": "vcard", "content.vcard.name": "Ada Lovelace"}
    refused = await post_form(console, f"{path}/edit", {**shown, "content.vcard.phones": "not a phone"})
    assert refused.status_code == 422
    assert '<p class="error" id="e-content.vcard.phones">item 1 is not a phone number</p>' in refused.text
    saved = await post_form(console, f"{path}/edit", {**shown, "content.vcard.phones": "+33 9 87 65 43 21"})
    assert saved.status_code == 303, saved.text
    code = (await console.get(f"/api/v1/qr/{path.rsplit('/', 1)[1]}")).json()
    assert code["content"]["phones"] == ["+33 9 87 65 43 21"]
    assert code["enabled"] is True


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
