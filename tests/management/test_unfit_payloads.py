"""A static code's payload that fits its own error correction but not another (a logo's H, an
export's ecc): a clear 422 where one image is asked for, and exports that still finish whole."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from PIL import Image

from tests.management.conftest import create, decode

pytestmark = pytest.mark.anyio

# 1,500 bytes: a QR code holds them at L and M (the default), not at Q or H.
LONG_TEXT = "Opening hours and menu. " * 62 + "x" * 12


def png_logo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_logo_is_refused_where_the_payload_cannot_take_h(client: httpx.AsyncClient) -> None:
    made = await create(client, kind="text", content={"text": LONG_TEXT}, tags=["unfit"])
    assert made.status_code == 201, made.text
    code = made.json()
    refused = await client.put(
        f"/api/v1/qr/{code['id']}/logo", content=png_logo(), headers={"Content-Type": "image/png"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"] == {"field": "logo"}
    assert "error correction H" in refused.json()["error"]["message"]
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json()["logo_sha256"] is None


async def test_a_symbol_that_does_not_divide_the_default_size_is_drawn_near_it(
    client: httpx.AsyncClient,
) -> None:
    """No size asked for: the nearest whole pixels per module, however far from the default; a size
    asked for keeps its 10% rule."""
    code = (await create(client, kind="text", content={"text": LONG_TEXT})).json()
    image = await client.get(f"/api/v1/qr/{code['id']}/image.png")
    assert image.status_code == 200, image.text
    assert decode(image.content) == [LONG_TEXT]
    asked = await client.get(f"/api/v1/qr/{code['id']}/image.png", params={"size": 400})
    assert asked.status_code == 422
    assert asked.json()["error"]["details"] == {"field": "size"}


async def test_exports_at_a_level_a_payload_cannot_take_finish_whole(client: httpx.AsyncClient) -> None:
    long = (await create(client, kind="text", content={"text": LONG_TEXT}, tags=["unfit"])).json()
    short = (await create(client, target_url="https://example.org/short", tags=["unfit"])).json()
    one = await client.get(f"/api/v1/qr/{long['id']}/image.png", params={"ecc": "H"})
    assert one.status_code == 422, one.text
    assert one.json()["error"]["details"] == {"field": "ecc"}

    archive = await client.get("/api/v1/qr/export.zip", params={"tag": "unfit", "ecc": "H"})
    assert archive.status_code == 200
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:  # whole: its directory reads
        names = set(opened.namelist())
        manifest = opened.read("manifest.csv").decode()
    assert f"{short['id']}.png" in names
    assert f"{long['id']}.png" not in names
    assert long["id"] in manifest  # listed, without a file

    sheet = await client.get("/api/v1/qr/export.pdf", params={"tag": "unfit", "ecc": "H"})
    assert sheet.status_code == 200
    assert sheet.content.startswith(b"%PDF")
    assert sheet.content.rstrip().endswith(b"%%EOF")
