"""The console with ADMIN_AUTH=identity: who is signed in and with which role, buttons the role cannot
use hidden, and the service refusing them anyway (a forged post of a viewer gets 403)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.management.console.frame import Frame
from services.management.settings import ManagementSettings
from tests.console.test_pages import csrf_of, sign_in
from tests.management.conftest import serve
from tests.management.test_roles import make_token

pytestmark = pytest.mark.anyio


@pytest.fixture
async def site(
    environ: dict[str, str], database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    settings = ManagementSettings.from_env({**environ, "ADMIN_AUTH": "identity"})
    folder = settings.qr_data_dir
    tokens = {
        role: await make_token(database_url, folder, f"{role}-desk", role)
        for role in ("viewer", "editor", "admin")
    }
    tokens["scoped"] = await make_token(database_url, folder, "print-desk", "editor", ["print"])
    async for client in serve(settings):
        for slug, tag in (("menu", "food"), ("flyer", "print")):
            made = await client.post(
                "/api/v1/qr",
                json={"target_url": "https://example.org/", "slug": slug, "tags": [tag]},
                headers={"authorization": f"Bearer {tokens['admin']}"},
            )
            assert made.status_code == 201
        yield client, tokens


async def forged_post(client: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    """A post with everything a real form sends (the session's own CSRF token, same origin)."""
    token = csrf_of(await client.get("/console/"))
    return await client.post(path, data={"csrf": token, **data}, headers={"origin": "http://localhost"})


async def test_a_viewer_sees_no_write_buttons_and_is_refused_a_forged_post(
    site: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, tokens = site
    assert (await client.get("/console/")).status_code == 303  # sign-in first
    await sign_in(client, tokens["viewer"])
    codes = await client.get("/console/")
    assert "Signed in as <strong>viewer-desk</strong> (viewer)" in codes.text
    assert 'href="/console/new"' not in codes.text
    page = await client.get("/console/codes/menu")
    assert page.status_code == 200
    for hidden in ("/edit", "/logo", "/delete", "/enabled", "/switch-off"):
        assert f'action="/console/codes/menu{hidden}"' not in page.text
    assert 'href="/console/codes/menu/delete"' not in page.text
    assert "you can read this code, not change it" in page.text
    for path, data in (
        ("/console/codes/menu/edit", {"target_url": "https://evil.example/"}),
        ("/console/codes/menu/enabled", {"enabled": "false"}),
        ("/console/codes/menu/delete", {}),
        ("/console/new", {"target_url": "https://evil.example/"}),
        ("/console/codes/menu/logo/remove", {}),
    ):
        refused = await forged_post(client, path, data)
        assert refused.status_code == 403, path
        assert "this needs the" in refused.text
    assert (await client.get("/console/new")).status_code == 403
    assert (await client.get("/console/codes/menu/delete")).status_code == 403
    # Nothing changed.
    shown = await client.get("/api/v1/qr/menu")  # the session reads the API too
    assert shown.json()["target_url"] == "https://example.org/"
    assert shown.json()["enabled"] is True


async def test_an_editor_changes_but_does_not_delete(site: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = site
    await sign_in(client, tokens["editor"])
    page = await client.get("/console/codes/menu")
    assert "Signed in as <strong>editor-desk</strong> (editor)" in page.text
    assert 'action="/console/codes/menu/edit"' in page.text
    assert 'href="/console/codes/menu/delete"' not in page.text
    switched = await forged_post(
        client, "/console/codes/menu/enabled", {"enabled": "false", "confirmed": "yes"}
    )
    assert switched.status_code == 303
    assert (await forged_post(client, "/console/codes/menu/delete", {})).status_code == 403


async def test_an_admin_sees_everything(site: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = site
    await sign_in(client, tokens["admin"])
    page = await client.get("/console/codes/menu")
    assert 'href="/console/codes/menu/delete"' in page.text
    assert "(admin)" in page.text
    assert (await forged_post(client, "/console/codes/menu/delete", {})).status_code == 303


async def test_a_scoped_session_sees_its_codes_only(site: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, tokens = site
    await sign_in(client, tokens["scoped"])
    listing = await client.get("/console/")
    assert re.findall(r'href="/console/codes/([a-z]+)"', listing.text) == ["flyer"]
    assert (await client.get("/console/codes/menu")).status_code == 404
    assert (await client.get("/api/v1/qr/menu/image.png")).status_code == 404
    assert (await client.get("/api/v1/qr/flyer/image.png")).status_code == 200
    export = await client.get("/api/v1/qr/export.csv")
    assert "flyer" in export.text
    assert "menu" not in export.text


def test_a_console_page_without_a_role_cannot_be_made() -> None:
    from services.management.console.frame import page

    with pytest.raises(TypeError, match="declares the role"):
        page(role=None)  # type: ignore[arg-type]
    assert Frame  # the frame is what checks it for every page


def test_every_console_route_declares_a_role(tmp_path: Path) -> None:
    """Each page handler was made by page(role=...): its closure holds the role."""
    from services.management.console import code, codes, new_code, scans, sign_in

    groups = (code.CodePage, codes.CodeList, new_code.NewCode, scans.Scans, sign_in.SignIn)
    for group in groups:
        for name, member in vars(group).items():
            wrapped = getattr(member, "__wrapped__", None)
            if wrapped is None:
                continue
            cells = [c.cell_contents for c in (member.__closure__ or ())]
            assert any(getattr(c, "__class__", None).__name__ == "Role" for c in cells), name


async def test_signing_in_with_a_service_token_while_the_database_is_away_is_a_clear_page(
    tmp_path: Path,
) -> None:
    settings = ManagementSettings.from_env(
        {
            "DATABASE_URL": f"postgresql://postgres@/qr?host={tmp_path}",
            "QR_DATA_DIR": str(tmp_path / "data"),
            "ADMIN_AUTH": "identity",
        }
    )
    async for client in serve(settings):
        answer = await client.post("/console/sign-in", data={"token": "qr_" + "a" * 43, "next": "/console/"})
        assert answer.status_code == 503
        assert "text/html" in answer.headers["content-type"]
