"""The loop check through the API: a destination that any decoder on the way reads as one of this
service's own short links is refused, on create, on change and in bulk."""

from __future__ import annotations

import httpx
import pytest

from tests.management.conftest import BASE, count_rows, create

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/r%2F{id}", "/r%252F{id}", "/x/..%2Fr/{id}", "//r/{id}"])
async def test_an_encoded_short_link_of_this_service_is_422(
    client: httpx.AsyncClient, database_url: str, path: str
) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    loop = BASE + path.format(id=code["id"])

    response = await create(client, target_url=loop)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": "target_url"}
    assert "own short links" in response.json()["error"]["message"]

    changed = await client.patch(f"/api/v1/qr/{code['id']}", json={"fallback_url": loop})
    assert changed.status_code == 422, changed.text
    assert changed.json()["error"]["details"] == {"field": "fallback_url"}

    rows = await client.post("/api/v1/qr/bulk", json=[{"target_url": loop}])
    assert rows.status_code == 422, rows.text
    assert [(e["row"], e["field"]) for e in rows.json()["errors"]] == [(1, "target_url")]
    assert await count_rows(database_url) == 1
