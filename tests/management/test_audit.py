"""The audit log: one entry per admin write, in the write's own transaction, read back a page at a
time or as CSV, filtered, kept AUDIT_RETENTION_DAYS, never holding a secret."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.management.settings import ManagementSettings
from services.ops import maintenance
from tests.management.conftest import count_rows, create, serve
from tests.management.test_images import png_bytes, put_logo

pytestmark = pytest.mark.anyio

SECRET = "audit-s3cret-token-value"  # a test token


@pytest.fixture
async def robot(environ: dict[str, str], tmp_path: Path) -> Any:
    """A client with a bearer token named ``robot``."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"robot:{hashlib.sha256(SECRET.encode()).hexdigest()}\n")
    settings = ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})
    async for client in serve(settings):
        client.headers["authorization"] = f"Bearer {SECRET}"
        yield client


async def entries(client: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit", params=query)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def test_every_write_leaves_one_entry_with_who_where_and_what(
    robot: httpx.AsyncClient, database_url: str
) -> None:
    code = (await create(robot, target_url="https://example.org/a", tags=["menu"])).json()
    await robot.patch(f"/api/v1/qr/{code['id']}", json={"title": "Menu", "enabled": False})
    await robot.patch(f"/api/v1/qr/{code['id']}", json={"enabled": False})  # no change: no entry
    assert (await put_logo(robot, code["id"], png_bytes(120, 120))).status_code == 200
    assert (await robot.delete(f"/api/v1/qr/{code['id']}/logo")).status_code == 204
    assert (await robot.delete(f"/api/v1/qr/{code['id']}/scans")).status_code == 204
    bulk = await robot.post(
        "/api/v1/qr/bulk", json=[{"target_url": f"https://example.org/b{n}"} for n in range(3)]
    )
    assert bulk.status_code == 201
    assert (await robot.delete(f"/api/v1/qr/{code['id']}")).status_code == 204

    items = await entries(robot)
    assert [item["action"] for item in items] == [
        "code.delete",
        "code.bulk",
        "scans.erase",
        "logo.remove",
        "logo.set",
        "code.update",
        "code.create",
    ]
    for item in items:
        assert item["actor"] == "robot"
        assert item["actor_kind"] == "token"
        assert item["client_address"] == "127.0.0.1"
        assert item["request_id"]
        assert item["outcome"] == "ok"
    by_action = {item["action"]: item for item in items}
    assert by_action["code.create"]["target"] == code["id"]
    assert by_action["code.update"]["detail"] == {"fields": ["enabled", "title"]}
    assert by_action["code.bulk"]["detail"]["created"] == 3
    assert by_action["code.bulk"]["target"] == bulk.json()["created"][0]["id"]
    assert by_action["scans.erase"]["detail"] == {"scans": 0}
    # The history names the same caller.
    history = (await robot.get(f"/api/v1/qr/{code['id']}/history")).json()["items"]
    assert {change["token_name"] for change in history} == {"robot"}
    # No entry holds the token, nor its digest.
    connection = await asyncpg.connect(database_url)
    try:
        dumped = json.dumps(
            [dict(row) for row in await connection.fetch("SELECT * FROM audit_log")], default=str
        )
    finally:
        await connection.close()
    assert SECRET not in dumped
    assert hashlib.sha256(SECRET.encode()).hexdigest() not in dumped


async def test_a_refused_write_leaves_no_entry(client: httpx.AsyncClient, database_url: str) -> None:
    assert (await create(client, target_url="javascript:alert(1)")).status_code == 422
    refused = await client.post(
        "/api/v1/qr/bulk", json=[{"target_url": "https://example.org/"}, {"target_url": "ftp://x"}]
    )
    assert refused.status_code == 422
    assert (await client.delete("/api/v1/qr/no-such-code")).status_code == 404
    assert (await client.patch("/api/v1/qr/no-such-code", json={"title": "x"})).status_code == 404
    assert await count_rows(database_url, "audit_log") == 0


async def test_network_mode_entries_name_the_address(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/n")).json()
    (item,) = await entries(client)
    assert item["action"] == "code.create"
    assert item["target"] == code["id"]
    assert (item["actor"], item["actor_kind"], item["role"]) == (None, "network", None)
    assert item["client_address"] == "127.0.0.1"


async def test_filters_and_pages(client: httpx.AsyncClient, database_url: str) -> None:
    ids = [(await create(client, target_url=f"https://example.org/{n}")).json()["id"] for n in range(5)]
    for code_id in ids[:2]:
        await client.delete(f"/api/v1/qr/{code_id}")
    assert [i["target"] for i in await entries(client, action="code.delete")] == ids[1::-1]
    assert len(await entries(client, action="code.create")) == 5
    assert await entries(client, actor="nobody") == []

    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/audit", params=query)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7
    assert seen == sorted(seen, reverse=True)

    # A range: move the two deletes a day back, then ask for the day before today only.
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE audit_log SET at = at - interval '1 day' WHERE action = 'code.delete'"
        )
    finally:
        await connection.close()
    today = datetime.now(UTC).date()
    earlier = await entries(client, **{"from": str(today - timedelta(days=1)), "to": str(today)})
    assert [i["action"] for i in earlier] == ["code.delete", "code.delete"]


@pytest.mark.parametrize(
    "query",
    [
        "action=code.destroy",
        "action=",
        "limit=0",
        "limit=100000",
        "cursor=not-a-cursor",
        "cursor=WzEuNV0",  # [1.5]
        "from=yesterday",
        "from=2026-12-01T10:00:00",  # no offset
        "actor=" + "a" * 400,
        "actor=%00",
        "colour=red",
    ],
)
async def test_hostile_queries_get_a_422_naming_the_parameter(client: httpx.AsyncClient, query: str) -> None:
    for path in ("/api/v1/audit", "/api/v1/audit.csv"):
        if path.endswith(".csv") and query.startswith(("limit", "cursor")):
            continue
        response = await client.get(f"{path}?{query}")
        assert response.status_code == 422, (path, query, response.text)
        assert response.json()["error"]["message"]


async def test_the_csv_holds_every_entry_oldest_first_formula_safe(client: httpx.AsyncClient) -> None:
    await create(client, target_url="https://example.org/c", slug="csv-one")
    await client.patch("/api/v1/qr/csv-one", json={"title": "=HYPERLINK(1)"})
    response = await client.get("/api/v1/audit.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "audit.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["action"] for row in rows] == ["code.create", "code.update"]
    assert json.loads(rows[1]["detail"]) == {"fields": ["title"]}
    assert rows[0]["target"] == "csv-one"
    only = list(csv.DictReader(io.StringIO((await client.get("/api/v1/audit.csv?action=code.update")).text)))
    assert [row["action"] for row in only] == ["code.update"]


async def test_retention_forgets_entries_past_their_days(
    client: httpx.AsyncClient, database_url: str
) -> None:
    for n in range(3):
        await create(client, target_url=f"https://example.org/r{n}")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE audit_log SET at = now() - interval '401 days' WHERE id = (SELECT min(id) FROM audit_log)"
        )
    finally:
        await connection.close()
    upkeep = await maintenance.keep_partitions(database_url, retention_days=400, audit_retention_days=400)
    assert upkeep.expired_audit == 1
    assert await count_rows(database_url, "audit_log") == 2
    upkeep = await maintenance.keep_partitions(database_url, retention_days=400, audit_retention_days=400)
    assert upkeep.expired_audit == 0
