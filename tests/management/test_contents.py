"""Contents beyond a link: each kind's code, rendered, decodes (zxing-cpp) to a payload that an
independent reader (vobject for vCard and iCalendar; the standard library's URL parser for mailto:;
a reader of the ``WIFI:`` syntax written from its specification, below) parses back into exactly
what was sent. A payload too large for any QR code, and hostile values, are refused naming the field."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
import qrcode
import qrcode.constants
import vobject

from services.management import contents
from services.management.rendering import ECC_LEVELS
from shared import payloads
from tests.management.conftest import count_rows, create
from tests.management.test_images import read

pytestmark = pytest.mark.anyio

WIFI = {"ssid": 'Café ;,"\\: Straße', "password": 'pä;ss,wo"rd\\:ü', "security": "WPA", "hidden": True}
NOTE = ("Meet us at the harbour; bring boots, a map and patience. " * 5)[:200]
VCARD = {
    "name": "Zoë Ångström",
    "organisation": "Lighthouses, Harbours & Co",
    "title": "Keeper",
    "phones": ["+33 1 23 45 67 89", "+44 (20) 7946-0958"],
    "emails": ["zoe@example.org"],
    "url": "https://example.org/zoe",
    "address": "1 Quai du Port, 13002 Marseille, France",
    "note": NOTE,
}
# Across the night Europe/Paris moves from UTC+1 to UTC+2 (29 March 2026, 02:00 → 03:00).
EVENT = {
    "title": "Night sail; all hands, no excuses",
    "start": "2026-03-28T22:00",
    "end": "2026-03-29T09:30",
    "tz": "Europe/Paris",
    "location": "Pier 3, Marseille",
    "description": "Two lines:\nbring a jacket, and a torch.",
}
EMAIL = {"to": "harbour@example.org", "subject": "Berth 12 & 13?", "body": "Hello,\nis berth 12 free? Ça va."}
SMS = {"number": "+33 6 12 34 56 78", "text": "Berth: 12, time: 09:30"}
TEL = {"number": "+33 1 23 45 67 89"}
GEO = {"lat": 43.295, "lon": 5.3625}
TEXT = {"text": "Plain text, with ; and : and ünïcödé.\nSecond line."}


def wifi_fields(payload: str) -> dict[str, str]:
    """A ``WIFI:`` string's fields, read as the ZXing readers of iOS and Android do: ``;`` ends a
    field unless escaped, a backslash escapes the next character."""
    assert payload.startswith("WIFI:")
    assert payload.endswith(";;")
    fields: dict[str, str] = {}
    key, value, escaped, in_key = "", "", False, True
    for char in payload[len("WIFI:") :]:
        if escaped:
            value += char
            escaped = False
        elif in_key:
            if char == ":":
                in_key = False
            elif char != ";":
                key += char
        elif char == "\\":
            escaped = True
        elif char == ";":
            fields[key], key, value, in_key = value, "", "", True
        else:
            value += char
    return fields


def check_wifi(payload: str, sent: dict[str, Any]) -> None:
    fields = wifi_fields(payload)
    assert fields["S"] == sent["ssid"]
    assert fields["P"] == sent["password"]
    assert fields["T"] == sent["security"]
    assert fields.get("H") == ("true" if sent["hidden"] else None)


def check_vcard(payload: str, sent: dict[str, Any]) -> None:
    assert all(len(line.encode()) <= payloads.FOLD_OCTETS for line in payload.split("\r\n"))
    card = vobject.readOne(payload)
    assert card.version.value == "3.0"
    assert card.fn.value == sent["name"]
    assert card.n.value.given == "Zoë"
    assert card.n.value.family == "Ångström"
    assert card.org.value == [sent["organisation"]]  # the comma is no separator: one component
    assert card.title.value == sent["title"]
    assert [tel.value for tel in card.tel_list] == sent["phones"]
    assert [email.value for email in card.email_list] == sent["emails"]
    assert card.url.value == sent["url"]
    assert card.adr.value.street == sent["address"]
    assert card.note.value == sent["note"]
    assert len(sent["note"]) == 200


def check_event(payload: str, sent: dict[str, Any]) -> None:
    calendar = vobject.readOne(payload)
    event = calendar.vevent
    paris = ZoneInfo(sent["tz"])
    assert event.dtstart.value == datetime.fromisoformat(sent["start"]).replace(tzinfo=paris)
    assert event.dtend.value == datetime.fromisoformat(sent["end"]).replace(tzinfo=paris)
    # Eleven and a half hours on the clock, ten and a half in fact: the clocks went forward.
    assert (event.dtend.value - event.dtstart.value).total_seconds() == 10.5 * 3600
    assert event.summary.value == sent["title"]
    assert event.location.value == sent["location"]
    assert event.description.value == sent["description"]
    assert event.uid.value
    assert event.dtstamp.value


def check_email(payload: str, sent: dict[str, Any]) -> None:
    parts = urlsplit(payload)
    query = parse_qs(parts.query)
    assert parts.scheme == "mailto"
    assert unquote(parts.path) == sent["to"]
    assert query == {"subject": [sent["subject"]], "body": [sent["body"]]}


def check_sms(payload: str, sent: dict[str, Any]) -> None:
    scheme, number, text = payload.split(":", 2)  # as ZXing's SMSTO reader: number up to the first ':'
    assert (scheme, number, text) == ("SMSTO", sent["number"], sent["text"])


def check_tel(payload: str, sent: dict[str, Any]) -> None:
    parts = urlsplit(payload)
    assert parts.scheme == "tel"
    assert parts.path == sent["number"].replace(" ", "")


def check_geo(payload: str, sent: dict[str, Any]) -> None:
    match = re.fullmatch(r"geo:(-?[0-9.]+),(-?[0-9.]+)", payload)
    assert match is not None
    assert (float(match[1]), float(match[2])) == (sent["lat"], sent["lon"])


def check_text(payload: str, sent: dict[str, Any]) -> None:
    assert payload == sent["text"]


ROUND_TRIPS = {
    "wifi": (WIFI, check_wifi),
    "vcard": (VCARD, check_vcard),
    "event": (EVENT, check_event),
    "email": (EMAIL, check_email),
    "sms": (SMS, check_sms),
    "tel": (TEL, check_tel),
    "geo": (GEO, check_geo),
    "text": (TEXT, check_text),
}


def test_capacities_are_those_of_a_version_40_symbol() -> None:
    for level, capacity in contents.CAPACITY_BYTES.items():
        fits = qrcode.QRCode(error_correction=ECC_LEVELS[level])
        fits.add_data("a" * capacity, optimize=0)
        fits.make(fit=True)
        assert fits.version == 40
        too_long = qrcode.QRCode(error_correction=ECC_LEVELS[level])
        too_long.add_data("a" * (capacity + 1), optimize=0)
        with pytest.raises(ValueError, match="expected 1 to 40"):
            too_long.make(fit=True)


def test_the_wifi_escaping_covers_every_special_character() -> None:
    assert payloads.wifi_escape('a\\b;c,d:e"f') == 'a\\\\b\\;c\\,d\\:e\\"f'
    open_network = payloads.wifi({"ssid": "Free", "password": None, "security": "none", "hidden": False})
    assert open_network == "WIFI:T:nopass;S:Free;;"


def test_long_lines_fold_at_75_octets_without_splitting_a_character() -> None:
    folded = payloads.fold("NOTE:" + "é" * 100)
    lines = folded.removesuffix("\r\n").split("\r\n")
    assert all(len(line.encode()) <= 75 for line in lines)
    assert len(lines) == 3
    assert "".join(line.removeprefix(" ") for line in lines) == "NOTE:" + "é" * 100


def test_a_vcard_keeps_a_comma_in_its_url_and_names_predictably() -> None:
    url = "https://example.com/a?b=1,2"
    card = vobject.readOne(payloads.vcard({"name": "Jöhn O'Brien, Jr.", "url": url}))
    assert card.url.value == url
    assert (card.n.value.family, card.n.value.given) == ("", "Jöhn O'Brien, Jr.")
    assert card.fn.value == "Jöhn O'Brien, Jr."


def test_event_times_are_instants_with_four_digit_years() -> None:
    event = {"title": "t", "start": "0999-01-01T00:00", "end": "0999-01-01T01:00", "tz": "UTC"}
    assert "DTSTART:09990101T000000Z\r\n" in payloads.event(event)
    # A start that does not exist is read with the offset before the change (zoneinfo, fold=0).
    berlin = {"title": "t", "start": "2027-03-28T02:30", "end": "2027-03-28T04:00", "tz": "Europe/Berlin"}
    stored = contents.content_of("event", berlin)
    assert stored is not None
    assert vobject.readOne(payloads.event(stored)).vevent.dtstart.value == datetime(
        2027, 3, 28, 1, 30, tzinfo=UTC
    )


async def test_each_kind_round_trips_through_its_image(client: httpx.AsyncClient) -> None:
    for kind, (sent, check) in ROUND_TRIPS.items():
        response = await create(client, kind=kind, content=sent, title=kind)
        assert response.status_code == 201, response.text
        code = response.json()
        assert code["kind"] == kind
        assert code["static"] is True
        assert code["dynamic"] is False
        assert code["target_url"] == ""
        for name, value in sent.items():
            assert code["content"][name] == value, (kind, name)
        for image_format in ("png", "svg"):
            image = await client.get(f"/api/v1/qr/{code['id']}/image.{image_format}?size=600")
            assert image.status_code == 200, (kind, image.text)
            decoded = [result.text for result in read(image_format, image.content)]
            assert len(decoded) == 1, (kind, image_format)
            check(decoded[0], sent)
        assert decoded[0] != code["short_url"]


async def test_a_url_code_is_unchanged(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/menu")).json()
    assert (code["kind"], code["content"], code["dynamic"], code["static"]) == ("url", None, False, False)
    image = await client.get(f"/api/v1/qr/{code['id']}/image.png")
    assert [result.text for result in read("png", image.content)] == [code["short_url"]]


async def test_a_payload_too_large_is_refused_naming_the_field_before_rendering(
    client: httpx.AsyncClient, database_url: str
) -> None:
    renders = await _renders(client)
    long_note = {**VCARD, "note": "x" * 2400}
    response = await create(client, kind="vcard", content=long_note)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"] == {"field": "content.note"}
    assert "at most 2,331" in error["message"]
    # No one field to blame: many phones and e-mails together.
    crowded = {"name": "A", "phones": ["+1 555 0100"] * 10, "emails": [f"{'a' * 60}@{'b' * 180}.org"] * 10}
    response = await create(client, kind="vcard", content=crowded)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"field": "content"}
    # Fits the default error correction (M) but not H: the image asks for H, and is told why.
    fits_m = (await create(client, kind="text", content={"text": "y" * 2000})).json()
    image = await client.get(f"/api/v1/qr/{fits_m['id']}/image.png?ecc=H&size=2000")
    assert image.status_code == 422
    assert image.json()["error"]["details"] == {"field": "ecc"}
    assert await count_rows(database_url) == 1
    assert await _renders(client) == renders


async def _renders(client: httpx.AsyncClient) -> float:
    """Images rendered so far (the management service's own metric)."""
    text = (await client.get("/metrics")).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("qr_image_renders_total")
    )


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"kind": "wifi", "content": {**WIFI, "ssid": "net\x00work"}}, "content.ssid"),
    ({"kind": "wifi", "content": {**WIFI, "ssid": "é" * 17}}, "content.ssid"),  # 34 bytes
    ({"kind": "wifi", "content": {**WIFI, "password": "short"}}, "content.password"),
    ({"kind": "wifi", "content": {**WIFI, "security": "WPA3-ish"}}, "content.security"),
    ({"kind": "wifi", "content": {**WIFI, "security": "none"}}, "content.password"),
    ({"kind": "wifi", "content": {**WIFI, "hidden": "yes"}}, "content.hidden"),
    ({"kind": "wifi", "content": {**WIFI, "ssid": "x\u2028y"}}, "content.ssid"),
    ({"kind": "vcard", "content": {**VCARD, "name": ""}}, "content.name"),
    ({"kind": "vcard", "content": {**VCARD, "name": "Bob\r\nBEGIN:VCARD"}}, "content.name"),
    ({"kind": "vcard", "content": {**VCARD, "phones": ["+1 555\nTEL:666"]}}, "content.phones"),
    ({"kind": "vcard", "content": {**VCARD, "emails": ["a@b;c"]}}, "content.emails"),
    ({"kind": "vcard", "content": {**VCARD, "url": "javascript:alert(1)"}}, "content.url"),
    ({"kind": "vcard", "content": {**VCARD, "phones": "+1 555 0100"}}, "content.phones"),
    ({"kind": "vcard", "content": {**VCARD, "photo": "x"}}, "content.photo"),
    ({"kind": "event", "content": {**EVENT, "tz": "Mars/Olympus"}}, "content.tz"),
    ({"kind": "event", "content": {**EVENT, "start": "tomorrow evening"}}, "content.start"),
    ({"kind": "event", "content": {**EVENT, "end": "2026-03-28T21:00"}}, "content.end"),
    ({"kind": "event", "content": {**EVENT, "title": "a\x1bb"}}, "content.title"),
    # Times at the ends of the calendar (no UTC time, or none with four digits), a date alone, a
    # start that does not exist (02:30 is 03:30 that day in Berlin: no time at all before the end).
    (
        {"kind": "event", "content": {**EVENT, "start": "0001-01-01T00:00:00", "tz": "Asia/Tokyo"}},
        "content.start",
    ),
    (
        {"kind": "event", "content": {**EVENT, "end": "9999-12-31T22:00", "tz": "America/New_York"}},
        "content.end",
    ),
    ({"kind": "event", "content": {**EVENT, "start": "0001-01-01T00:00+01:00"}}, "content.start"),
    ({"kind": "event", "content": {**EVENT, "start": "2026-03-28", "end": "2026-03-29"}}, "content.start"),
    (
        {
            "kind": "event",
            "content": {
                **EVENT,
                "start": "2027-03-28T02:30",
                "end": "2027-03-28T03:30",
                "tz": "Europe/Berlin",
            },
        },
        "content.end",
    ),
    ({"kind": "event", "content": {**EVENT, "tz": "localtime"}}, "content.tz"),
    ({"kind": "event", "content": {**EVENT, "title": "  "}}, "content.title"),
    ({"kind": "vcard", "content": {**VCARD, "name": "   "}}, "content.name"),
    ({"kind": "text", "content": {"text": " \n "}}, "content.text"),
    ({"kind": "email", "content": {**EMAIL, "to": "x@y.org?cc=z@w.org"}}, "content.to"),
    ({"kind": "email", "content": {**EMAIL, "subject": "a\nBcc: x@y.org"}}, "content.subject"),
    ({"kind": "sms", "content": {**SMS, "number": "+33:6"}}, "content.number"),
    ({"kind": "tel", "content": {"number": "javascript:1"}}, "content.number"),
    ({"kind": "geo", "content": {"lat": 91, "lon": 0}}, "content.lat"),
    ({"kind": "geo", "content": {"lat": 0, "lon": "5"}}, "content.lon"),
    ({"kind": "text", "content": {"text": ""}}, "content.text"),
    ({"kind": "text", "content": {"text": "bell\x07"}}, "content.text"),
    ({"kind": "text", "content": "just text"}, "content"),
    ({"kind": "text"}, "content"),
    ({"kind": "text", "content": TEXT, "target_url": "https://example.org"}, "target_url"),
    ({"kind": "url", "target_url": "https://example.org", "content": TEXT}, "content"),
    ({"kind": "url"}, "target_url"),
    ({"kind": "wifi", "content": WIFI, "dynamic": True}, "dynamic"),
    ({"kind": "barcode", "content": TEXT}, "kind"),
]


async def test_hostile_values_are_refused_naming_the_field(
    client: httpx.AsyncClient, database_url: str
) -> None:
    for body, field in HOSTILE:
        response = await client.post("/api/v1/qr", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["details"] == {"field": field}, (body, response.text)
    assert await count_rows(database_url) == 0


async def test_a_static_code_cannot_change_but_a_dynamic_contact_can(client: httpx.AsyncClient) -> None:
    static = (await create(client, kind="wifi", content=WIFI)).json()
    assert static["state"] == "static"  # no short link: neither on nor off
    redirect_changes = [
        {"enabled": False},
        {"expires_at": "2030-01-01T00:00:00Z"},
        {"fallback_url": "https://example.org/moved"},
        {"forward_query": True},
        {"redirect_status": 301},
    ]
    for change in [
        {"content": {**WIFI, "ssid": "Other"}},
        {"target_url": "https://example.org"},
        *redirect_changes,
    ]:
        response = await client.patch(f"/api/v1/qr/{static['id']}", json=change)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"]["field"] in ("content", "target_url", *change), change
    assert (
        await client.patch(f"/api/v1/qr/{static['id']}", json={"title": "Guest Wi-Fi"})
    ).status_code == 200
    response = await client.patch(f"/api/v1/qr/{static['id']}", json={"kind": "text"})
    assert response.status_code == 422

    dynamic = (await create(client, kind="vcard", content=VCARD, dynamic=True)).json()
    assert dynamic["static"] is False
    assert dynamic["dynamic"] is True
    assert dynamic["state"] == "on"
    image = await client.get(f"/api/v1/qr/{dynamic['id']}/image.png")
    assert [result.text for result in read("png", image.content)] == [dynamic["short_url"]]
    changed = {**VCARD, "phones": ["+33 9 99 99 99 99"]}
    response = await client.patch(f"/api/v1/qr/{dynamic['id']}", json={"content": changed})
    assert response.status_code == 200
    assert response.json()["content"]["phones"] == ["+33 9 99 99 99 99"]
    bad = await client.patch(f"/api/v1/qr/{dynamic['id']}", json={"content": {**VCARD, "phones": ["no"]}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == {"field": "content.phones"}
    history = (await client.get(f"/api/v1/qr/{dynamic['id']}/history")).json()["items"]
    assert history[0]["changes"]["content"]["new"]["phones"] == ["+33 9 99 99 99 99"]


async def test_bulk_and_the_csv_export_carry_the_kind_and_content(client: httpx.AsyncClient) -> None:
    rows = [
        {"kind": "wifi", "content": WIFI, "title": "json wifi"},
        {"target_url": "https://example.org/a", "title": "json url"},
    ]
    response = await client.post("/api/v1/qr/bulk", json=rows)
    assert response.status_code == 201, response.text
    assert [code["kind"] for code in response.json()["created"]] == ["wifi", "url"]
    assert response.json()["created"][0]["content"] == WIFI

    upload = io.StringIO()
    writer = csv.writer(upload)
    writer.writerow(["kind", "content", "target_url", "title"])
    writer.writerow(["event", json.dumps(EVENT), "", "csv event"])
    writer.writerow(["", "", "https://example.org/b", "csv url"])
    response = await client.post(
        "/api/v1/qr/bulk", content=upload.getvalue().encode(), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 201, response.text
    event = response.json()["created"][0]
    assert event["kind"] == "event"
    assert event["content"]["tz"] == "Europe/Paris"
    image = await client.get(f"/api/v1/qr/{event['id']}/image.png?size=600")
    check_event(read("png", image.content)[0].text, EVENT)

    refused = upload.getvalue().replace("Europe/Paris", "Nowhere/Town")
    response = await client.post(
        "/api/v1/qr/bulk", content=refused.encode(), headers={"content-type": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "content.tz"

    nested = "[" * 1000 + "]" * 1000
    for cell, message in (
        ('{"text": ' + nested + "}", "nested too deeply"),
        ("{not json}", "is not valid JSON"),
        ('{"text": "a"} and more', "is not valid JSON"),
        ('{"text": [["a"]]}', "nested too deeply"),
    ):
        broken = io.StringIO()
        csv.writer(broken).writerows([["kind", "content"], ["text", cell]])
        response = await client.post(
            "/api/v1/qr/bulk", content=broken.getvalue().encode(), headers={"content-type": "text/csv"}
        )
        assert response.status_code == 422, (cell[:20], response.text[:300])
        error = response.json()["errors"][0]
        assert (error["field"], message in error["message"]) == ("content", True), error

    exported = (await client.get("/api/v1/qr/export.csv")).text
    table = list(csv.DictReader(io.StringIO(exported)))
    by_title = {row["title"]: row for row in table}
    assert by_title["json wifi"]["kind"] == "wifi"
    assert json.loads(by_title["json wifi"]["content"]) == WIFI
    assert by_title["json url"]["kind"] == "url"
    assert by_title["json url"]["content"] == ""
