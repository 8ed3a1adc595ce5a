"""Roles and tag scopes, generated from the table of operations: every operation, called as each
role, with no identity, with an expired token, with a revoked one and with a token of another tag,
answers what the matrix says. An operation without an example request here fails the test, so a new
route cannot go untested."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import create_async_engine

from services.management.api.operations import OPERATIONS, Operation
from services.management.auth.network import is_open
from services.management.auth.roles import Role
from services.management.auth.tokens import kept_key
from services.management.schemas import NewToken
from services.management.service import tokens as service_tokens
from services.management.settings import ManagementSettings
from shared.database import sqlalchemy_url
from tests.management.conftest import serve

pytestmark = pytest.mark.anyio

TAG = "team-a"
OTHER = "team-b"


def png(side: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class Example:
    """One request to an operation: made fresh for every caller (``setup`` gets the admin's
    client and returns the values its path and body use), and the answer a caller with the tag
    ``TAG``'s codes out of reach (a token of another tag, with the admin role) gets."""

    path: str
    other_tag: int  # the status for a token of another tag
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    setup: str = "code"  # "code", "code+logo", "token", "none"


CODE = "{code}"
EXAMPLES: dict[str, Example] = {
    "listCodes": Example("/api/v1/qr", 200),
    "createCode": Example("/api/v1/qr", 403, json={"target_url": "https://example.org/", "tags": [TAG]}),
    "getCode": Example(f"/api/v1/qr/{CODE}", 404),
    "updateCode": Example(f"/api/v1/qr/{CODE}", 404, json={"title": "Changed"}),
    "deleteCode": Example(f"/api/v1/qr/{CODE}", 404),
    "getHistory": Example(f"/api/v1/qr/{CODE}/history", 404),
    "tryRules": Example(f"/api/v1/qr/{CODE}/rules/try", 404, json={"agent": "curl/8"}),
    "getScans": Example(f"/api/v1/qr/{CODE}/scans", 404),
    "eraseScans": Example(f"/api/v1/qr/{CODE}/scans", 404),
    "getScansCsv": Example(f"/api/v1/qr/{CODE}/scans.csv", 404),
    "createCodes": Example(
        "/api/v1/qr/bulk", 422, json=[{"target_url": "https://example.org/bulk", "tags": [TAG]}]
    ),
    "exportCodesCsv": Example(f"/api/v1/qr/export.csv?ids={CODE}", 200),
    "exportCodesZip": Example(f"/api/v1/qr/export.zip?ids={CODE}", 200),
    "exportCodesPdf": Example(f"/api/v1/qr/export.pdf?ids={CODE}", 200),
    "getAllScans": Example("/api/v1/scans", 200),
    "getImagePng": Example(f"/api/v1/qr/{CODE}/image.png", 404),
    "getImageSvg": Example(f"/api/v1/qr/{CODE}/image.svg", 404),
    "getLogo": Example(f"/api/v1/qr/{CODE}/logo", 404, setup="code+logo"),
    "putLogo": Example(f"/api/v1/qr/{CODE}/logo", 404, content=png(), headers={"content-type": "image/png"}),
    "deleteLogo": Example(f"/api/v1/qr/{CODE}/logo", 404, setup="code+logo"),
    "listTokens": Example("/api/v1/tokens", 403, setup="none"),
    "createToken": Example("/api/v1/tokens", 403, json={"name": "{fresh}", "role": "viewer"}, setup="none"),
    "revokeToken": Example("/api/v1/tokens/{token}", 403, setup="token"),
    "getAudit": Example("/api/v1/audit", 403, setup="none"),
    "getAuditCsv": Example("/api/v1/audit.csv", 403, setup="none"),
    "getOpenApi": Example("/api/v1/openapi.json", 200, setup="none"),
    "getHealth": Example("/health", 200, setup="none"),
    "getLiveness": Example("/livez", 200, setup="none"),
    "getMetrics": Example("/metrics", 200, setup="none"),
}


def success(operation: Operation) -> int:
    return min(status for status in operation.answers if 200 <= status < 300)


def expected(operation: Operation, caller: str) -> int:
    """What the matrix says ``caller`` gets from ``operation``."""
    if is_open(operation.path):
        return success(operation)  # probes and metrics: open to anyone, as before
    if caller in ("nobody", "expired", "revoked"):
        return 401
    if caller == "other-tag":
        status = EXAMPLES[operation.operation_id].other_tag
        return success(operation) if status == 200 else status
    return success(operation) if Role(caller).allows(operation.role) else 403


async def make_token(
    database_url: str, folder: Path, name: str, role: str, tags: list[str] | None = None
) -> str:
    """A token made as qr-manage and the API make them (the store's key, its table)."""
    engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with engine.begin() as conn:
            new = NewToken(name=name, role=role, tags=tags)  # type: ignore[arg-type]
            made = await service_tokens.create(conn, kept_key(folder), new, service_tokens.QR_MANAGE)
    finally:
        await engine.dispose()
    return made.token


@pytest.fixture
def identity_settings(environ: dict[str, str]) -> ManagementSettings:
    return ManagementSettings.from_env({**environ, "ADMIN_AUTH": "identity"})


@pytest.fixture
async def tokens(identity_settings: ManagementSettings, database_url: str) -> dict[str, str]:
    folder = identity_settings.qr_data_dir
    made = {
        role: await make_token(
            database_url, folder, f"{role}-token", role, [TAG] if role != "admin" else None
        )
        for role in ("viewer", "editor", "admin")
    }
    made["other-tag"] = await make_token(database_url, folder, "other-tag-token", "admin", [OTHER])
    made["expired"] = await make_token(database_url, folder, "expired-token", "admin")
    made["revoked"] = await make_token(database_url, folder, "revoked-token", "admin")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE admin_tokens SET expires_at = $1 WHERE name = 'expired-token'",
            datetime.now(UTC) - timedelta(seconds=1),
        )
        await connection.execute("UPDATE admin_tokens SET revoked_at = now() WHERE name = 'revoked-token'")
    finally:
        await connection.close()
    return made


@pytest.fixture
async def app_client(identity_settings: ManagementSettings) -> AsyncIterator[httpx.AsyncClient]:
    async for http in serve(identity_settings):
        yield http


def bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def test_every_operation_has_an_example_request() -> None:
    assert set(EXAMPLES) == {operation.operation_id for operation in OPERATIONS}


async def test_every_operation_answers_every_caller_as_the_matrix_says(
    app_client: httpx.AsyncClient, tokens: dict[str, str], database_url: str
) -> None:
    admin = bearer(tokens["admin"])
    callers = ["nobody", "viewer", "editor", "admin", "expired", "revoked", "other-tag"]
    wrong: list[str] = []

    async def prepared(example: Example) -> dict[str, str]:
        values = {"fresh": f"t-{uuid.uuid4().hex[:10]}"}
        if example.setup.startswith("code"):
            made = await app_client.post(
                "/api/v1/qr", json={"target_url": "https://example.org/", "tags": [TAG]}, headers=admin
            )
            assert made.status_code == 201, made.text
            values["code"] = made.json()["id"]
            if example.setup == "code+logo":
                logo = await app_client.put(
                    f"/api/v1/qr/{values['code']}/logo",
                    content=png(),
                    headers={**admin, "content-type": "image/png"},
                )
                assert logo.status_code == 200, logo.text
        if example.setup == "token":
            values["token"] = values["fresh"]
            made = await app_client.post(
                "/api/v1/tokens", json={"name": values["token"], "role": "viewer"}, headers=admin
            )
            assert made.status_code == 201, made.text
        return values

    for operation in OPERATIONS:
        example = EXAMPLES[operation.operation_id]
        for caller in callers:
            values = await prepared(example)
            path = example.path.format(**values)
            body = example.json
            if isinstance(body, dict):
                body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}
            response = await app_client.request(
                operation.method.upper(),
                path,
                json=body,
                content=example.content,
                headers={**example.headers, **bearer(None if caller == "nobody" else tokens[caller])},
            )
            want = expected(operation, caller)
            if response.status_code != want:
                wrong.append(f"{operation.operation_id} as {caller}: {response.status_code}, not {want}")
                continue
            if want == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.json()["error"]["code"] == "unauthorized"
            if want == 403 and caller in ("viewer", "editor"):
                assert response.json()["error"]["message"] == f"this needs the {operation.role.value} role"
    assert wrong == []
