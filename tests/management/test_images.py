"""Images of codes: PNG and SVG, styled and sized for print, with a logo; every one decodes to the
short URL (an SVG through a real rasteriser), is cached, and bad options are refused before a render."""

from __future__ import annotations

import asyncio
import io
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import resvg_py
import zxingcpp
from PIL import Image

from services.management.settings import ManagementSettings
from tests.management.conftest import count_rows, create, serve

pytestmark = pytest.mark.anyio

ZERO_HEAVY = "000000000000000000000000"  # qrcode 8.2 once failed on digit runs of zeros (glog(0))


def read_png(png: bytes, *, margin: int = 40) -> list[Any]:
    """Decoded symbols of a PNG, on a white page (so that a border-0 image has its quiet zone)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    page = Image.new("RGB", (image.width + 2 * margin, image.height + 2 * margin), (255, 255, 255))
    page.paste(image, (margin, margin))
    return list(zxingcpp.read_barcodes(page, try_invert=False))


def read_svg(svg: bytes, *, pixels: int = 800) -> list[Any]:
    """Decoded symbols of an SVG, rasterised by resvg as a browser or a print driver would."""
    # dpi: what a CSS pixel is (resvg-py's default of 0 turns "25mm" into nothing).
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg.decode(), width=pixels, height=pixels, dpi=96))
    return read_png(png)


def read(image_format: str, data: bytes) -> list[Any]:
    return read_png(data) if image_format == "png" else read_svg(data)


def as_rgb(image_format: str, data: bytes) -> Image.Image:
    """The image as RGB pixels (an SVG rasterised by resvg)."""
    if image_format == "svg":
        data = bytes(resvg_py.svg_to_bytes(svg_string=data.decode(), width=800, height=800, dpi=96))
    return Image.open(io.BytesIO(data)).convert("RGB")


def hex_rgb(colour: str) -> tuple[int, int, int]:
    digits = colour.removeprefix("%23").lower()
    if len(digits) == 3:
        digits = "".join(2 * d for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def png_bytes(width: int, height: int, colour: tuple[int, int, int, int] = (200, 30, 30, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (an image bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


async def put_logo(
    client: httpx.AsyncClient, code_id: str, body: bytes, content_type: str = "image/png"
) -> httpx.Response:
    return await client.put(
        f"/api/v1/qr/{code_id}/logo", content=body, headers={"content-type": content_type}
    )


@pytest.fixture
async def uncached(environ: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A service that keeps no image in memory: every request reads the store or renders."""
    async for http in serve(ManagementSettings.from_env({**environ, "IMAGE_CACHE_BYTES": "0"})):
        yield http


@pytest.mark.parametrize("image_format", ["png", "svg"])
async def test_an_image_decodes_to_the_short_url_and_is_derivable_from_the_database(
    uncached: httpx.AsyncClient, settings: ManagementSettings, image_format: str
) -> None:
    code = (await create(uncached, target_url="https://example.org/menu")).json()
    path = f"/api/v1/qr/{code['id']}/image.{image_format}"
    response = await uncached.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        {"png": "image/png", "svg": "image/svg+xml"}[image_format]
    )
    assert [r.text for r in read(image_format, response.content)] == [code["short_url"]]
    etag = response.headers["etag"]
    assert response.headers["cache-control"] == "private, no-cache"  # asked again: a new logo shows
    assert (await uncached.get(path, headers={"if-none-match": etag})).status_code == 304
    assert (await uncached.get(path, headers={"if-none-match": f'W/"x", {etag}'})).status_code == 304
    # The store is only a cache: without it, the same request renders the same bytes.
    stored = [p for p in settings.qr_data_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1
    shutil.rmtree(settings.qr_data_dir)  # the whole folder lost, as with a deleted volume
    rerendered = await uncached.get(path)
    assert rerendered.content == response.content
    assert rerendered.headers["etag"] == etag


OPTIONS = [
    ("png", "size=64&border=0&ecc=L"),
    ("png", "size=4096&ecc=H"),
    ("png", "size=1000&border=16&ecc=q"),
    ("png", "fg=1a237e&bg=fff8e1"),
    ("png", "fg=%23004d40&bg=%23FFF&border=0"),
    ("png", "dpi=300&size_mm=40"),
    ("png", "dpi=600&size=800"),
    ("svg", "size=64&border=0&ecc=L"),
    ("svg", "size=4096&ecc=H"),
    ("svg", "border=16"),
    ("svg", "fg=7b1fa2&bg=f3e5f5&ecc=Q"),
    ("svg", "size_mm=25.5&dpi=1200&border=2"),
]


@pytest.mark.parametrize("logo", [False, True], ids=["plain", "logo"])
@pytest.mark.parametrize(("image_format", "query"), OPTIONS)
async def test_every_option_combination_decodes(
    client: httpx.AsyncClient, image_format: str, query: str, logo: bool
) -> None:
    code = (
        await create(client, target_url="https://example.org/", slug=ZERO_HEAVY + ("-l" if logo else ""))
    ).json()
    if logo:
        assert (await put_logo(client, code["id"], png_bytes(300, 200))).status_code == 200
    response = await client.get(f"/api/v1/qr/{code['id']}/image.{image_format}?{query}")
    if logo and image_format == "png" and query.startswith("size=64&"):
        # ECC H makes the symbol 33 modules wide: 64 px cannot draw it at whole pixels per module.
        assert response.status_code == 422
        assert "whole pixels per module" in response.json()["error"]["message"]
        return
    assert response.status_code == 200, response.text
    symbols = read(image_format, response.content)
    assert [s.text for s in symbols] == [code["short_url"]]
    if logo:
        assert symbols[0].ec_level == "H"  # a logo always takes the strongest error correction
    params = dict(part.split("=") for part in query.split("&"))
    if not logo:  # exactly two colours: the modules and the ground asked for
        colours = {colour for _, colour in as_rgb(image_format, response.content).getcolors(1 << 16) or []}
        assert colours == {hex_rgb(params.get("fg", "000000")), hex_rgb(params.get("bg", "ffffff"))}
    if image_format == "png":
        image = Image.open(io.BytesIO(response.content))
        wanted = int(params.get("size", 400))
        if "size_mm" in params:
            wanted = round(float(params["size_mm"]) / 25.4 * int(params["dpi"]))
        assert image.width == image.height
        assert abs(image.width - wanted) <= 0.1 * wanted
        if "size_mm" in params:  # it prints at exactly the size asked for
            printed_mm = image.width / image.info["dpi"][0] * 25.4
            assert abs(printed_mm - float(params["size_mm"])) < 0.01
        elif "dpi" in params:
            assert [round(v) for v in image.info["dpi"]] == [int(params["dpi"])] * 2
    else:
        text = response.content.decode()
        if "size_mm" in query:
            assert 'width="25.5mm"' in text
        assert "<script" not in text


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("size=0", "size", "from 64"),
        ("size=100000", "size", "from 64"),
        ("size=-5", "size", ""),
        ("size=abc", "size", ""),
        ("size=1e3", "size", ""),
        ("size=٣٠٠", "size", ""),
        ("border=17", "border", ""),
        ("ecc=X", "ecc", ""),
        ("size=300&size=400", "size", "once"),
        ("colour=red", "colour", ""),
        ("fg=ffffff&bg=000000", "fg", "darker"),  # inverted: many scanners cannot read it
        ("fg=777777&bg=888888", "fg", "contrast"),
        ("fg=ff0000", "fg", "contrast"),  # red on white: 4.0:1
        ("fg=zzzzzz", "fg", "hex colour"),
        ("bg=12345", "bg", "hex colour"),
        ("fg=%3Cscript%3E", "fg", "hex colour"),
        ("size=400&size_mm=30", "size", "not both"),
        ("size_mm=3000", "size_mm", "2000"),  # beyond any print (a PNG too large: see below)
        ("size_mm=2", "size_mm", ""),
        ("size_mm=1e2", "size_mm", ""),
        ("size_mm=30.123", "size_mm", ""),
        ("dpi=10&size=400", "dpi", ""),
        ("dpi=abc", "dpi", ""),
    ],
)
async def test_bad_image_options_are_422_before_any_render(
    client: httpx.AsyncClient, settings: ManagementSettings, query: str, field: str, reason: str
) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    for image_format in ("png", "svg"):
        response = await client.get(f"/api/v1/qr/{code['id']}/image.{image_format}?{query}")
        assert response.status_code == 422, (image_format, response.text)
        error = response.json()["error"]
        assert error["details"] == {"field": field}
        assert reason in error["message"]
    assert not settings.qr_data_dir.exists() or not any(settings.qr_data_dir.rglob("*.*"))


async def test_images_of_unknown_codes_are_404(client: httpx.AsyncClient) -> None:
    for path in ("image.png", "image.svg", "logo"):
        response = await client.get(f"/api/v1/qr/unknown123/{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_if_none_match_star_matches_any_image(client: httpx.AsyncClient) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    response = await client.get(f"/api/v1/qr/{code['id']}/image.png", headers={"if-none-match": "*"})
    assert response.status_code == 304
    assert response.headers["etag"]


# -- logos ------------------------------------------------------------------------------------------


async def test_a_logo_is_stored_shown_recorded_and_removed(
    client: httpx.AsyncClient, database_url: str
) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    plain = await client.get(f"/api/v1/qr/{code['id']}/image.png")
    uploaded = await put_logo(client, code["id"], jpeg_bytes(1200, 600), "image/jpeg")
    assert uploaded.status_code == 200, uploaded.text
    sha256 = uploaded.json()["logo_sha256"]
    assert len(sha256) == 64
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json()["logo_sha256"] == sha256

    stored = await client.get(f"/api/v1/qr/{code['id']}/logo")
    assert stored.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(stored.content)).size == (1024, 512)  # normalised, not as uploaded

    with_logo = await client.get(f"/api/v1/qr/{code['id']}/image.png")
    assert with_logo.headers["etag"] != plain.headers["etag"]
    image = Image.open(io.BytesIO(with_logo.content)).convert("RGB")
    centre = image.getpixel((image.width // 2, image.height // 2))
    assert centre[2] > 150 > centre[0]  # the logo's blue sits in the middle
    assert [s.text for s in read_png(with_logo.content)] == [code["short_url"]]

    # The same logo for another code is stored once.
    other = (await create(client, target_url="https://example.org/2")).json()
    assert (await put_logo(client, other["id"], jpeg_bytes(1200, 600), "image/jpeg")).json()[
        "logo_sha256"
    ] == sha256
    assert await count_rows(database_url, "logos") == 1

    history = (await client.get(f"/api/v1/qr/{code['id']}/history")).json()["items"]
    assert history[0]["changes"] == {"logo_sha256": {"old": None, "new": sha256}}

    assert (await client.delete(f"/api/v1/qr/{code['id']}/logo")).status_code == 204
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json()["logo_sha256"] is None
    assert (await client.get(f"/api/v1/qr/{code['id']}/image.png")).content == plain.content
    assert (await client.get(f"/api/v1/qr/{code['id']}/logo")).status_code == 404
    assert (await client.delete(f"/api/v1/qr/{code['id']}/logo")).status_code == 204  # again: nothing to do


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"hello", "text/plain", 415, "image/png"),
        (b"hello", "image/gif", 415, "image/png"),
        (b"hello", "image/png", 422, "not a PNG"),
        (jpeg_bytes(100, 100), "image/png", 422, "not a PNG"),
        (png_bytes(100, 100), "image/jpeg", 422, "not a JPEG"),
        (png_bytes(100, 100)[:60], "image/png", 422, "cannot be read"),
        (jpeg_bytes(100, 100)[:300], "image/jpeg", 422, "cannot be read"),
        (png_claiming(60000, 60000), "image/png", 422, ""),  # an image bomb, refused unopened
        (png_claiming(5000, 100), "image/png", 422, "a side"),
        (png_bytes(8, 8), "image/png", 422, "a side"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024), "image/png", 413, "at most"),
        (b"", "image/png", 422, ""),
    ],
)
async def test_bad_logos_are_refused_and_change_nothing(
    client: httpx.AsyncClient, database_url: str, body: bytes, content_type: str, status: int, reason: str
) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    response = await put_logo(client, code["id"], body, content_type)
    assert response.status_code == status, response.text
    assert reason in response.json()["error"]["message"]
    assert await count_rows(database_url, "logos") == 0
    assert (await client.get(f"/api/v1/qr/{code['id']}")).json()["logo_sha256"] is None


async def test_logos_of_unknown_or_deleted_codes_are_404(client: httpx.AsyncClient) -> None:
    assert (await put_logo(client, "unknown123", png_bytes(64, 64))).status_code == 404
    code = (await create(client, target_url="https://example.org/")).json()
    await client.delete(f"/api/v1/qr/{code['id']}")
    assert (await put_logo(client, code["id"], png_bytes(64, 64))).status_code == 404
    assert (await client.delete(f"/api/v1/qr/{code['id']}/logo")).status_code == 404


# -- caching and concurrency ------------------------------------------------------------------------


async def test_one_key_is_rendered_once_however_many_ask(client: httpx.AsyncClient) -> None:
    from tests.metrics_checks import parse, value

    code = (await create(client, target_url="https://example.org/")).json()
    path = f"/api/v1/qr/{code['id']}/image.png?size=2000&ecc=H"
    answers = await asyncio.gather(*(client.get(path) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    await client.get(path)  # from memory now
    samples = parse((await client.get("/metrics")).text)
    assert value(samples, "qr_image_renders_total", format="png", result="ok") == 1
    assert value(samples, "qr_image_memory_hits_total") >= 1


async def test_other_requests_go_on_while_large_renders_run(environ: dict[str, str], tmp_path: Path) -> None:
    settings = ManagementSettings.from_env({**environ, "RENDER_CONCURRENCY": "1"})
    async for client in serve(settings):
        codes = [(await create(client, target_url=f"https://example.org/{n}")).json() for n in range(4)]
        renders = [
            asyncio.create_task(client.get(f"/api/v1/qr/{code['id']}/image.png?size=4096&ecc=H&border={n}"))
            for n, code in enumerate(codes)
        ]
        await asyncio.sleep(0.05)  # the renders have started, one at a time
        answer = await client.get(f"/api/v1/qr/{codes[0]['id']}")
        assert answer.status_code == 200
        assert not all(task.done() for task in renders)  # it did not wait for them
        assert {(await task).status_code for task in renders} == {200}


async def test_the_memory_cache_is_bounded(environ: dict[str, str]) -> None:
    from tests.metrics_checks import parse, value

    settings = ManagementSettings.from_env({**environ, "IMAGE_CACHE_BYTES": "6000"})
    async for client in serve(settings):
        code = (await create(client, target_url="https://example.org/")).json()
        sizes = []
        for border in range(12):
            response = await client.get(f"/api/v1/qr/{code['id']}/image.png?size=600&border={border}")
            assert response.status_code == 200
            sizes.append(len(response.content))
        samples = parse((await client.get("/metrics")).text)
        held = value(samples, "qr_image_memory_bytes")
        assert 0 < held <= 6000 < sum(sizes)


@pytest.mark.parametrize(
    ("image_format", "query", "status", "expect"),
    [
        ("svg", "size_mm=2000&dpi=72", 200, 'width="2000mm"'),  # a poster: the SVG has no pixel limit
        ("png", "size_mm=2000&dpi=72", 422, "the SVG, up to 2000 mm"),  # no dpi makes it fit
        ("svg", "size_mm=5", 200, 'width="5mm"'),
        ("png", "size_mm=5&dpi=72", 422, "raise the dpi"),
    ],
)
async def test_print_sizes_beyond_a_png(
    client: httpx.AsyncClient, image_format: str, query: str, status: int, expect: str
) -> None:
    code = (await create(client, target_url="https://example.org/")).json()
    response = await client.get(f"/api/v1/qr/{code['id']}/image.{image_format}?{query}")
    assert response.status_code == status, response.text
    body = response.text if status == 200 else response.json()["error"]["message"]
    assert expect in body
    if status == 200:
        assert [s.text for s in read_svg(response.content)] == [code["short_url"]]


async def test_a_damaged_or_unusable_store_is_only_a_miss(environ: dict[str, str], tmp_path: Path) -> None:
    settings = ManagementSettings.from_env({**environ, "IMAGE_CACHE_BYTES": "0"})
    async for client in serve(settings):
        code = (await create(client, target_url="https://example.org/")).json()
        path = f"/api/v1/qr/{code['id']}/image.png"
        first = await client.get(path)
        # A crash mid-write or a disk fault left junk under the image's name: rendered again.
        (stored,) = [p for p in settings.qr_data_dir.rglob("*") if p.is_file()]
        stored.write_bytes(b"")
        again = await client.get(path)
        assert again.status_code == 200
        assert again.content == first.content
        assert stored.read_bytes() == first.content
    # A store that cannot be written at all (here: a file where its folder should be): still served.
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    settings = ManagementSettings.from_env({**environ, "QR_DATA_DIR": str(blocked), "IMAGE_CACHE_BYTES": "0"})
    async for client in serve(settings):
        code = (await create(client, target_url="https://example.org/")).json()
        response = await client.get(f"/api/v1/qr/{code['id']}/image.png")
        assert response.status_code == 200
        assert [s.text for s in read_png(response.content)] == [code["short_url"]]


def test_logos_keep_their_shades_and_lose_their_metadata() -> None:
    from services.management.logos import normalise_logo

    # 16-bit grey (dark: 0x2000 of 0xffff) must stay dark, not be clipped to white.
    grey16 = Image.new("I;16", (64, 64), 0x2000)
    buffer = io.BytesIO()
    grey16.save(buffer, format="PNG")
    stored = Image.open(io.BytesIO(normalise_logo(buffer.getvalue(), "image/png").logo.png))
    assert stored.convert("L").getpixel((10, 10)) == 0x20
    # An embedded colour profile is dropped: both formats draw the same sRGB pixels.
    rgb = Image.new("RGB", (64, 64), (200, 30, 30))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", icc_profile=b"\0" * 5000)
    stored = Image.open(io.BytesIO(normalise_logo(buffer.getvalue(), "image/jpeg").logo.png))
    assert "icc_profile" not in stored.info


async def test_an_image_of_another_code_is_not_held_up_by_a_large_render(
    environ: dict[str, str],
) -> None:
    settings = ManagementSettings.from_env({**environ, "RENDER_CONCURRENCY": "2"})
    async for client in serve(settings):
        big, small = [(await create(client, target_url=f"https://example.org/{n}")).json() for n in range(2)]
        large = asyncio.create_task(client.get(f"/api/v1/qr/{big['id']}/image.png?size=4096&ecc=H"))
        await asyncio.sleep(0.05)  # the large render is under way, in one of the two render slots
        quick = await client.get(f"/api/v1/qr/{small['id']}/image.png?size=200")
        assert quick.status_code == 200
        assert not large.done()  # the small image did not wait for the large one
        assert (await large).status_code == 200
