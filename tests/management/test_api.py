"""Creating and reading codes, and every way a request can be wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.management.app import create_app
from services.management.settings import ManagementSettings
from shared import ids
from tests.management.conftest import BASE, count_rows, create

pytestmark = pytest.mark.anyio


async def test_create_and_read_a_code(client: httpx.AsyncClient) -> None:
    response = await create(client, target_url="https://example.org/menu", title="Menu", tags=["print"])
    assert response.status_code == 201
    code = response.json()
    assert ids.is_well_formed(code["id"])
    assert len(code["id"]) == ids.ID_LENGTH
    assert code["short_url"] == f"{BASE}/r/{code['id']}"
    assert response.headers["location"] == f"/api/v1/qr/{code['id']}"
    expected = {
        "target_url": "https://example.org/menu",
        "title": "Menu",
        "tags": ["print"],
        "redirect_status": 302,
        "enabled": True,
        "expires_at": None,
        "scan_count": 0,
    }
    assert {k: code[k] for k in expected} == expected
    assert code["created_at"].endswith("Z")
    assert code["created_at"] == code["updated_at"]
    fetched = await client.get(f"/api/v1/qr/{code['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == code


async def test_create_with_every_field(client: httpx.AsyncClient) -> None:
    response = await create(
        client,
        target_url="https://example.org/",
        slug="Spring-Menu_2027",
        title="  Spring menu ",
        tags=["print", "menu", "print"],
        redirect_status=307,
        enabled=False,
        expires_at="2027-06-01T18:00:00+02:00",
    )
    assert response.status_code == 201, response.text
    code = response.json()
    assert code["id"] == "Spring-Menu_2027"
    assert code["title"] == "  Spring menu "  # stored as given
    assert code["tags"] == ["print", "menu"]
    assert code["redirect_status"] == 307
    assert code["enabled"] is False
    assert code["expires_at"] == "2027-06-01T16:00:00Z"


async def test_a_slug_is_never_handed_out_twice(client: httpx.AsyncClient, database_url: str) -> None:
    assert (await create(client, target_url="https://example.org/", slug="menu")).status_code == 201
    again = await create(client, target_url="https://example.org/other", slug="menu")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert again.json()["error"]["details"] == {"field": "slug"}
    # A deleted (tombstoned) code keeps its id forever.
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("UPDATE qr_codes SET deleted_at = now() WHERE id = 'menu'")
    finally:
        await connection.close()
    assert (await client.get("/api/v1/qr/menu")).status_code == 404
    assert (await create(client, target_url="https://example.org/", slug="menu")).status_code == 409


async def test_slugs_are_unique_without_regard_to_case(client: httpx.AsyncClient, database_url: str) -> None:
    assert (await create(client, target_url="https://example.org/", slug="Menu")).status_code == 201
    for spelling in ("menu", "MENU", "mEnU"):
        again = await create(client, target_url="https://example.org/other", slug=spelling)
        assert again.status_code == 409, spelling
        assert again.json()["error"]["details"] == {"field": "slug"}
        assert "'Menu'" in again.json()["error"]["message"]  # the spelling that holds it
    assert await count_rows(database_url) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target_url": "javascript:alert(1)"}, "target_url"),
        ({"target_url": "https://a.com\\@b.com"}, "target_url"),
        ({"target_url": f"{BASE}/r/loop"}, "target_url"),
        ({}, "target_url"),
        ({"target_url": "https://example.org", "slug": "a/b"}, "slug"),
        ({"target_url": "https://example.org", "slug": "api"}, "slug"),
        ({"target_url": "https://example.org", "slug": 12345}, "slug"),
        ({"target_url": "https://example.org", "title": "x" * 201}, "title"),
        ({"target_url": "https://example.org", "title": "bell\x07"}, "title"),
        ({"target_url": "https://example.org", "tags": "print"}, "tags"),
        ({"target_url": "https://example.org", "tags": [1]}, "tags"),
        ({"target_url": "https://example.org", "tags": [""]}, "tags"),
        ({"target_url": "https://example.org", "tags": [f"t{n}" for n in range(21)]}, "tags"),
        ({"target_url": "https://example.org", "redirect_status": 303}, "redirect_status"),
        ({"target_url": "https://example.org", "redirect_status": "302"}, "redirect_status"),
        ({"target_url": "https://example.org", "redirect_status": True}, "redirect_status"),
        ({"target_url": "https://example.org", "enabled": "yes"}, "enabled"),
        ({"target_url": "https://example.org", "expires_at": "tomorrow"}, "expires_at"),
        ({"target_url": "https://example.org", "expires_at": "2027-01-01T00:00:00"}, "expires_at"),
        ({"target_url": "https://example.org", "expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"),
        ({"target_url": "https://example.org", "id": "mine"}, "id"),
        ({"target": "https://example.org"}, "target"),
    ],
)
async def test_bad_fields_are_422_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient, database_url: str, body: dict[str, Any], field: str
) -> None:
    response = await create(client, **body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_field"
    assert error["details"] == {"field": field}
    assert field in error["message"]
    assert await count_rows(database_url) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"target_url": "https://example.org"', "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"", "application/json", 400),
        (b'{"target_url": NaN}', "application/json", 400),
        (b"\xff\xfe", "application/json", 400),
        (b"[" * 20_000 + b"]" * 20_000, "application/json", 400),
        (b"target_url=https://example.org", "application/x-www-form-urlencoded", 415),
        (b'{"target_url": "https://example.org"}', "text/plain", 415),
        (b'{"title": "' + b"x" * 70_000 + b'"}', "application/json", 413),
    ],
)
async def test_unreadable_bodies_get_clear_4xx(
    client: httpx.AsyncClient, database_url: str, content: bytes, content_type: str, status: int
) -> None:
    response = await client.post("/api/v1/qr", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert await count_rows(database_url) == 0


async def test_unknown_ids_and_routes_are_json_404(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/qr/unknown123", "/api/v1/qr/" + "x" * 300, "/api/v1/qr/a%20b", "/nowhere"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    response = await client.delete("/api/v1/qr")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/qr/unknown123", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = await client.get("/api/v1/qr/unknown123", headers={"x-request-id": "bad id\twith junk"})
    assert response.headers["x-request-id"] != "bad id\twith junk"
    assert len(response.headers["x-request-id"]) == 32


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"


async def test_without_a_database_requests_get_503_json(tmp_path: Path) -> None:
    settings = ManagementSettings.from_env(
        {
            "DATABASE_URL": f"postgresql://postgres@/qr?host={tmp_path}",
            "QR_DATA_DIR": str(tmp_path / "images"),
        }
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            for response in (
                await client.post("/api/v1/qr", json={"target_url": "https://example.org/"}),
                await client.get("/api/v1/qr/abcdefghjk"),
                await client.get("/api/v1/qr/abcdefghjk/image.png"),
            ):
                assert response.status_code == 503
                assert response.headers["retry-after"] == "5"
                assert response.json()["error"]["code"] == "unavailable"
            health = await client.get("/health")
            assert health.status_code == 503
            assert health.json()["database"].startswith("unreachable")
            # A client error is still judged without the database.
            assert (await client.post("/api/v1/qr", json={"target_url": "ftp://x"})).status_code == 422


@pytest.mark.parametrize(
    "content",
    [
        b'{"target_url": "https://example.org", "\\ud800x": 1}',
        b'{"target_url": "https://example.org", "title": "\\udfff"}',
        b'{"target_url": "https://example.org/\\ud83d"}',
    ],
)
async def test_unpaired_surrogates_are_refused_not_a_crash(
    client: httpx.AsyncClient, database_url: str, content: bytes
) -> None:
    response = await client.post("/api/v1/qr", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]
    assert await count_rows(database_url) == 0


async def test_a_long_unknown_field_name_is_shortened_in_the_answer(client: httpx.AsyncClient) -> None:
    response = await create(client, target_url="https://example.org", **{"x" * 5000: 1})
    assert response.status_code == 422
    assert len(response.text) < 300


@pytest.mark.parametrize(("length", "kept"), [(128, True), (129, False)])
async def test_request_ids_are_kept_up_to_128_characters(
    client: httpx.AsyncClient, length: int, kept: bool
) -> None:
    rid = "r" * length
    response = await client.get("/health", headers={"x-request-id": rid})
    assert (response.headers["x-request-id"] == rid) is kept


# Host names as browsers encode them (UTS #46 non-transitional, IDNA 2008), stored in that form: the
# resource shows the name a browser will look up. Values from Unicode's UTS #46 examples.
@pytest.mark.parametrize(
    ("given", "stored", "host"),
    [
        ("https://faß.de/speisekarte", "https://xn--fa-hia.de/speisekarte", "xn--fa-hia.de"),  # not fass.de
        ("https://βόλος.com/", "https://xn--nxasmm1c.com/", "xn--nxasmm1c.com"),  # final sigma kept
        # "apple.com" spelled with a Cyrillic first letter: unmistakable once stored
        ("https://\u0430pple.com/login", "https://xn--pple-43d.com/login", "xn--pple-43d.com"),
        ("https://FAß.De/Karte?x=Ä", "https://xn--fa-hia.de/Karte?x=Ä", "xn--fa-hia.de"),  # mixed case
        ("https://faß.de./", "https://xn--fa-hia.de./", "xn--fa-hia.de."),  # trailing dot kept
        (
            "https://bücher.example\u3002org/",
            "https://xn--bcher-kva.example.org/",
            "xn--bcher-kva.example.org",
        ),
        ("https://Example.ORG/Menu", "https://Example.ORG/Menu", "example.org"),  # ASCII stays as typed
    ],
)
async def test_international_hosts_are_stored_as_browsers_look_them_up(
    client: httpx.AsyncClient, given: str, stored: str, host: str
) -> None:
    response = await create(client, target_url=given, fallback_url=given)
    assert response.status_code == 201, response.text
    code = response.json()
    assert code["target_url"] == stored
    assert code["fallback_url"] == stored
    assert code["target_host_ascii"] == host
    changed = await client.patch(f"/api/v1/qr/{code['id']}", json={"target_url": given})
    assert changed.json()["target_url"] == stored


@pytest.mark.parametrize(
    "target",
    [
        "https://\u2615.example/",  # an emoji: IDNA 2008 disallows symbols
        "https://a\u200db.example/",  # a joiner where the context does not allow one
        "https://xn--zz.example/",  # an A-label that is no punycode
        "https://[v1.abc]/",  # IPvFuture: no browser connects to it
        "https://[::1%25eth0]/x",  # a zone id names an interface of some machine
        "https://[fe80::1%eth0]/x",
        "http://QR.Test.:8080/r/abc",  # this service's own short links, in another spelling
    ],
)
@pytest.mark.parametrize("field", ["target_url", "fallback_url"])
async def test_hosts_a_browser_would_not_take_and_loops_are_422(
    client: httpx.AsyncClient, database_url: str, target: str, field: str
) -> None:
    body = {"target_url": "https://example.org/", field: target}
    response = await create(client, **body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": field}
    assert await count_rows(database_url) == 0


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, database_url: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"target_url": "https://example.org", "title": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = await client.post("/api/v1/qr", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert await count_rows(database_url) == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"target_url": "https://example.org", "title": "line\u2028break"}, 422),
        ({"target_url": "https://example.org", "tags": ["a\u2029b"]}, 422),
        ({"target_url": "https://example.org", "title": "non\u00a0breaking space is fine"}, 201),
    ],
)
async def test_line_separators_are_refused_in_text(
    client: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    assert (await client.post("/api/v1/qr", json=body)).status_code == status


async def test_a_huge_number_is_400(client: httpx.AsyncClient) -> None:
    content = b'{"target_url": "https://example.org", "redirect_status": ' + b"9" * 5000 + b"}"
    response = await client.post("/api/v1/qr", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400


async def test_a_trailing_slash_is_a_json_404_not_a_redirect(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/qr/", json={"target_url": "https://example.org"}, headers={"host": "localhost"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "location" not in response.headers


async def test_a_client_that_goes_away_mid_body_is_no_crash(
    settings: ManagementSettings, database_url: str
) -> None:
    app = create_app(settings)
    sent: list[dict[str, Any]] = []
    messages = [
        {"type": "http.request", "body": b'{"target_url": "https://exa', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/qr",
        "raw_path": b"/api/v1/qr",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8002),
    }
    async with LifespanManager(app):
        await app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert await count_rows(database_url) == 0


async def test_metrics(environ: dict[str, str], tmp_path: Path) -> None:
    from tests.management.conftest import serve
    from tests.metrics_checks import parse, value

    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "qr-20261125T000000_000000Z.dump").write_bytes(b"x")
    (backups / "qr-20261126T000000_000000Z.dump").write_bytes(b"x")
    (backups / "qr-99999999T999999_999999Z.dump").write_bytes(b"x")  # not ours: the name is no time
    settings = ManagementSettings.from_env({**environ, "BACKUP_DIR": str(backups)})
    async for client in serve(settings):
        code = (await create(client, target_url="https://example.org/")).json()
        await client.patch(f"/api/v1/qr/{code['id']}", json={"title": "t"})
        await client.get(f"/api/v1/qr/{code['id']}/image.png")  # rendered
        await client.get(f"/api/v1/qr/{code['id']}/image.png")  # from memory
        await client.delete(f"/api/v1/qr/{code['id']}")
        await client.get("/api/v1/qr/nothing123")
        for made_up in ("FOO1", "FOO2", "X" * 50):  # a client chooses the method; not the series
            assert (await client.request(made_up, "/livez")).status_code == 405
        response = await client.get("/metrics", headers={"host": "anything.example"})  # open, like /health
        assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "qr_code_changes_total", action="create") == 1
    assert value(samples, "qr_code_changes_total", action="update") == 1
    assert value(samples, "qr_code_changes_total", action="delete") == 1
    assert value(samples, "qr_image_renders_total", format="png", result="ok") == 1
    assert value(samples, "qr_image_memory_hits_total") == 1
    assert value(samples, "qr_image_store_hits_total") == 0
    assert value(samples, "qr_image_render_duration_seconds_count", format="png") == 1
    route = "/api/v1/qr/{code_id}"
    assert value(samples, "qr_http_requests_total", method="GET", route=route, status="404") == 1
    assert value(samples, "qr_http_requests_total", method="POST", route="/api/v1/qr", status="201") == 1
    assert value(samples, "qr_http_requests_total", method="OTHER", route="/livez", status="405") == 3
    assert value(samples, "qr_backup_last_timestamp_seconds") == 1795651200  # 2026-11-26T00:00:00Z
    assert value(samples, "qr_database_up") == 1
    assert code["id"] not in response.text
