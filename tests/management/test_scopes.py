"""A token limited to tags sees and changes only the codes carrying one of them: listing, search,
exports, statistics; another tag's code is not found (404, never 403); it creates codes only with one
of its tags and cannot take the last of them away. And the tokens themselves: made and revoked
through the API with their audit entries, shown once, never listed, refused once revoked or expired."""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.management.app import create_app
from services.management.auth.tokens import CACHE_SECONDS, TokenStore, kept_key, keyed_hash
from services.management.settings import ManagementSettings
from services.redirect.scans import ScanRecorder
from tests.management.conftest import serve
from tests.management.test_analytics import GOOGLEBOT, PHONE, Clock
from tests.management.test_roles import make_token

pytestmark = pytest.mark.anyio


@pytest.fixture
def identity_settings(environ: dict[str, str]) -> ManagementSettings:
    return ManagementSettings.from_env({**environ, "ADMIN_AUTH": "identity"})


@pytest.fixture
async def http(identity_settings: ManagementSettings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(identity_settings):
        yield client


@pytest.fixture
async def admin(
    http: httpx.AsyncClient, identity_settings: ManagementSettings, database_url: str
) -> dict[str, str]:
    token = await make_token(database_url, identity_settings.qr_data_dir, "root", "admin")
    return {"authorization": f"Bearer {token}"}


async def scoped_headers(
    http: httpx.AsyncClient, admin: dict[str, str], name: str, role: str, tags: list[str] | None
) -> dict[str, str]:
    made = await http.post("/api/v1/tokens", json={"name": name, "role": role, "tags": tags}, headers=admin)
    assert made.status_code == 201, made.text
    return {"authorization": f"Bearer {made.json()['token']}"}


async def seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for slug, tags in (("menu", ["food"]), ("wine", ["food", "bar"]), ("flyer", ["print"]), ("bare", [])):
        body = {
            "target_url": f"https://example.org/{slug}",
            "slug": slug,
            "title": f"Spring {slug}",
            "tags": tags,
        }
        assert (await http.post("/api/v1/qr", json=body, headers=admin)).status_code == 201


def ids_in_csv(data: bytes) -> list[str]:
    return sorted(row["id"] for row in csv.DictReader(io.StringIO(data.decode())))


async def test_a_token_limited_to_a_tag_sees_exactly_its_codes(
    http: httpx.AsyncClient, admin: dict[str, str], database_url: str
) -> None:
    await seed(http, admin)
    food = await scoped_headers(http, admin, "kitchen", "viewer", ["food"])
    listed = await http.get("/api/v1/qr", headers=food)
    assert sorted(c["id"] for c in listed.json()["items"]) == ["menu", "wine"]
    searched = await http.get("/api/v1/qr", params={"q": "spring"}, headers=food)
    assert sorted(c["id"] for c in searched.json()["items"]) == ["menu", "wine"]
    assert (await http.get("/api/v1/qr", params={"tag": "print"}, headers=food)).json()["items"] == []
    assert (await http.get("/api/v1/qr", params={"order": "-scan_count"}, headers=food)).json()["items"]

    exported = await http.get("/api/v1/qr/export.csv", headers=food)
    assert ids_in_csv(exported.content) == ["menu", "wine"]
    archive = zipfile.ZipFile(io.BytesIO((await http.get("/api/v1/qr/export.zip", headers=food)).content))
    assert sorted(name for name in archive.namelist() if name != "manifest.csv") == ["menu.png", "wine.png"]
    assert ids_in_csv(archive.read("manifest.csv")) == ["menu", "wine"]
    pdf = await http.get("/api/v1/qr/export.pdf", headers=food)
    assert pdf.status_code == 200
    everything = await http.get("/api/v1/qr/export.pdf", headers=admin)
    assert len(pdf.content) < len(everything.content)  # two labels, not four
    # The PDF of the scope is that of its codes named outright.
    named = await http.get("/api/v1/qr/export.pdf", params={"ids": "menu,wine"}, headers=admin)
    assert pdf.content.count(b"/r/") == named.content.count(b"/r/")

    for path in ("", "/image.png", "/image.svg", "/history", "/scans", "/scans.csv", "/logo"):
        outside = await http.get(f"/api/v1/qr/flyer{path}", headers=food)
        assert outside.status_code == 404, path
        assert outside.json()["error"]["code"] == "not_found"
        # As for an id that never existed: nothing tells the two apart.
        assert outside.json()["error"]["message"] == (
            await http.get(f"/api/v1/qr/nosuch{path}", headers=food)
        ).json()["error"]["message"].replace("nosuch", "flyer")
    assert (await http.get("/api/v1/qr/menu", headers=food)).status_code == 200


async def test_writes_stay_inside_the_tags(
    http: httpx.AsyncClient, admin: dict[str, str], database_url: str
) -> None:
    await seed(http, admin)
    food = await scoped_headers(http, admin, "chef", "admin", ["food"])
    refused = await http.post(
        "/api/v1/qr", json={"target_url": "https://example.org/x", "tags": ["print"]}, headers=food
    )
    assert refused.status_code == 403
    assert "food" in refused.json()["error"]["message"]
    untagged = await http.post("/api/v1/qr", json={"target_url": "https://example.org/x"}, headers=food)
    assert untagged.status_code == 403
    made = await http.post(
        "/api/v1/qr", json={"target_url": "https://example.org/x", "tags": ["food"]}, headers=food
    )
    assert made.status_code == 201

    # A change may not take the last of its tags away; moving to one with another of them may.
    assert (await http.patch("/api/v1/qr/menu", json={"tags": ["print"]}, headers=food)).status_code == 403
    assert (await http.patch("/api/v1/qr/menu", json={"tags": None}, headers=food)).status_code == 403
    assert (
        await http.patch("/api/v1/qr/menu", json={"tags": ["food", "print"]}, headers=food)
    ).status_code == 200
    for method, path in (
        ("PATCH", "/api/v1/qr/flyer"),
        ("DELETE", "/api/v1/qr/flyer"),
        ("DELETE", "/api/v1/qr/flyer/scans"),
        ("DELETE", "/api/v1/qr/flyer/logo"),
    ):
        answer = await http.request(
            method, path, json={"title": "x"} if method == "PATCH" else None, headers=food
        )
        assert answer.status_code == 404, (method, path)
    assert (await http.get("/api/v1/qr/flyer", headers=admin)).json()["title"] == "Spring flyer"

    rows = [
        {"target_url": "https://example.org/1", "tags": ["food"]},
        {"target_url": "https://example.org/2", "tags": ["print"]},
    ]
    bulk = await http.post("/api/v1/qr/bulk", json=rows, headers=food)
    assert bulk.status_code == 422
    assert bulk.json()["errors"] == [
        {"row": 2, "field": "tags", "message": "must include one of this token's tags (food)"}
    ]
    partial = await http.post("/api/v1/qr/bulk", params={"partial": "true"}, json=rows, headers=food)
    assert partial.status_code == 201
    assert [c["tags"] for c in partial.json()["created"]] == [["food"]]
    # Tokens: not for a token limited to tags, whatever its role (it could make one over every code).
    assert (await http.get("/api/v1/tokens", headers=food)).status_code == 403


async def test_every_codes_statistics_are_those_of_its_codes(
    http: httpx.AsyncClient, admin: dict[str, str], database_url: str
) -> None:
    await seed(http, admin)
    clock = Clock(datetime(2026, 11, 3, 9, 0, tzinfo=UTC))
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60, clock=clock)
    await recorder.start()
    try:
        for code, agent, times in (
            ("menu", PHONE, 3),
            ("wine", GOOGLEBOT, 2),
            ("flyer", PHONE, 5),
            ("bare", PHONE, 7),
        ):
            for n in range(times):
                recorder.record(code, agent, b"https://poster.example/", f"203.0.113.{n}", None)
        await recorder.flush()
    finally:
        await recorder.close()
    food = await scoped_headers(http, admin, "kitchen", "viewer", ["food"])
    span = {"from": "2026-11-03", "to": "2026-11-04"}
    every = (await http.get("/api/v1/scans", params=span, headers=admin)).json()
    assert every["total"] == 17
    mine = (await http.get("/api/v1/scans", params=span, headers=food)).json()
    assert (mine["total"], mine["people"], mine["bots"]) == (5, 3, 2)
    assert sum(b["total"] for b in mine["series"]) == 5
    assert mine["top"]["referrers"] == [{"value": "poster.example", "count": 3}]
    assert mine["top"]["bot_reasons"] == [{"value": "crawler", "count": 2}]
    assert {t["tag"]: t["total"] for t in mine["by_tag"]} == {"food": 5, "bar": 2}
    hourly = (await http.get("/api/v1/scans", params={**span, "interval": "hour"}, headers=food)).json()
    assert hourly["total"] == 5
    assert sum(b["unique"] for b in hourly["series"]) == 3
    assert mine["first_scan_at"] == "2026-11-03T09:00:00Z"
    # A code of the scope alone reads the same as before.
    assert (await http.get("/api/v1/qr/menu/scans", params=span, headers=food)).json()["total"] == 3


async def test_tokens_through_the_api(
    http: httpx.AsyncClient, admin: dict[str, str], database_url: str, identity_settings: ManagementSettings
) -> None:
    made = await http.post(
        "/api/v1/tokens",
        json={"name": "ci", "role": "editor", "tags": ["print"], "expires_in_days": 30},
        headers=admin,
    )
    assert made.status_code == 201
    assert made.headers["cache-control"] == "no-store"
    secret = made.json()["token"]
    assert secret.startswith("qr_")
    assert len(secret) >= 43
    assert made.json()["expires_at"] is not None
    for body in (
        {"name": "ci", "role": "viewer"},  # taken
        {"name": "bad name", "role": "viewer"},
        {"name": "x", "role": "owner"},
        {"name": "x", "role": "viewer", "expires_in_days": 0},
        {"name": "x", "role": "viewer", "expires_in_days": -1},
        {"name": "x", "role": "viewer", "expires_in_days": 100_000},
        {"name": "x", "role": "viewer", "tags": [""]},
        {"name": "x", "role": "viewer", "secret": "mine"},
    ):
        refused = await http.post("/api/v1/tokens", json=body, headers=admin)
        assert refused.status_code == (409 if body["name"] == "ci" else 422), body
    listed = await http.get("/api/v1/tokens", headers=admin)
    assert listed.status_code == 200
    assert secret not in listed.text
    stored = await asyncpg_fetchval(database_url, "SELECT secret_hash FROM admin_tokens WHERE name = 'ci'")
    assert stored == keyed_hash(kept_key(identity_settings.qr_data_dir), secret)
    assert stored not in listed.text
    (ci,) = [item for item in listed.json()["items"] if item["name"] == "ci"]
    assert (ci["role"], ci["tags"], ci["created_by"], ci["revoked_at"]) == ("editor", ["print"], "root", None)

    mine = {"authorization": f"Bearer {secret}"}
    assert (await http.get("/api/v1/qr", headers=mine)).status_code == 200
    assert (await http.delete("/api/v1/tokens/ci", headers=admin)).status_code == 204
    # Revoked in this very process: refused at once (other processes: within CACHE_SECONDS).
    after = await http.get("/api/v1/qr", headers=mine)
    assert after.status_code == 401
    assert after.headers["www-authenticate"].startswith("Bearer")
    assert (await http.delete("/api/v1/tokens/ci", headers=admin)).status_code == 404  # already revoked
    assert (await http.delete("/api/v1/tokens/nobody", headers=admin)).status_code == 404
    taken = await http.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=admin)
    assert taken.status_code == 409  # even a revoked one's name

    entries = await asyncpg_fetch(
        database_url, "SELECT actor, action, target, detail::text AS detail FROM audit_log ORDER BY id"
    )
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("qr-manage", "token.create", "root"),
        ("root", "token.create", "ci"),
        ("root", "token.revoke", "ci"),
    ]
    assert all(secret not in e["detail"] and stored not in e["detail"] for e in entries)


async def test_a_revocation_reaches_another_process_within_the_bound(
    identity_settings: ManagementSettings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = await make_token(database_url, identity_settings.qr_data_dir, "ops", "admin")
    headers = {"authorization": f"Bearer {secret}"}
    last_used = "SELECT last_used_at FROM admin_tokens WHERE name = 'ops'"
    app = create_app(identity_settings)
    store = the_store(app)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            assert (await http.get("/api/v1/qr", headers=headers)).status_code == 200
            used = await asyncpg_fetchval(database_url, last_used)
            assert used is not None
            for _ in range(3):  # used again within the minute: no write per request
                assert (await http.get("/api/v1/qr", headers=headers)).status_code == 200
            assert await asyncpg_fetchval(database_url, last_used) == used
            # Revoked by another process (qr-manage): this one's copy holds it until read again.
            revoke = "UPDATE admin_tokens SET revoked_at = now() WHERE name = 'ops' RETURNING 1"
            await asyncpg_fetchval(database_url, revoke)
            store._loaded -= CACHE_SECONDS  # the bound has passed
            caplog.set_level(logging.WARNING)
            refused = await http.get("/api/v1/qr", headers=headers)
            assert refused.status_code == 401
            unknown = await http.get("/api/v1/qr", headers={"authorization": "Bearer qr_unknown"})
            assert refused.json()["error"]["message"] == unknown.json()["error"]["message"]
            assert "revoked" in caplog.text
            assert secret not in caplog.text


def the_store(app: object) -> TokenStore:
    """The token store of ``app`` (its wrappers' ``app`` down to Starlette's)."""
    while not hasattr(app, "state"):
        app = app.app  # type: ignore[attr-defined]
    store: TokenStore = app.state.service.token_store
    return store


async def asyncpg_fetchval(database_url: str, statement: str) -> object:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


async def asyncpg_fetch(database_url: str, statement: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return list(await connection.fetch(statement))
    finally:
        await connection.close()


async def test_an_idempotency_key_is_the_callers_own(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    # Another caller reusing a key with the same body gets a refusal, never the first answer (the
    # codes it made, which its own tags may not reach).
    food = await scoped_headers(http, admin, "food-ed", "editor", ["food"])
    printing = await scoped_headers(http, admin, "print-ed", "editor", ["print"])
    rows = [{"target_url": "https://example.org/soup", "tags": ["food"]}]
    first = await http.post("/api/v1/qr/bulk", json=rows, headers={**food, "idempotency-key": "k1"})
    assert first.status_code == 201, first.text
    again = await http.post("/api/v1/qr/bulk", json=rows, headers={**food, "idempotency-key": "k1"})
    assert again.headers.get("idempotent-replayed") == "true"
    other = await http.post("/api/v1/qr/bulk", json=rows, headers={**printing, "idempotency-key": "k1"})
    assert other.status_code == 422, other.text
    assert first.json()["created"][0]["id"] not in other.text


@pytest.mark.parametrize("name", ["%00", "a%00b", "x" * 5000, "%ff", "caf%C3%A9"])
async def test_revoking_a_name_no_token_could_have_is_a_404(
    http: httpx.AsyncClient, admin: dict[str, str], name: str
) -> None:
    response = await http.delete(f"/api/v1/tokens/{name}", headers=admin)
    assert response.status_code == 404, response.text
    assert len(response.json()["error"]["message"]) < 200
