"""PNG images of codes: they decode to the short URL, are cached, and refuse bad options."""

from __future__ import annotations

import io

import httpx
import pytest
import zxingcpp
from PIL import Image

from services.management.settings import ManagementSettings
from tests.management.conftest import create, decode

pytestmark = pytest.mark.anyio


async def test_the_png_encodes_the_short_url_and_is_cached(
    client: httpx.AsyncClient, settings: ManagementSettings
) -> None:
    code = (await create(client, target_url="https://example.org/menu")).json()
    response = await client.get(f"/api/v1/qr/{code['id']}/image.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert decode(response.content) == [code["short_url"]]
    width, height = Image.open(io.BytesIO(response.content)).size
    assert width == height
    assert abs(width - 400) <= 40
    etag = response.headers["etag"]
    again = await client.get(f"/api/v1/qr/{code['id']}/image.png", headers={"if-none-match": etag})
    assert again.status_code == 304
    # The store is only a cache: without it, the same request renders the same bytes.
    stored = list(settings.qr_data_dir.rglob("*"))
    assert any(p.is_file() for p in stored)
    for path in sorted(stored, reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    rerendered = await client.get(f"/api/v1/qr/{code['id']}/image.png")
    assert rerendered.content == response.content


@pytest.mark.parametrize(
    "query",
    [
        "size=64&border=0&ecc=L",
        "size=4096&ecc=H",
        "size=1000&border=10&ecc=q",
        "border=0",
    ],
)
async def test_image_options_still_decode(client: httpx.AsyncClient, query: str) -> None:
    # A zero-heavy payload too: qrcode 8.2 once failed on those (glog(0)).
    code = (await create(client, target_url="https://example.org/", slug="000000000000000000000000")).json()
    response = await client.get(f"/api/v1/qr/{code['id']}/image.png?{query}")
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    size = int(query.split("size=")[1].split("&")[0]) if "size=" in query else 400
    assert abs(image.width - size) <= 0.1 * size
    framed = Image.new("L", (image.width + 80, image.height + 80), 255)
    framed.paste(image.convert("L"), (40, 40))
    assert [r.text for r in zxingcpp.read_barcodes(framed)] == [code["short_url"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("size=0", "size"),
        ("size=100000", "size"),
        ("size=-5", "size"),
        ("size=abc", "size"),
        ("size=1e3", "size"),
        ("size=٣٠٠", "size"),
        ("border=17", "border"),
        ("ecc=X", "ecc"),
        ("size=300&size=400", "size"),
        ("colour=red", "colour"),
    ],
)
async def test_bad_image_options_are_422(client: httpx.AsyncClient, query: str, field: str) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    response = await client.get(f"/api/v1/qr/{code['id']}/image.png?{query}")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"field": field}


async def test_images_of_unknown_codes_are_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/qr/unknown123/image.png")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_if_none_match_star_matches_any_image(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    response = await client.get(f"/api/v1/qr/{code['id']}/image.png", headers={"if-none-match": "*"})
    assert response.status_code == 304
    assert response.headers["etag"]
