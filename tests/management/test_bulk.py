"""Bulk creation: JSON and CSV, all or nothing or partial, idempotency, one notification a batch,
and bounds on what a body costs (errors listed, values read)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.management import bulk as bulk_module
from services.management import limits, schemas
from services.management.schemas import NewQRCode
from tests.management.conftest import count_rows, create

pytestmark = pytest.mark.anyio

CSV = {"content-type": "text/csv"}


async def bulk(
    client: httpx.AsyncClient, body: Any, *, params: dict[str, str] | None = None, **headers: str
) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return await client.post("/api/v1/qr/bulk", content=body, params=params, headers={**CSV, **headers})
    return await client.post("/api/v1/qr/bulk", json=body, params=params, headers=headers)


async def test_a_json_array_creates_every_code_in_order(client: httpx.AsyncClient, database_url: str) -> None:
    rows = [
        {"target_url": f"https://example.org/{n}", "title": f"table {n}", "tags": ["tent"]} for n in range(50)
    ]
    rows[7]["slug"] = "Table-7"
    response = await bulk(client, rows)
    assert response.status_code == 201, response.text
    created = response.json()["created"]
    assert [c["target_url"] for c in created] == [r["target_url"] for r in rows]
    assert created[7]["id"] == "Table-7"
    assert response.json()["errors"] == []
    listed = (await client.get("/api/v1/qr", params={"limit": 100, "tag": "tent"})).json()["items"]
    assert [c["id"] for c in listed] == [c["id"] for c in created]  # the listing keeps the input's order
    history = (await client.get(f"/api/v1/qr/{created[3]['id']}/history")).json()["items"]
    assert [h["action"] for h in history] == ["create"]
    assert history[0]["changes"]["target_url"] == {"old": None, "new": "https://example.org/3"}
    assert await count_rows(database_url) == 50
    assert (await client.get("/api/v1/qr/Table-7")).status_code == 200


async def test_any_bad_row_refuses_all_with_every_error(client: httpx.AsyncClient, database_url: str) -> None:
    await create(client, target_url="https://example.org/", slug="taken")
    rows = [
        {"target_url": "https://example.org/ok"},
        {"target_url": "javascript:alert(1)"},
        {"target_url": "https://example.org/", "redirect_status": 303, "colour": "red"},
        {"target_url": "https://example.org/", "slug": "TAKEN"},
        {"target_url": "https://example.org/", "slug": "twice"},
        {"target_url": "https://example.org/", "slug": "Twice"},
        "not an object",
    ]
    response = await bulk(client, rows)
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["code"] == "invalid_rows"
    found = [(e["row"], e["field"]) for e in body["errors"]]
    assert found == [
        (2, "target_url"),
        (3, "colour"),
        (3, "redirect_status"),
        (7, "row"),
    ]  # slugs are checked after
    assert await count_rows(database_url) == 1

    slugs = await bulk(client, rows[:1] + rows[3:6])
    assert slugs.status_code == 422
    assert [(e["row"], e["field"]) for e in slugs.json()["errors"]] == [(2, "slug"), (4, "slug")]
    assert "row 3" in slugs.json()["errors"][1]["message"]
    assert await count_rows(database_url) == 1


async def test_partial_creates_the_valid_rows_and_reports_the_rest(client: httpx.AsyncClient) -> None:
    await create(client, target_url="https://example.org/", slug="taken")
    rows = [
        {"target_url": "https://example.org/a"},
        {"target_url": "ftp://example.org/"},
        {"target_url": "https://example.org/b", "slug": "taken"},
        {"target_url": "https://example.org/c"},
    ]
    response = await bulk(client, rows, params={"partial": "true"})
    assert response.status_code == 201
    assert [c["target_url"] for c in response.json()["created"]] == [
        "https://example.org/a",
        "https://example.org/c",
    ]
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [(2, "target_url"), (3, "slug")]
    nothing = await bulk(client, rows[1:3], params={"partial": "true"})
    assert nothing.status_code == 422  # nothing valid: nothing created, as without partial


CSV_BODY = (
    "\ufefftarget_url,slug,title,tags,redirect_status,enabled,forward_query,expires_at\r\n"
    'https://example.org/1,menu-1,"Table 1, by the window",menu|print,301,yes,1,2030-01-01T00:00:00Z\r\n'
    "\r\n"
    'https://example.org/2,,"=HYPERLINK(""https://evil.example"")",,,,,\r\n'
    'https://example.org/3,,"two\r\nlines",,,false,no,\r\n'
)


async def test_a_spreadsheets_csv_as_it_comes(client: httpx.AsyncClient) -> None:
    response = await bulk(client, CSV_BODY.encode())
    assert response.status_code == 422  # "two\r\nlines": a title holds no line breaks
    assert [(e["row"], e["field"]) for e in response.json()["errors"]] == [
        (4, "title")
    ]  # the empty line is row 2

    response = await bulk(client, CSV_BODY.replace("two\r\nlines", "two lines").encode())
    assert response.status_code == 201, response.text
    first, second, third = response.json()["created"]
    assert (first["id"], first["title"], first["tags"]) == (
        "menu-1",
        "Table 1, by the window",
        ["menu", "print"],
    )
    assert (first["redirect_status"], first["enabled"], first["forward_query"]) == (301, True, True)
    assert first["expires_at"] == "2030-01-01T00:00:00Z"
    assert second["title"] == '=HYPERLINK("https://evil.example")'  # stored as given; exports neutralise it
    assert (second["redirect_status"], second["tags"], second["enabled"]) == (302, [], True)
    assert (third["enabled"], third["forward_query"]) == (False, False)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"target_url,colour\nhttps://example.org/,red\n", 422, "colour"),
        (b"slug,title\nmenu,Menu\n", 422, "target_url column"),
        (b"target_url,title\nhttps://example.org/,caf\xe9\n", 400, "line 2"),
        (b"", 400, "empty"),
        (b"target_url,target_url\nhttps://example.org/,x\n", 422, "twice"),
        (b'target_url\n"https://example.org/\n', 400, "line"),
        (b"target_url\nhttps://example.org/\x00\n", 400, "NUL"),
    ],
)
async def test_csv_that_cannot_be_read_says_why(
    client: httpx.AsyncClient, database_url: str, body: bytes, status: int, words: str
) -> None:
    response = await bulk(client, body)
    assert response.status_code == status, response.text
    assert words in json.dumps(response.json())
    assert await count_rows(database_url) == 0


async def test_bad_cells_and_rows_name_the_row(client: httpx.AsyncClient) -> None:
    body = (
        "target_url,redirect_status,enabled,expires_at\n"
        "https://example.org/,3O1,,\n"
        "https://example.org/,,maybe,\n"
        "https://example.org/,,,tomorrow\n"
        "https://example.org/,,,,extra\n"
    )
    errors = (await bulk(client, body)).json()["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (1, "redirect_status"),
        (2, "enabled"),
        (3, "expires_at"),
        (4, "row"),
    ]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"target_url": "https://example.org/"}, 400), ([], 201), ("[1, 2", 400)],
)
async def test_json_that_is_no_array_of_codes(client: httpx.AsyncClient, body: Any, status: int) -> None:
    if isinstance(body, str):
        response = await client.post(
            "/api/v1/qr/bulk", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = await bulk(client, body)
    assert response.status_code == status, response.text


async def test_more_than_ten_thousand_rows_are_refused(client: httpx.AsyncClient) -> None:
    body = "target_url\n" + "https://example.org/\n" * 10_001
    response = await bulk(client, body)
    assert response.status_code == 422
    assert "10,000" in response.json()["error"]["message"]


async def test_other_content_types_and_queries(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/qr/bulk", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    response = await bulk(client, [], params={"partial": "maybe"})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"field": "partial"}
    assert (await client.get("/api/v1/qr/bulk")).status_code == 405
    assert (await create(client, target_url="https://example.org/", slug="bulk")).status_code == 422


async def test_an_idempotency_key_answers_a_retry_with_the_first_answer(
    client: httpx.AsyncClient, database_url: str
) -> None:
    rows = [{"target_url": f"https://example.org/{n}"} for n in range(20)]
    first = await bulk(client, rows, **{"Idempotency-Key": "print-run-1"})
    again = await bulk(client, rows, **{"Idempotency-Key": "print-run-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await count_rows(database_url) == 20
    other = await bulk(client, rows[:3], **{"Idempotency-Key": "print-run-1"})
    assert other.status_code == 422
    assert other.json()["error"]["details"] == {"field": "Idempotency-Key"}
    refused = [{"target_url": "nope"}]
    assert (await bulk(client, refused, **{"Idempotency-Key": "bad-run"})).status_code == 422
    assert (await bulk(client, refused, **{"Idempotency-Key": "bad-run"})).headers[
        "idempotent-replayed"
    ] == "true"
    for key in ("", "x" * 256, "caf\u00e9"):
        response = await client.post("/api/v1/qr/bulk", json=rows, headers={"Idempotency-Key": key.encode()})
        assert response.status_code == 422, key
    assert await count_rows(database_url) == 20


async def test_two_requests_with_one_key_at_once_create_one_batch(
    client: httpx.AsyncClient, database_url: str
) -> None:
    rows = [{"target_url": f"https://example.org/{n}"} for n in range(2000)]
    answers = await asyncio.gather(*(bulk(client, rows, **{"Idempotency-Key": "at-once"}) for _ in range(3)))
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert sum("idempotent-replayed" in a.headers for a in answers) == 2
    assert await count_rows(database_url) == 2000


async def test_one_notification_for_a_batch_one_id_for_a_single_code(
    client: httpx.AsyncClient, database_url: str
) -> None:
    received: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("qr_changed", lambda *args: received.append(args[-1]))
        await bulk(client, [{"target_url": f"https://example.org/{n}"} for n in range(500)])
        single = await create(client, target_url="https://example.org/", slug="alone")
        assert single.status_code == 201
        await client.patch("/api/v1/qr/alone", json={"title": "x"})
        writer = await asyncpg.connect(database_url)  # writes around the API are announced too
        try:
            await writer.execute("UPDATE qr_codes SET title = 'all'")  # many rows: one flush
            await writer.execute("INSERT INTO qr_codes (id, short_url, target_url) VALUES ('raw1', 'x', 'y')")
            await writer.execute("DELETE FROM qr_codes WHERE id = 'raw1'")
        finally:
            await writer.close()
        for _ in range(50):
            if len(received) >= 7:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    # The batch: announced as new codes only, then its statement's "*" (the redirect processes read both).
    assert received == ["+", "*", "alone", "alone", "*", "raw1", "raw1"]


async def test_a_row_of_many_unknown_names_is_one_error(client: httpx.AsyncClient, database_url: str) -> None:
    row = {"target_url": "https://example.org/", **{f"c{n:05d}": 0 for n in range(20_000)}}
    assert 240 * 1024 < len(json.dumps(row)) < 260 * 1024
    rows = [
        {"target_url": "https://example.org/ok"},
        row,
        {"c1": 1, "slug": "x", "c2": 2},  # its known fields are still checked
        {"id": "abc", "target_url": "https://example.org/", "extra": 1},
    ]
    response = await bulk(client, rows)
    assert response.status_code == 422, response.text
    body = response.json()
    assert [(e["row"], e["field"], e["message"]) for e in body["errors"]] == [
        (2, "c00000", "is not a field of a QR code"),
        (3, "c1", "is not a field of a QR code"),
        (3, "target_url", "is required"),
        (3, "slug", "must be at least 3 characters"),
        (4, "id", "cannot be changed"),
    ]
    assert body["errors_omitted"] == 0
    assert body["error"]["message"] == "3 rows cannot be created; nothing was created"

    partial = await bulk(client, rows, params={"partial": "true"})
    assert partial.status_code == 201, partial.text
    assert len(partial.json()["created"]) == 1
    assert [e["row"] for e in partial.json()["errors"]] == [2, 3, 3, 3, 4]
    assert await count_rows(database_url) == 1


async def test_many_bad_rows_are_listed_up_to_the_bound_and_the_rest_counted(
    client: httpx.AsyncClient, database_url: str
) -> None:
    rows: list[Any] = [{"target_url": "ftp://example.org/", "redirect_status": 303} for _ in range(3000)]
    rows[0] = {"target_url": "https://example.org/"}
    response = await bulk(client, rows)
    assert response.status_code == 422
    body = response.json()
    assert len(body["errors"]) == bulk_module.MAX_ERRORS == 1000
    assert [e["row"] for e in body["errors"][:3]] == [2, 2, 3]  # the first ones, in row order
    assert body["errors"][-1]["row"] == 501
    assert body["errors_omitted"] == 2 * 2999 - 1000
    assert body["error"]["message"] == (
        "2,999 rows cannot be created; nothing was created "
        "(the first 1,000 errors are listed, 4,998 more are not)"
    )

    partial = await bulk(client, rows, params={"partial": "true"})
    assert partial.status_code == 201
    assert len(partial.json()["created"]) == 1
    assert len(partial.json()["errors"]) == 1000
    assert partial.json()["errors_omitted"] == 4998
    assert await count_rows(database_url) == 1


async def test_taken_slugs_join_the_bounded_list_in_row_order(client: httpx.AsyncClient) -> None:
    await create(client, target_url="https://example.org/", slug="taken")
    rows: list[Any] = [{"target_url": "ftp://example.org/"} for _ in range(1200)]
    rows[0] = {"target_url": "https://example.org/", "slug": "TAKEN"}
    rows.append({"target_url": "https://example.org/ok"})
    response = await bulk(client, rows, params={"partial": "true"})
    assert response.status_code == 201, response.text
    errors = response.json()["errors"]
    assert (errors[0]["row"], errors[0]["field"]) == (1, "slug")
    assert [e["row"] for e in errors] == list(range(1, 1001))
    assert response.json()["errors_omitted"] == 200


async def test_ten_thousand_rows_with_every_field_are_created(
    client: httpx.AsyncClient, database_url: str
) -> None:
    rows = [
        {
            "target_url": f"https://example.org/{n}",
            "slug": f"full-{n}",
            "title": f"Table {n}",
            "tags": [f"tag-{t}" for t in range(limits.MAX_TAGS)],
            "redirect_status": 301,
            "enabled": True,
            "expires_at": "2030-01-01T00:00:00Z",
            "fallback_url": "https://example.org/closed",
            "forward_query": False,
            "kind": "url",
            "content": None,
            "dynamic": False,
            "design": {
                "fg": "#1e3a8a",
                "bg": "#ffffff",
                "modules": "dots",
                "finder": "circle",
                "finder_fg": "#b91c1c",
                "gradient": "linear",
                "fg2": "#1d4ed8",
                "frame": "label",
                "frame_text": "SCAN ME",
                "frame_position": "below",
                "frame_url": True,
            },
        }
        for n in range(bulk_module.MAX_ROWS)
    ]
    # The most values a body of codes without redirect rules has.
    assert set(rows[0]) == set(NewQRCode.model_fields) - {"rules", "split"}
    response = await bulk(client, rows)
    assert response.status_code == 201, response.text[:500]
    assert len(response.json()["created"]) == 10_000
    assert await count_rows(database_url) == 10_000


@pytest.mark.parametrize(
    "body",
    [
        b'[{"target_url": "https://example.org/", "tags": [' + b",".join([b"[]"] * 800_000) + b"]}]",
        b"[" + b",".join([b"{}"] * 10_000) + b"," + b",".join([b"1"] * 800_000) + b"]",
    ],
)
async def test_a_json_body_with_more_values_than_codes_have_is_refused_unread(
    client: httpx.AsyncClient, database_url: str, body: bytes
) -> None:
    response = await client.post(
        "/api/v1/qr/bulk", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": "body"}
    assert f"{bulk_module.MAX_VALUES:,} JSON values" in response.json()["error"]["message"]
    assert await count_rows(database_url) == 0


async def test_commas_and_brackets_inside_strings_are_no_values(client: httpx.AsyncClient) -> None:
    title = '[{,"\\' * 40  # 200 characters: 160 that would count outside a string
    rows = [{"target_url": f"https://example.org/{n}", "title": title} for n in range(7000)]
    assert sum(json.dumps(rows).count(ch) for ch in ",[{") > bulk_module.MAX_VALUES
    response = await bulk(client, rows)
    assert response.status_code == 201, response.text[:500]
    assert response.json()["created"][0]["title"] == title


async def test_a_code_deleted_or_switched_off_is_announced_as_stopped(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Besides its id, a delete and a change that switches a code off announce "!" + id: the redirect
    processes then forget the code instead of keeping it to answer from in an outage."""
    received: list[str] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("qr_changed", lambda *args: received.append(args[-1]))
        for slug in ("gone1", "off1", "late1", "kept1"):
            assert (await create(client, target_url="https://example.org/", slug=slug)).status_code == 201
        assert (await client.delete("/api/v1/qr/gone1")).status_code == 204
        assert (await client.patch("/api/v1/qr/off1", json={"enabled": False})).status_code == 200
        past = "2020-01-01T00:00:00Z"
        assert (await client.patch("/api/v1/qr/late1", json={"expires_at": past})).status_code == 200
        assert (await client.patch("/api/v1/qr/kept1", json={"title": "still on"})).status_code == 200
        for _ in range(50):
            if len(received) >= 11:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.close()
    assert [payload for payload in received if payload.startswith("!")] == ["!gone1", "!off1", "!late1"]
    assert received.count("kept1") == 2  # its create and its change, never a "!"


def test_the_readme_and_the_document_state_the_bulk_bounds() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"first {bulk_module.MAX_ERRORS:,} problems" in readme
    assert f"at most {bulk_module.MAX_VALUES:,} values (what {bulk_module.MAX_ROWS:,} codes" in readme
    schema = schemas.RowsRefused.model_json_schema()
    assert schema["properties"]["errors"]["maxItems"] == bulk_module.MAX_ERRORS
