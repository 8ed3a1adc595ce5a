"""Listing, changing and deleting codes, and the history of every change."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from shared.database import STOPPED
from tests.management.conftest import count_rows, create

pytestmark = pytest.mark.anyio


async def make(client: httpx.AsyncClient, n: int, **body: Any) -> list[dict[str, Any]]:
    made = []
    for i in range(n):
        response = await create(client, target_url=f"https://example.org/{i}", **body)
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


async def walk(client: httpx.AsyncClient, query: str = "", limit: int = 3) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/api/v1/qr?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        page = await client.get(url)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def test_walking_every_page_yields_every_code_once_in_creation_order(client: httpx.AsyncClient) -> None:
    made = await make(client, 10)
    assert await walk(client) == [code["id"] for code in made]
    assert await walk(client, limit=10) == [code["id"] for code in made]
    assert await walk(client, limit=500) == [code["id"] for code in made]


async def test_newest_first_walks_every_code_once_in_reverse(client: httpx.AsyncClient) -> None:
    made = [code["id"] for code in await make(client, 7)]
    assert await walk(client, "&order=-created_at") == made[::-1]
    assert await walk(client, "&order=-created_at", limit=7) == made[::-1]


async def test_the_ids_filter_keeps_the_selection(client: httpx.AsyncClient) -> None:
    made = [code["id"] for code in await make(client, 5)]
    picked = ",".join([made[3], made[1], made[1], "no-such-code"])
    assert await walk(client, f"&ids={picked}") == [made[1], made[3]]  # in the listing's order
    export = await client.get(f"/api/v1/qr/export.csv?ids={made[0]},{made[4]}")
    assert export.status_code == 200
    assert [line.split(",")[0] for line in export.text.splitlines()[1:]] == [made[0], made[4]]


async def test_a_walk_while_codes_are_created_sees_each_code_at_most_once(client: httpx.AsyncClient) -> None:
    before = [code["id"] for code in await make(client, 6)]
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/qr?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = (await client.get(url)).json()
        seen += [item["id"] for item in body["items"]]
        await make(client, 1)  # a code appears between pages
        cursor = body["next_cursor"]
        if cursor is None or len(seen) > 50:
            break
    assert len(seen) == len(set(seen))
    assert seen[: len(before)] == before


async def test_search_tag_and_enabled_filters(client: httpx.AsyncClient) -> None:
    menu = (
        await create(client, target_url="https://example.org/menu", title="Spring Menu", tags=["print"])
    ).json()
    wine = (
        await create(client, target_url="https://wine.example/list", slug="wine-list", tags=["print", "bar"])
    ).json()
    off = (
        await create(client, target_url="https://example.org/old", title="Old 100%_off", enabled=False)
    ).json()

    async def ids(query: str) -> list[str]:
        return [item["id"] for item in (await client.get(f"/api/v1/qr?{query}")).json()["items"]]

    assert await ids("q=spring") == [menu["id"]]  # title, any case
    assert await ids("q=WINE.EXAMPLE") == [wine["id"]]  # target
    assert await ids("q=wine-li") == [wine["id"]]  # id
    assert await ids("q=100%25_") == [off["id"]]  # % and _ are literal, not wildcards
    assert await ids("q=0%25") == [off["id"]]
    assert await ids("q=_") == [off["id"]]
    assert await ids("tag=print") == [menu["id"], wine["id"]]
    assert await ids("tag=bar") == [wine["id"]]
    assert await ids("tag=Print") == []
    assert await ids("enabled=false") == [off["id"]]
    assert await ids("enabled=true&tag=print&q=menu") == [menu["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("limit=1&limit=2", "limit"),
        ("enabled=yes", "enabled"),
        ("q=", "q"),
        ("q=" + "x" * 201, "q"),
        ("q=%00", "q"),
        ("tag=" + "t" * 41, "tag"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WyJ4Il0", "cursor"),  # base64 of ["x"]: wrong shape
        ("cursor=WyJub3QgYSB0aW1lIiwgImEiXQ", "cursor"),  # ["not a time", "a"]
        ("sort=desc", "sort"),
        ("order=created", "order"),
        ("ids=", "ids"),
        ("ids=,,", "ids"),
        ("ids=ok-id,no%20spaces", "ids"),
        ("ids=" + ",".join(f"id{n:03}" for n in range(101)), "ids"),
        ("ids=" + "x" * 65, "ids"),
    ],
)
async def test_bad_list_parameters_are_422(client: httpx.AsyncClient, query: str, field: str) -> None:
    response = await client.get(f"/api/v1/qr?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": field}


async def test_patch_changes_writable_fields_and_records_history(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/a", title="A", tags=["x"])).json()
    response = await client.patch(
        f"/api/v1/qr/{code['id']}",
        json={
            "target_url": "https://example.org/b",
            "title": None,
            "tags": ["y", "z"],
            "redirect_status": 307,
            "enabled": False,
            "expires_at": "2030-01-01T00:00:00Z",
            "fallback_url": "https://example.org/sorry",
            "forward_query": True,
        },
        headers={"x-request-id": "patch-1"},
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["target_url"] == "https://example.org/b"
    assert changed["title"] is None
    assert changed["tags"] == ["y", "z"]
    assert changed["redirect_status"] == 307
    assert changed["enabled"] is False
    assert changed["expires_at"] == "2030-01-01T00:00:00Z"
    assert changed["fallback_url"] == "https://example.org/sorry"
    assert changed["forward_query"] is True
    assert changed["short_url"] == code["short_url"]  # never changes
    assert changed["created_at"] == code["created_at"]
    assert changed["updated_at"] > code["updated_at"]
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json() == changed

    history = (await client.get(f"/api/v1/qr/{code['id']}/history")).json()
    assert [entry["action"] for entry in history["items"]] == ["update", "create"]
    update = history["items"][0]
    assert update["changes"]["target_url"] == {"old": "https://example.org/a", "new": "https://example.org/b"}
    assert update["changes"]["title"] == {"old": "A", "new": None}
    assert update["changes"]["tags"] == {"old": ["x"], "new": ["y", "z"]}
    assert update["changes"]["expires_at"] == {"old": None, "new": "2030-01-01T00:00:00Z"}
    assert update["request_id"] == "patch-1"
    assert update["client_address"] == "127.0.0.1"
    assert update["token_name"] is None
    created = history["items"][1]
    assert created["changes"]["target_url"] == {"old": None, "new": "https://example.org/a"}


async def test_a_patch_that_changes_nothing_records_nothing(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/a", title="A")).json()
    for body in ({}, {"title": "A"}, {"target_url": "https://example.org/a", "enabled": True}):
        response = await client.patch(f"/api/v1/qr/{code['id']}", json=body)
        assert response.status_code == 200
        assert response.json()["updated_at"] == code["updated_at"]
    history = (await client.get(f"/api/v1/qr/{code['id']}/history")).json()
    assert [entry["action"] for entry in history["items"]] == ["create"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "other"}, "id"),
        ({"slug": "other"}, "slug"),
        ({"short_url": "http://evil/r/x"}, "short_url"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
        ({"scan_count": 0}, "scan_count"),
        ({"target_url": None}, "target_url"),
        ({"target_url": "javascript:alert(1)"}, "target_url"),
        ({"fallback_url": "data:text/html,x"}, "fallback_url"),
        ({"fallback_url": "http://qr.test:8080/r/loop"}, "fallback_url"),
        ({"enabled": None}, "enabled"),
        ({"forward_query": "yes"}, "forward_query"),
        ({"redirect_status": None}, "redirect_status"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_patches_are_422_and_change_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    code = (await create(client, target_url="https://example.org/a")).json()
    response = await client.patch(f"/api/v1/qr/{code['id']}", json={"title": "changed", **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": field}
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json() == code


async def test_patch_wants_json(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/a")).json()
    url = f"/api/v1/qr/{code['id']}"
    merge = await client.patch(
        url, content=b'{"title": "t"}', headers={"content-type": "application/merge-patch+json"}
    )
    assert merge.status_code == 200
    form = await client.patch(
        url, content=b"title=t", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415
    assert (await client.patch("/api/v1/qr/unknown123", json={"title": "t"})).status_code == 404


async def test_delete_is_a_tombstone_with_history(client: httpx.AsyncClient, database_url: str) -> None:
    code = (await create(client, target_url="https://example.org/a", slug="kept-forever")).json()
    assert (await client.delete(f"/api/v1/qr/{code['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/qr/{code['id']}")).status_code == 404
    assert (await client.delete(f"/api/v1/qr/{code['id']}")).status_code == 404
    assert (await client.patch(f"/api/v1/qr/{code['id']}", json={"title": "x"})).status_code == 404
    assert (await client.get(f"/api/v1/qr/{code['id']}/image.png")).status_code == 404
    assert code["id"] not in [item["id"] for item in (await client.get("/api/v1/qr")).json()["items"]]
    # The id stays taken, and the history stays readable.
    assert (await create(client, target_url="https://example.org/b", slug="kept-forever")).status_code == 409
    history = (await client.get(f"/api/v1/qr/{code['id']}/history")).json()["items"]
    assert [entry["action"] for entry in history] == ["delete", "create"]
    assert await count_rows(database_url) == 1


async def test_history_pages(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/a")).json()
    for n in range(5):
        await client.patch(f"/api/v1/qr/{code['id']}", json={"title": f"t{n}"})
    first = (await client.get(f"/api/v1/qr/{code['id']}/history?limit=4")).json()
    assert len(first["items"]) == 4
    rest = (await client.get(f"/api/v1/qr/{code['id']}/history?limit=4&cursor={first['next_cursor']}")).json()
    assert rest["next_cursor"] is None
    ids = [entry["id"] for entry in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 6
    assert (await client.get("/api/v1/qr/unknown123/history")).status_code == 404
    bad = await client.get(f"/api/v1/qr/{code['id']}/history?cursor=WyJ4Il0")
    assert bad.status_code == 422


async def test_two_creates_racing_for_one_slug(client: httpx.AsyncClient, database_url: str) -> None:
    responses = await asyncio.gather(
        *(create(client, target_url=f"https://example.org/{n}", slug="contested") for n in range(8))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 7
    assert await count_rows(database_url) == 1
    assert await count_rows(database_url, "qr_code_changes") == 1


async def test_every_write_notifies_the_redirect_processes(
    client: httpx.AsyncClient, database_url: str
) -> None:
    received: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("qr_changed", lambda *args: received.append(args[3]))
        code = (await create(client, target_url="https://example.org/a")).json()
        await client.patch(f"/api/v1/qr/{code['id']}", json={"enabled": False})
        await client.patch(f"/api/v1/qr/{code['id']}", json={"enabled": False})  # no change: no write
        await client.delete(f"/api/v1/qr/{code['id']}")
        for _ in range(40):
            if len(received) >= 5:
                break
            await asyncio.sleep(0.05)
        # A write that stops a code (disabled, deleted) also says so, so the cache forgets it at once.
        stopped = STOPPED + code["id"]
        assert received == [code["id"], code["id"], stopped, code["id"], stopped]
    finally:
        await listener.close()


async def test_a_walk_during_concurrent_creates_skips_no_code(
    client: httpx.AsyncClient, database_url: str
) -> None:
    # Creates commit in created_at order (they serialise on a lock), so a cursor can never step past
    # a code that becomes visible a moment later: every code older than the last one seen is seen.
    await make(client, 5)
    stop = asyncio.Event()

    async def creator() -> None:
        n = 0
        while not stop.is_set():
            await asyncio.gather(
                *(create(client, target_url=f"https://example.org/c{n}/{k}") for k in range(4))
            )
            n += 1

    task = asyncio.create_task(creator())
    try:
        seen = await walk(client, limit=2)
    finally:
        stop.set()
        await task
    assert len(seen) == len(set(seen))
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT id FROM qr_codes ORDER BY created_at, id")
    finally:
        await connection.close()
    ordered = [row["id"] for row in rows]
    last = ordered.index(seen[-1])
    assert seen == ordered[: last + 1]


@pytest.mark.parametrize(
    "cursor",
    [
        "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzAxOjAwIiwgImEiXQ",  # a time that overflows in UTC
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwWiIsICJcdWQ4MDAiXQ",  # an id with a lone surrogate
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwWiIsICJhXHUwMDAwIl0",  # an id with NUL
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgImFiY2RlZiJd",  # a time without a zone
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwWiIsIDEyM10",  # an id that is a number
        "x" * 600,
        "====",
    ],
)
async def test_crafted_list_cursors_are_422(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(f"/api/v1/qr?cursor={cursor}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": "cursor"}


@pytest.mark.parametrize("key", ["[100000000000000000000]", "[-1]", "[0]", "[true]", '["1"]'])
async def test_crafted_history_cursors_are_422(client: httpx.AsyncClient, key: str) -> None:
    import base64

    code = (await create(client, target_url="https://example.org/")).json()
    cursor = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    response = await client.get(f"/api/v1/qr/{code['id']}/history?cursor={cursor}")
    assert response.status_code == 422, response.text


async def test_scans_people_and_bots_apart_kept_after_deletion(
    client: httpx.AsyncClient, database_url: str
) -> None:
    from services.redirect.scans import ScanRecorder

    code = (await create(client, target_url="https://example.org/")).json()
    empty = (await client.get(f"/api/v1/qr/{code['id']}/scans")).json()
    assert {k: empty[k] for k in ("code_id", "total", "people", "bots", "unique")} == {
        "code_id": code["id"],
        "total": 0,
        "people": 0,
        "bots": 0,
        "unique": 0,
    }
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60)
    await recorder.start()
    for n in range(7):
        recorder.record(
            code["id"], b"curl/8.5.0" if n < 2 else b"Mozilla/5.0 (iPhone)", None, "198.51.100.1", None
        )
    await recorder.close()
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json()["scan_count"] == 7
    await client.delete(f"/api/v1/qr/{code['id']}")
    totals = (await client.get(f"/api/v1/qr/{code['id']}/scans")).json()
    assert (totals["total"], totals["people"], totals["bots"], totals["unique"]) == (7, 5, 2, 1)
    assert (await client.get("/api/v1/qr/unknown123/scans")).status_code == 404
    assert (await client.get(f"/api/v1/qr/{code['id']}/scans?limit=1")).status_code == 422


async def test_a_patch_racing_a_delete(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    url = f"/api/v1/qr/{code['id']}"
    results = await asyncio.gather(
        *(client.patch(url, json={"title": f"t{n}"}) for n in range(5)), client.delete(url)
    )
    assert {r.status_code for r in results} <= {200, 204, 404}
    assert results[-1].status_code == 204
    history = (await client.get(f"{url}/history")).json()["items"]
    assert history[0]["action"] == "delete"  # nothing changed the code after its deletion
