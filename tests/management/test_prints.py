"""Files for print: a ZIP of every code's image with its manifest, streamed."""

from __future__ import annotations

import csv
import io
import zipfile

import httpx
import pytest

from tests.management.conftest import bulk_codes, create, decode, measure_stream

pytestmark = pytest.mark.anyio


async def test_a_zip_holds_one_image_per_code_each_decoding_to_its_short_url(
    client: httpx.AsyncClient,
) -> None:
    made = await bulk_codes(client, 12, "tent", title="=Table {n}")
    await create(client, target_url="https://example.org/other", tags=["other"])
    response = await client.get("/api/v1/qr/export.zip", params={"tag": "tent", "size": 300})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="qr-codes-tent.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [f"{code['id']}.png" for code in made] + ["manifest.csv"]
    for code in made:
        assert decode(archive.read(f"{code['id']}.png")) == [code["short_url"]]
    manifest = list(csv.reader(io.StringIO(archive.read("manifest.csv").decode())))
    assert manifest[0] == ["id", "short_url", "target_url", "title", "file"]
    assert manifest[1] == [
        made[0]["id"],
        made[0]["short_url"],
        made[0]["target_url"],
        "'=Table 0",
        f"{made[0]['id']}.png",
    ]
    assert len(manifest) == 13


async def test_svg_in_millimetres(client: httpx.AsyncClient) -> None:
    made = await bulk_codes(client, 3, "sticker")
    response = await client.get(
        "/api/v1/qr/export.zip", params={"tag": "sticker", "format": "svg", "size_mm": 25}
    )
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    svg = archive.read(f"{made[0]['id']}.svg").decode()
    assert 'width="25mm"' in svg
    assert archive.getinfo(f"{made[0]['id']}.svg").compress_type == zipfile.ZIP_DEFLATED


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "jpeg"}, "format"),
        ({"size_mm": "900"}, "size_mm"),  # larger than a PNG is drawn
        ({"size": "10"}, "size"),
        ({"colour": "red"}, "colour"),
        ({"tag": ""}, "tag"),
    ],
)
async def test_bad_options_are_refused_before_anything_is_sent(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/v1/qr/export.zip", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": field}


async def test_an_empty_selection_is_an_empty_archive_with_its_manifest(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/qr/export.zip", params={"tag": "nothing"})
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.namelist() == ["manifest.csv"]


async def test_the_csv_export_follows_the_filters_and_defuses_formulas(client: httpx.AsyncClient) -> None:
    made = await bulk_codes(client, 5, "menu", title="=Table {n}")
    await create(client, target_url="https://example.org/off", title="@SUM(1)", tags=["menu"], enabled=False)
    response = await client.get("/api/v1/qr/export.csv", params={"tag": "menu", "enabled": "true"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["id"] for row in rows] == [code["id"] for code in made]
    assert rows[0]["title"] == "'=Table 0"
    assert rows[0]["tags"] == "menu"
    assert rows[0]["scan_count"] == "0"
    everything = list(csv.DictReader(io.StringIO((await client.get("/api/v1/qr/export.csv")).text)))
    assert everything[-1]["title"] == "'@SUM(1)"
    assert everything[-1]["enabled"] == "false"
    assert (await client.get("/api/v1/qr/export.csv", params={"limit": "5"})).status_code == 422


async def test_a_large_code_export_streams_in_bounded_memory(
    client: httpx.AsyncClient, database_url: str
) -> None:
    import asyncpg

    from services.management import codes, exports
    from shared.database import FAULTS

    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO qr_codes (id, short_url, target_url, title) "
            "SELECT 'code' || n, 'http://localhost/r/code' || n, 'https://example.org/' || n, "
            "repeat('t', 100) "
            "FROM generate_series(1, 50000) n"
        )
    finally:
        await connection.close()
    lines, received, peak = await measure_stream(
        database_url, lambda engine: exports.codes_csv(engine, codes.Filters(), faults=FAULTS)
    )
    assert lines == 50_001
    assert received > 8_000_000
    assert peak < 5_000_000, (peak, received)
