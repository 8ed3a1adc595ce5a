"""Label sheets: rasterised as a print shop's RIP would (pdftoppm), every code decodes and measures
the size asked for; vector squares, an embedded font, a refusal for what does not fit."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from services.management import labels
from services.management.errors import InvalidValue
from services.management.rendering import ImageOptions, drawing
from tests.management.conftest import bulk_codes

pytestmark = pytest.mark.anyio

PDFTOPPM = shutil.which("pdftoppm")
DPI = 600


def rasterise(pdf: bytes, folder: Path) -> list[Image.Image]:
    assert PDFTOPPM is not None
    source = folder / "labels.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [PDFTOPPM, "-r", str(DPI), "-gray", "-png", str(source), str(folder / "page")],
        check=True,
        timeout=120,
    )
    return [Image.open(path) for path in sorted(folder.glob("page*.png"))]


def side_mm(barcode: zxingcpp.Barcode) -> float:
    """The decoded symbol's side (its modules, without the quiet zone) in millimetres."""
    p = barcode.position
    top = math.dist((p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y))
    left = math.dist((p.top_left.x, p.top_left.y), (p.bottom_left.x, p.bottom_left.y))
    return (top + left) / 2 / DPI * 25.4


@pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm not installed (apt-get install poppler-utils)")
async def test_every_code_on_the_sheets_decodes_and_measures_its_size(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    made = await bulk_codes(client, 40, "tent")
    await bulk_codes(client, 2, "other")
    response = await client.get(
        "/api/v1/qr/export.pdf", params={"tag": "tent", "size_mm": "30", "paper": "a4"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    pages = rasterise(response.content, tmp_path)
    layout = labels.sheet("a4", 30, None, None)
    assert len(pages) == math.ceil(40 / layout.per_page) == 2
    decoded: list[zxingcpp.Barcode] = []
    for page in pages:
        assert page.size == (round(210 / 25.4 * DPI), round(297 / 25.4 * DPI))
        decoded += zxingcpp.read_barcodes(page, formats=zxingcpp.BarcodeFormat.QRCode)
    assert sorted(b.text for b in decoded) == sorted(code["short_url"] for code in made)
    # 30 mm with the quiet zone of 4 modules a side: the symbol's own side is 30 * n / (n + 8).
    for barcode in decoded:
        n = len(drawing(barcode.text, ImageOptions(), None).modules)
        assert abs(side_mm(barcode) - 30 * n / (n + 8)) <= 0.2, (barcode.text, side_mm(barcode), n)


async def test_vector_squares_and_an_embedded_font(client: httpx.AsyncClient) -> None:
    await bulk_codes(client, 3, "menu")
    pdf = (await client.get("/api/v1/qr/export.pdf", params={"tag": "menu", "paper": "letter"})).content
    assert pdf.startswith(b"%PDF-")
    assert b"/FontFile2" in pdf  # the TrueType font's program, in the file
    assert b"/BaseFont /AAAAAA+BitstreamVeraSans-Roman" in pdf  # a subset of it, named as subsets are
    assert pdf.count(b"/BaseFont") == 1  # and no other font named (Helvetica would not be embedded)
    assert b"/Subtype /Image" not in pdf  # no raster anywhere: the codes are squares
    assert b"/MediaBox [ 0 0 612 792 ]" in pdf  # letter


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"paper": "a3"}, "paper"),
        ({"size_mm": "200"}, "size_mm"),
        ({"size_mm": "9"}, "size_mm"),
        ({"columns": "7"}, "columns"),  # seven codes of 30 mm do not fit across 190 mm
        ({"rows": "10"}, "rows"),
        ({"columns": "0"}, "columns"),
        ({"border": "1"}, "border"),
        ({"size": "300"}, "size"),
    ],
)
async def test_layouts_that_do_not_fit_are_refused(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/v1/qr/export.pdf", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == {"field": field}


def test_the_grid_fills_the_page_and_obeys_columns_and_rows() -> None:
    assert (labels.sheet("a4", 30, None, None).columns, labels.sheet("a4", 30, None, None).rows) == (5, 6)
    chosen = labels.sheet("letter", 40, 3, 4)
    assert (chosen.columns, chosen.rows, chosen.per_page) == (3, 4, 12)
    assert chosen.pitch[0] >= 40
    with pytest.raises(InvalidValue):
        labels.sheet("a4", 100, 2, None)
