"""The console's design panel over HTTP: a code created with a design on the new code's page, the
panel's live preview (the real image, decoded), saving and removing a code's design, refusals shown
beside the option."""

from __future__ import annotations

import html
import io
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import resvg_py
import zxingcpp
from PIL import Image

from services.management.settings import ManagementSettings
from tests.conftest import create_database, drop_database
from tests.console.test_pages import make_code, post_form
from tests.management.conftest import BASE, serve

pytestmark = pytest.mark.anyio

PANEL = {
    "design_fg": "#1e3a8a",
    "design_bg": "#ffffff",
    "modules": "dots",
    "finder": "circle",
    "finder_fg": "#b91c1c",
    "gradient": "",
    "fg2": "",
    "frame": "label",
    "frame_text": "SCAN ME",
    "frame_position": "below",
    "frame_url": "on",
}


@pytest.fixture(scope="module")
def module_environ(
    pg_server: Any, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One database and one app for the module."""
    name = create_database(pg_server, template=template_database)
    folder = tmp_path_factory.mktemp("design-panel")
    try:
        yield {"DATABASE_URL": pg_server.dsn(name), "PUBLIC_BASE_URL": BASE, "QR_DATA_DIR": str(folder)}
    finally:
        drop_database(pg_server, name)


@pytest.fixture(scope="module")
async def console(module_environ: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(ManagementSettings.from_env(module_environ)):
        yield client


def svg_texts(svg: bytes) -> list[str]:
    png = bytes(resvg_py.svg_to_bytes(svg_string=svg.decode(), width=400, dpi=96))
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    page = Image.new("RGB", (image.width + 80, image.height + 80), (255, 255, 255))
    page.paste(image, (40, 40), image)
    return [result.text for result in zxingcpp.read_barcodes(page, try_invert=False)]


def preview_source(fragment: str) -> str:
    found = re.search(r'<img src="([^"]+)" alt="Preview of the design"', fragment)
    assert found, fragment[:800]
    return html.unescape(found[1])


async def test_a_code_created_with_a_design_and_its_preview(console: httpx.AsyncClient) -> None:
    new_page = (await console.get("/console/new")).text
    assert 'id="design-heading"' in new_page
    # The new code's page previews a sample code in the design, checked by decoding.
    fragment = (await console.get("/console/design/preview", params=PANEL)).text
    sample = await console.get(preview_source(fragment))
    assert sample.status_code == 200
    assert sample.headers["content-type"] == "image/svg+xml"
    assert svg_texts(sample.content) == [f"{BASE}/r/preview"]
    code_id = await make_code(console, **PANEL)
    code = (await console.get(f"/api/v1/qr/{code_id}")).json()
    assert code["design"] == {
        "fg": "#1e3a8a",
        "bg": "#ffffff",
        "modules": "dots",
        "finder": "circle",
        "finder_fg": "#b91c1c",
        "frame": "label",
        "frame_text": "SCAN ME",
        "frame_position": "below",
        "frame_url": True,
    }
    # The code's page shows the panel with the code's own image in its design.
    page = (await console.get(f"/console/codes/{code_id}")).text
    source = preview_source(page)
    assert source.startswith(f"/api/v1/qr/{code_id}/image.svg?")
    image = await console.get(source)
    assert svg_texts(image.content) == [code["short_url"]]


async def test_saving_and_removing_a_design(console: httpx.AsyncClient) -> None:
    code_id = await make_code(console)
    assert (await console.get(f"/api/v1/qr/{code_id}")).json()["design"] is None
    saved = await post_form(
        console,
        f"/console/codes/{code_id}/design",
        {**PANEL, "frame": "none", "gradient": "linear", "fg2": "#7c3aed"},
    )
    assert saved.status_code == 303, saved.text
    design = (await console.get(f"/api/v1/qr/{code_id}")).json()["design"]
    assert design["gradient"] == "linear"
    assert "frame_text" not in design  # hidden with the frame: not saved
    removed = await post_form(console, f"/console/codes/{code_id}/design", {"remove": "1"})
    assert removed.status_code == 303
    assert (await console.get(f"/api/v1/qr/{code_id}")).json()["design"] is None
    history = (await console.get(f"/api/v1/qr/{code_id}/history")).json()["items"]
    changed = [entry["changes"]["design"] for entry in history if "design" in entry["changes"]]
    assert changed == [  # newest first: removed, saved, and none at its creation
        {"old": design, "new": None},
        {"old": None, "new": design},
        {"old": None, "new": None},
    ]


@pytest.mark.parametrize(
    ("fields", "option", "words"),
    [
        ({"gradient": "radial", "fg2": "#fafafa"}, "fg2", "contrast"),
        ({"frame_text": "x" * 31}, "frame_text", "at most 30"),
        ({"modules": "blob"}, "modules", "must be one of"),
    ],
)
async def test_a_refused_design_is_shown_beside_its_option(
    console: httpx.AsyncClient, fields: dict[str, str], option: str, words: str
) -> None:
    code_id = await make_code(console)
    fragment = (await console.get("/console/design/preview", params={**PANEL, **fields})).text
    assert "No preview with this design" in fragment
    assert words in html.unescape(fragment)
    refused = await post_form(console, f"/console/codes/{code_id}/design", {**PANEL, **fields})
    assert refused.status_code == 422
    shown = html.unescape(refused.text)
    assert words in shown
    assert (await console.get(f"/api/v1/qr/{code_id}")).json()["design"] is None  # nothing saved
    created = await post_form(
        console, "/console/new", {"target_url": "https://example.org/x", **PANEL, **fields}
    )
    assert created.status_code == 422
    assert words in html.unescape(created.text)
