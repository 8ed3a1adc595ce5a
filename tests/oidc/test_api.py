"""The provider's JWT access tokens on the API, through the door: a service account's token works
with its mapped role; each forged one gets 401 in the error shape, and nothing replayable is logged."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.oidc.conftest import SCRIPTS_CLIENT, RunningProvider
from tests.oidc.flows import app_with_provider
from tests.oidc.test_tokens import FORGERIES, claims, forged, signed

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(
    environ: dict[str, str], provider: RunningProvider, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_with_provider(environ, provider, tmp_path):
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_service_accounts_token_works_on_the_api_with_its_mapped_role(
    app: httpx.AsyncClient, provider: RunningProvider, environ: dict[str, str]
) -> None:
    assert (await app.get("/api/v1/qr")).status_code == 401  # OIDC_ISSUER implies ADMIN_AUTH=identity
    token = bearer(provider.service_account_token())  # the account is in qr-editors
    created = await app.post("/api/v1/qr", json={"target_url": "https://example.org/a"}, headers=token)
    assert created.status_code == 201, created.text
    code = created.json()["id"]
    assert (await app.get(f"/api/v1/qr/{code}", headers=token)).status_code == 200
    deleted = await app.delete(f"/api/v1/qr/{code}", headers=token)
    assert deleted.status_code == 403  # deleting is an admin's
    assert deleted.json()["error"]["code"] == "forbidden"
    history = await app.get(f"/api/v1/qr/{code}/history", headers=token)
    assert history.json()["items"][-1]["token_name"] == SCRIPTS_CLIENT
    connection = await asyncpg.connect(environ["DATABASE_URL"])
    try:
        row = await connection.fetchrow("SELECT * FROM audit_log WHERE action = 'code.create'")
    finally:
        await connection.close()
    assert row is not None
    assert (row["actor"], row["actor_kind"], row["role"]) == (SCRIPTS_CLIENT, "token", "editor")


async def test_a_persons_access_token_acts_as_that_person(
    app: httpx.AsyncClient, provider: RunningProvider
) -> None:
    token = signed(
        provider.keys[0],
        claims(provider, sub="ana", email="ana@example.org", client_id="qr-console", groups=["qr-viewers"]),
    )
    assert (await app.get("/api/v1/qr", headers=bearer(token))).status_code == 200
    refused = await app.post(
        "/api/v1/qr", json={"target_url": "https://example.org/b"}, headers=bearer(token)
    )
    assert refused.status_code == 403  # a viewer
    unmapped = signed(provider.keys[0], claims(provider, groups=["staff"]))
    assert (await app.get("/api/v1/qr", headers=bearer(unmapped))).status_code == 403


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_forged_token_gets_401_in_the_error_shape(
    app: httpx.AsyncClient, provider: RunningProvider, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = forged(provider, forgery)
    caplog.set_level(logging.DEBUG)
    answer = await app.get("/api/v1/qr", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.json()["error"]["message"]
    assert answer.headers["www-authenticate"].startswith("Bearer")
    signature = token.rsplit(".", 1)[1] or token
    for record in caplog.records:
        logged = record.getMessage() + repr(record.__dict__)
        assert token not in logged
        assert signature not in logged
    assert json.dumps(answer.json()).find(token) == -1
