"""Designed codes: every design option alone and together (with a logo too), as PNG and as SVG
(rasterised by resvg), decodes to exactly its short URL; a design that cannot scan is refused with
its reason; hostile values are refused by name; a code's saved design is used by its images and its
exports, and its changes are in its history; the label sheets draw the design."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import resvg_py
import zxingcpp
from PIL import Image, ImageChops

from services.management import design as designs
from services.management.design import Design
from services.management.rendering import ImageOptions, RenderRefused, drawing, render_png, render_svg
from services.management.settings import ManagementSettings
from tests.conftest import create_database, drop_database
from tests.management.conftest import BASE, create, serve

pytestmark = pytest.mark.anyio

PDFTOPPM = shutil.which("pdftoppm")


@pytest.fixture(scope="module")
def module_database(pg_server: Any, template_database: str) -> Iterator[str]:
    name = create_database(pg_server, template=template_database)
    try:
        yield pg_server.dsn(name)
    finally:
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
async def client(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the module: the designs are read, not written, by most tests."""
    folder = tmp_path_factory.mktemp("designs")
    settings = ManagementSettings.from_env(
        {"DATABASE_URL": module_database, "PUBLIC_BASE_URL": BASE, "QR_DATA_DIR": str(folder / "images")}
    )
    async for http in serve(settings):
        yield http


@pytest.fixture(scope="module")
async def code(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await create(client, target_url="https://example.org/menu")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def logo_code(client: httpx.AsyncClient) -> dict[str, Any]:
    made = (await create(client, target_url="https://example.org/logo")).json()
    logo = Image.new("RGB", (64, 64), (200, 30, 30))
    buffer = io.BytesIO()
    logo.save(buffer, format="PNG")
    response = await client.put(
        f"/api/v1/qr/{made['id']}/logo", content=buffer.getvalue(), headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    return made  # type: ignore[no-any-return]


def decoded(image: Image.Image) -> list[str]:
    """What a decoder reads on a white page around the image (light modules on dark not tried)."""
    image = image.convert("RGBA")
    page = Image.new("RGB", (image.width + 80, image.height + 80), (255, 255, 255))
    page.paste(image, (40, 40), image)
    return [result.text for result in zxingcpp.read_barcodes(page, try_invert=False)]


def png_texts(data: bytes) -> list[str]:
    return decoded(Image.open(io.BytesIO(data)))


def svg_texts(data: bytes, width: int) -> list[str]:
    """The SVG rasterised by resvg at ``width`` pixels (its height follows its own proportions)."""
    png = bytes(resvg_py.svg_to_bytes(svg_string=data.decode(), width=width, dpi=96))
    return png_texts(png)


ALONE = [
    *({"modules": shape} for shape in designs.MODULE_SHAPES),
    *({"finder": shape} for shape in designs.FINDER_SHAPES),
    {"finder_fg": "#b91c1c"},
    {"gradient": "linear", "fg2": "#1d4ed8"},
    {"gradient": "radial", "fg2": "#7c3aed"},
    {"frame": "label"},
    {"frame": "label", "frame_text": "Scannez-moi • Меню", "frame_position": "above", "frame_url": "true"},
]
TOGETHER = {
    "modules": "dots",
    "finder": "circle",
    "finder_fg": "#b91c1c",
    "gradient": "radial",
    "fg2": "#1d4ed8",
    "frame": "label",
    "frame_text": "SCAN ME",
    "frame_url": "true",
}


@pytest.mark.parametrize(
    "options", [*ALONE, TOGETHER, {**TOGETHER, "modules": "gapped", "gradient": "linear"}]
)
@pytest.mark.parametrize("size", [200, 400])
async def test_every_design_decodes_as_png_and_svg(
    client: httpx.AsyncClient, code: dict[str, Any], options: dict[str, str], size: int
) -> None:
    for image_format, texts in (("png", png_texts), ("svg", lambda data: svg_texts(data, size))):
        response = await client.get(
            f"/api/v1/qr/{code['id']}/image.{image_format}", params={**options, "size": size}
        )
        assert response.status_code == 200, response.text
        assert texts(response.content) == [code["short_url"]], (image_format, options)


@pytest.mark.parametrize("options", [ALONE[1], ALONE[5], ALONE[8], TOGETHER])
async def test_designs_with_a_logo_decode(
    client: httpx.AsyncClient, logo_code: dict[str, Any], options: dict[str, str]
) -> None:
    for image_format in ("png", "svg"):
        response = await client.get(
            f"/api/v1/qr/{logo_code['id']}/image.{image_format}", params={**options, "size": 400}
        )
        assert response.status_code == 200, response.text
        data = response.content
        texts = png_texts(data) if image_format == "png" else svg_texts(data, 400)
        assert texts == [logo_code["short_url"]], (image_format, options)


async def test_an_svg_draws_vector_shapes_and_its_text_as_paths(
    client: httpx.AsyncClient, code: dict[str, Any]
) -> None:
    svg = (await client.get(f"/api/v1/qr/{code['id']}/image.svg", params=TOGETHER)).text
    assert "<image" not in svg  # no raster: modules, finders, frame and text are paths
    assert "<text" not in svg
    assert "font" not in svg
    assert 'fill-rule="evenodd"' in svg
    assert "<radialGradient" in svg
    # The frame makes the image taller than wide; size is its width.
    assert 'width="400"' in svg


async def test_a_plain_code_is_drawn_as_before(client: httpx.AsyncClient, code: dict[str, Any]) -> None:
    plain = (await client.get(f"/api/v1/qr/{code['id']}/image.svg")).text
    assert '<path fill="#000000" d="M' in plain
    assert "evenodd" not in plain


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"gradient": "linear", "fg2": "#ffffff"}, "fg2", "darker than the ground"),  # into the ground
        ({"gradient": "radial", "fg2": "#bbbbbb"}, "fg2", "contrast"),
        ({"finder_fg": "#eeeeee"}, "finder_fg", "contrast"),
        ({"fg2": "#1d4ed8"}, "fg2", "only used with gradient"),
        ({"gradient": "linear"}, "fg2", "needs fg2"),
        ({"frame_text": "SCAN"}, "frame_text", "only used with frame=label"),
        ({"frame_url": "true"}, "frame_url", "only used with frame=label"),
        ({"frame": "label", "frame_text": "x" * 31}, "frame_text", "30"),
        ({"frame": "label", "frame_text": "SCAN\nME"}, "frame_text", "control"),
        ({"frame": "label", "frame_text": "   "}, "frame_text", "blank"),
        ({"frame": "label", "frame_text": "扫我"}, "frame_text", "font"),
        ({"frame": "label", "border": "1"}, "border", "quiet zone"),
        ({"modules": "hexagons"}, "modules", "square"),
        ({"finder": "star"}, "finder", "circle"),
        ({"gradient": "conic", "fg2": "#000000"}, "gradient", "linear"),
        ({"frame": "banner"}, "frame", "label"),
        ({"frame": "label", "frame_position": "left"}, "frame_position", "below"),
        ({"frame": "label", "frame_url": "yes"}, "frame_url", "true or false"),
        ({"finder_fg": "red"}, "finder_fg", "hex colour"),
    ],
)
async def test_hostile_design_options_are_refused_by_name(
    client: httpx.AsyncClient, code: dict[str, Any], params: dict[str, str], field: str, words: str
) -> None:
    for image_format in ("png", "svg"):
        response = await client.get(f"/api/v1/qr/{code['id']}/image.{image_format}", params=params)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["details"] == {"field": field}, error
        assert words in error["message"], error


@pytest.mark.parametrize(
    "design",
    [
        Design(finder_fg="#ffffff"),
        Design(finder="circle", gradient="radial", fg2="#ffffff", finder_fg="#fefefe"),
    ],
)
def test_a_design_that_does_not_read_back_is_refused_with_its_reason(design: Design) -> None:
    """The decode check runs on every design: finders in the ground's colour (which the contrast rule
    refuses first, in a request) do not read back, and no image is made of them."""
    for render in (render_png, render_svg):
        with pytest.raises(RenderRefused, match="decodes to"):
            render("https://qr.test/r/abc", ImageOptions(size=200, design=design))


async def test_a_design_that_does_not_scan_is_a_422_with_its_reason(
    client: httpx.AsyncClient, module_database: str
) -> None:
    made = (await create(client, target_url="https://example.org/unreadable")).json()
    # Saved around the API (as a row of an older release could hold it): the decode check still refuses.
    connection = await asyncpg.connect(module_database)
    try:
        await connection.execute(
            "UPDATE qr_codes SET design = $1::jsonb WHERE id = $2", '{"finder_fg": "#ffffff"}', made["id"]
        )
    finally:
        await connection.close()
    for image_format in ("png", "svg"):
        response = await client.get(f"/api/v1/qr/{made['id']}/image.{image_format}")
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert message.startswith("image: this combination of options does not scan reliably"), message


async def test_a_saved_design_is_used_when_a_request_names_none(client: httpx.AsyncClient) -> None:
    saved = {
        "fg": "#1e3a8a",
        "modules": "rounded",
        "finder": "circle",
        "frame": "label",
        "frame_text": "MENU",
    }
    response = await create(client, target_url="https://example.org/saved", design=saved)
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["design"] == {**saved, "bg": "#ffffff"}  # the options as stored, defaults named
    framed = Image.open(io.BytesIO((await client.get(f"/api/v1/qr/{made['id']}/image.png")).content))
    assert framed.height > framed.width  # the saved frame
    assert decoded(framed) == [made["short_url"]]
    plain = Image.open(
        io.BytesIO(
            (await client.get(f"/api/v1/qr/{made['id']}/image.png", params={"modules": "square"})).content
        )
    )
    assert plain.height == plain.width  # a design named in the request replaces the saved one
    # Black on white, the defaults, name no design (a form that always sends its colours).
    default_colours = await client.get(
        f"/api/v1/qr/{made['id']}/image.png", params={"fg": "#000000", "bg": "#fff", "size": 400}
    )
    framed_again = Image.open(io.BytesIO(default_colours.content))
    assert framed_again.height > framed_again.width
    # Changed, then removed: the history records both, and the image follows.
    changed = await client.patch(
        f"/api/v1/qr/{made['id']}", json={"design": {"gradient": "linear", "fg2": "#7c3aed"}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["design"] == {
        "fg": "#000000",
        "bg": "#ffffff",
        "modules": "square",
        "finder": "square",
        "frame": "none",
        "gradient": "linear",
        "fg2": "#7c3aed",
    }
    square = Image.open(io.BytesIO((await client.get(f"/api/v1/qr/{made['id']}/image.png")).content))
    assert square.height == square.width
    assert (await client.patch(f"/api/v1/qr/{made['id']}", json={"design": None})).json()["design"] is None
    history = (await client.get(f"/api/v1/qr/{made['id']}/history")).json()["items"]
    designs_seen = [entry["changes"]["design"]["new"] for entry in history if "design" in entry["changes"]]
    assert designs_seen == [None, changed.json()["design"], made["design"]]  # newest first
    # The ZIP export draws each code in its own saved design when the request names none.
    archive = zipfile.ZipFile(
        io.BytesIO((await client.get("/api/v1/qr/export.zip", params={"ids": made["id"]})).content)
    )
    assert png_texts(archive.read(f"{made['id']}.png")) == [made["short_url"]]


@pytest.mark.parametrize(
    ("design", "words"),
    [
        ({"modules": "blob"}, "modules must be one of"),
        ({"fg2": "#111111"}, "only used with gradient"),
        ({"gradient": "radial", "fg2": "#fefefe"}, "fg2"),
        ({"frame": "label", "frame_text": "x" * 31}, "frame_text must be at most 30"),
        ({"frame": "label", "frame_text": "a\u0007b"}, "control"),
        ({"frame_url": True}, "only used with frame=label"),
        ({"colour": "#000000"}, "colour is not known here"),
        ("rounded", "design"),
    ],
)
async def test_a_saved_design_is_checked_as_the_options_are(
    client: httpx.AsyncClient, design: Any, words: str
) -> None:
    before = (await client.get("/api/v1/qr")).json()["items"]
    response = await create(client, target_url="https://example.org/bad-design", design=design)
    assert response.status_code == 422, response.text
    assert words in response.text
    assert (await client.get("/api/v1/qr")).json()["items"] == before  # nothing written


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm not installed (apt-get install poppler-utils)")
async def test_the_label_sheet_draws_the_design(client: httpx.AsyncClient, tmp_path: Path) -> None:
    saved = {"modules": "dots", "finder": "rounded", "finder_fg": "#b91c1c", "frame": "label"}
    made = (
        await create(client, target_url="https://example.org/label", tags=["labelled"], design=saved)
    ).json()
    assert PDFTOPPM is not None
    for params in ({}, {"modules": "gapped", "gradient": "linear", "fg2": "#1d4ed8"}):
        response = await client.get(
            "/api/v1/qr/export.pdf", params={"tag": "labelled", "size_mm": "40", **params}
        )
        assert response.status_code == 200, response.text
        pdf = response.content
        assert b"/Subtype /Image" not in pdf  # vector shapes
        source = tmp_path / "labels.pdf"
        source.write_bytes(pdf)
        subprocess.run(
            [PDFTOPPM, "-r", "300", "-png", "-singlefile", str(source), str(tmp_path / "page")],
            check=True,
            timeout=120,
        )
        page = Image.open(tmp_path / "page.png").convert("RGB")
        assert decoded(page) == [made["short_url"]]
        if not params:  # the saved design: its red finders and its frame's font are in the file
            assert b"DejaVuSans-Bold" in pdf
            red = Image.new("RGB", page.size, (185, 28, 28))  # the finders' colour, near enough
            near = ImageChops.difference(page, red).convert("L").point(lambda value: 255 if value < 40 else 0)
            reds = sum(near.histogram()[255:])
            assert reds > 500


@pytest.mark.parametrize("position", designs.FRAME_POSITIONS)
@pytest.mark.parametrize("border", [designs.MIN_FRAMED_BORDER, 4])
def test_the_quiet_zone_stays_outside_the_frames_art(position: str, border: int) -> None:
    """The frame's hole is the code's box, quiet zone included; the modules, finders and text keep
    out of the quiet zone, and the PNG's quiet zone is the ground's colour alone."""
    payload = "https://qr.test/r/quiet"
    design = Design(modules="dots", finder="circle", frame="label", frame_position=position, frame_url=True)
    options = ImageOptions(size=400, border=border, bg="#fffff0", design=design)
    shapes = designs.art(drawing(payload, options, None), design, payload)
    hole = shapes.frame[1]
    assert hole.hole
    assert (hole.x, hole.y, hole.w, hole.h) == (
        shapes.code_x,
        shapes.code_y,
        shapes.code_side,
        shapes.code_side,
    )
    low_x, low_y = hole.x + border, hole.y + border
    high_x, high_y = hole.x + hole.w - border, hole.y + hole.h - border
    for shape in shapes.modules + shapes.finders:
        assert low_x <= shape.x
        assert shape.x + shape.w <= high_x
        assert low_y <= shape.y
        assert shape.y + shape.h <= high_y
    for line in shapes.texts:  # wholly in the band, above or below the hole
        assert line.baseline <= hole.y or line.baseline - line.size >= hole.y + hole.h
    box = 10
    image = designs.raster_art(shapes, box, None)
    ring = [
        image.getpixel((x, y))
        for x in range(round(hole.x * box), round((hole.x + hole.w) * box))
        for y in range(round(hole.y * box), round((hole.y + hole.h) * box))
        if not (low_x * box <= x < high_x * box and low_y * box <= y < high_y * box)
    ]
    assert set(ring) == {(0xFF, 0xFF, 0xF0)}
