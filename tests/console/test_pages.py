"""The console over HTTP, without a browser: every page and form against the real service and a
real PostgreSQL. What the forms do, what they refuse (forged posts, hostile input), the session
cookie and sign-in, and the headers every answer carries. The browser tests are beside this file."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from services.management.console.frame import CSP
from services.management.settings import ManagementSettings
from tests.management.conftest import count_rows, decode, serve

pytestmark = pytest.mark.anyio

PAGES = ("/console/", "/console/new", "/console/scans")


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, page.text[:500]
    return found[1]


async def post_form(
    client: httpx.AsyncClient, path: str, data: dict[str, str], *, files: Any = None, **headers: str
) -> httpx.Response:
    token = csrf_of(await client.get("/console/new"))
    return await client.post(
        path, data={"csrf": token, **data}, files=files, headers={"origin": "http://localhost", **headers}
    )


async def make_code(client: httpx.AsyncClient, **fields: str) -> str:
    response = await post_form(
        client, "/console/new", {"target_url": "https://example.org/", "enabled": "on", **fields}
    )
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/console/codes/([A-Za-z0-9_-]+)\?notice=created", response.headers["location"])
    assert found, response.headers["location"]
    return found[1]


@pytest.fixture
async def console(settings: ManagementSettings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(settings):
        yield client


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{digest('alice-secret')}\nbob:{digest('bob-secret')}\n")
    return path


@pytest.fixture
async def signed(environ: dict[str, str], tokens: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})
    async for client in serve(settings):
        yield client


# -- the frame ---------------------------------------------------------------------------------


async def test_root_and_console_lead_to_the_codes(console: httpx.AsyncClient) -> None:
    for path in ("/", "/console"):
        response = await console.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/"


async def test_every_page_carries_the_policy_and_a_session_cookie(console: httpx.AsyncClient) -> None:
    code = await make_code(console)
    for path in (
        *PAGES,
        f"/console/codes/{code}",
        f"/console/codes/{code}/scans",
        f"/console/codes/{code}/delete",
    ):
        response = await console.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP
        assert "unsafe-inline" not in CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        # Nothing inline: no script body, no style element or attribute, nothing from elsewhere.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), path
        assert "<style" not in response.text, path
        assert " style=" not in response.text, path
        assert not re.search(r'(src|href)="(https?:)?//', response.text), path
    fresh = httpx.AsyncClient(transport=console._transport, base_url="http://localhost")
    first = await fresh.get("/console/")
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP, and no trusted proxy saying otherwise
    await fresh.aclose()


async def test_the_cookie_is_secure_when_the_edge_says_https(console: httpx.AsyncClient) -> None:
    fresh = httpx.AsyncClient(transport=console._transport, base_url="http://localhost")
    answer = await fresh.get("/console/", headers={"x-forwarded-proto": "https"})  # the peer is trusted
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("__Host-qr_console=")
    assert "Secure" in cookie
    assert "Path=/;" in cookie or cookie.endswith("Path=/")
    assert "domain" not in cookie.lower()  # what __Host- asks, or browsers drop the cookie
    await fresh.aclose()


async def test_each_cookie_name_counts_only_on_its_own_scheme(signed: httpx.AsyncClient) -> None:
    https = {"x-forwarded-proto": "https"}
    answer = await signed.post(
        "/console/sign-in", data={"token": "alice-secret", "next": "/console/"}, headers=https
    )
    value = answer.cookies["__Host-qr_console"]
    assert "Secure" in answer.headers["set-cookie"]
    signed.cookies.clear()
    assert (
        await signed.get("/console/", headers={"cookie": f"__Host-qr_console={value}", **https})
    ).status_code == 200
    # The same value under the plain name over HTTPS (planted by a page on HTTP or a sibling
    # domain, say) opens nothing, nor does the HTTPS name over plain HTTP.
    assert (
        await signed.get("/console/", headers={"cookie": f"qr_console={value}", **https})
    ).status_code == 303
    assert (
        await signed.get("/console/", headers={"cookie": f"__Host-qr_console={value}"})
    ).status_code == 303
    token = csrf_of(
        await signed.get("/console/new", headers={"cookie": f"__Host-qr_console={value}", **https})
    )
    out = await signed.post(
        "/console/sign-out",
        data={"csrf": token},
        headers={"cookie": f"__Host-qr_console={value}", "origin": "http://localhost", **https},
    )
    assert out.status_code == 303
    deleted = out.headers["set-cookie"]
    assert deleted.startswith('__Host-qr_console=""')
    assert "Secure" in deleted
    assert "Max-Age=0" in deleted


async def test_a_hostile_title_is_text_everywhere(console: httpx.AsyncClient) -> None:
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    code = await make_code(console, title=hostile, tags="<b>x</b>")
    pages = [
        await console.get(path)
        for path in ("/console/", f"/console/codes/{code}", f"/console/codes/{code}/scans")
    ]
    for response in pages:
        assert "<script>alert(1)" not in response.text
        assert "<img src=x" not in response.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# -- creating ----------------------------------------------------------------------------------


async def test_the_form_creates_a_code_with_every_field(console: httpx.AsyncClient) -> None:
    code = await make_code(
        console,
        target_url="https://example.org/menu",
        slug="spring-menu",
        title="Spring menu",
        tags="print, menu, print",
        redirect_status="307",
        expires_at="2031-05-01T12:30",
        fallback_url="https://example.org/closed",
        forward_query="on",
    )
    assert code == "spring-menu"
    made = (await console.get(f"/api/v1/qr/{code}")).json()
    assert made["target_url"] == "https://example.org/menu"
    assert made["tags"] == ["print", "menu"]
    assert made["redirect_status"] == 307
    assert made["expires_at"] == "2031-05-01T12:30:00Z"
    assert made["fallback_url"] == "https://example.org/closed"
    assert made["forward_query"] is True
    assert made["enabled"] is True
    page = await console.get(f"/console/codes/{code}?notice=created")
    assert "The code was created." in page.text
    assert made["short_url"] in page.text


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"target_url": "javascript:alert(1)"}, "target_url", "absolute http or https URL"),
        ({"target_url": ""}, "target_url", ""),
        ({"target_url": "https://example.org/", "slug": "a b"}, "slug", ""),
        ({"target_url": "https://example.org/", "redirect_status": "303"}, "redirect_status", "301"),
        ({"target_url": "https://example.org/", "redirect_status": "9" * 50}, "redirect_status", ""),
        ({"target_url": "https://example.org/", "expires_at": "tomorrow"}, "expires_at", "ISO 8601"),
        ({"target_url": "https://example.org/", "fallback_url": "ftp://x"}, "fallback_url", ""),
        ({"target_url": "https://example.org/", "title": "x" * 201}, "title", "200"),
        ({"target_url": "https://example.org/", "tags": ",".join(f"t{n}" for n in range(21))}, "tags", "20"),
        ({"target_url": "https://example.org/", "title": "a\x00b"}, "title", "control"),
        ({"target_url": "http://qr.test:8080/r/abc"}, "target_url", ""),  # this service's own links
    ],
)
async def test_bad_fields_are_shown_beside_their_field_and_nothing_is_made(
    console: httpx.AsyncClient, database_url: str, fields: dict[str, str], field: str, says: str
) -> None:
    before = await count_rows(database_url)
    response = await post_form(console, "/console/new", fields)
    assert response.status_code == 422, response.text[:300]
    found = re.search(rf'<p class="error" id="e-{field}">([^<]*)</p>', response.text)
    assert found, response.text
    assert says in found[1]
    assert f'id="f-{field}"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert await count_rows(database_url) == before
    # What was typed stays in the form (escaped), so nothing has to be typed again.
    if fields.get("title"):
        assert "x" * 50 in response.text or "a" in response.text


async def test_a_taken_slug_is_shown_on_the_slug(console: httpx.AsyncClient) -> None:
    await make_code(console, slug="taken-one")
    response = await post_form(
        console, "/console/new", {"target_url": "https://example.org/", "slug": "TAKEN-one"}
    )
    assert response.status_code == 422
    assert re.search(r'<p class="error" id="e-slug">[^<]+</p>', response.text)


# -- forgery -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"origin": "http://evil.example"}, None),
        ({"origin": "null"}, None),
        ({"sec-fetch-site": "cross-site"}, None),
        ({"sec-fetch-site": "same-site"}, None),
        ({}, "0" * 40),  # a token of another session
        ({}, ""),
    ],
)
async def test_forged_posts_are_refused_and_change_nothing(
    console: httpx.AsyncClient, database_url: str, headers: dict[str, str], token: str | None
) -> None:
    real = csrf_of(await console.get("/console/new"))
    before = await count_rows(database_url)
    data = {"csrf": real if token is None else token, "target_url": "https://example.org/forged"}
    response = await console.post("/console/new", data=data, headers=headers)
    assert response.status_code == 400  # not 403: at the edge that status is the allowlist's
    assert "This form was refused" in response.text
    assert response.headers["content-security-policy"] == CSP
    assert await count_rows(database_url) == before


async def test_a_post_without_a_session_is_refused(console: httpx.AsyncClient, database_url: str) -> None:
    real = csrf_of(await console.get("/console/new"))
    stranger = httpx.AsyncClient(transport=console._transport, base_url="http://localhost")
    response = await stranger.post("/console/new", data={"csrf": real, "target_url": "https://example.org/"})
    assert response.status_code == 400
    await stranger.aclose()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"target_url": "https://example.org/"}'),
        ("text/plain", b"target_url=https://example.org/"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data\r\n\r\nbroken"),
    ],
)
async def test_bodies_that_are_no_form_are_refused(
    console: httpx.AsyncClient, database_url: str, content_type: str, body: bytes
) -> None:
    await console.get("/console/new")
    before = await count_rows(database_url)
    response = await console.post("/console/new", content=body, headers={"content-type": content_type})
    assert response.status_code in (400, 403, 415)
    assert "<h1>" in response.text  # a page, not a traceback
    assert await count_rows(database_url) == before


async def test_a_form_past_its_limit_is_413(console: httpx.AsyncClient, settings: ManagementSettings) -> None:
    response = await post_form(
        console,
        "/console/new",
        {"target_url": "https://example.org/", "title": "x" * (settings.max_body_bytes + 10)},
    )
    assert response.status_code == 413


# -- one code ----------------------------------------------------------------------------------


async def test_edit_switch_and_history(console: httpx.AsyncClient) -> None:
    code = await make_code(console, target_url="https://example.org/old")
    edited = await post_form(
        console,
        f"/console/codes/{code}/edit",
        {
            "target_url": "https://example.org/new",
            "title": "Renamed",
            "redirect_status": "302",
            "enabled": "on",
        },
    )
    assert edited.status_code == 303
    assert edited.headers["location"] == f"/console/codes/{code}?notice=saved"
    assert (await console.get(f"/api/v1/qr/{code}")).json()["target_url"] == "https://example.org/new"
    page = await console.get(f"/console/codes/{code}")
    history = page.text.split('id="history-heading"', 1)[1]
    assert "https://example.org/old" in history
    assert "https://example.org/new" in history
    asked = await post_form(console, f"/console/codes/{code}/enabled", {"enabled": "false"})
    assert asked.status_code == 200  # switching off asks first
    assert "Switch the code off" in asked.text
    assert (await console.get(f"/api/v1/qr/{code}")).json()["enabled"] is True
    off = await post_form(console, f"/console/codes/{code}/enabled", {"enabled": "false", "confirmed": "yes"})
    assert off.headers["location"].endswith("notice=disabled")
    assert (await console.get(f"/api/v1/qr/{code}")).json()["enabled"] is False
    bad = await post_form(console, f"/console/codes/{code}/edit", {"target_url": "data:text/html,x"})
    assert bad.status_code == 422
    assert 'id="e-target_url"' in bad.text
    assert (await console.get(f"/api/v1/qr/{code}")).json()["target_url"] == "https://example.org/new"


async def test_delete_asks_first(console: httpx.AsyncClient) -> None:
    code = await make_code(console)
    confirm = await console.get(f"/console/codes/{code}/delete")
    assert "cannot be undone" in confirm.text
    assert (await console.get(f"/api/v1/qr/{code}")).status_code == 200
    deleted = await post_form(console, f"/console/codes/{code}/delete", {})
    assert deleted.headers["location"] == "/console/?notice=deleted"
    assert (await console.get(f"/api/v1/qr/{code}")).status_code == 404
    assert (await console.get(f"/console/codes/{code}")).status_code == 404


@pytest.mark.parametrize(
    "path", ["/console/codes/no-such-code", "/console/codes/..%2f..", "/console/codes/x/scans"]
)
async def test_unknown_codes_are_a_404_page(console: httpx.AsyncClient, path: str) -> None:
    response = await console.get(path)
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in response.text


async def test_the_preview_follows_the_options_and_judges_the_contrast(console: httpx.AsyncClient) -> None:
    code = await make_code(console)
    good = await console.get(f"/console/codes/{code}/preview?fg=%231a237e&bg=%23ffffff&size=300&ecc=Q")
    assert 'class="verdict good"' in good.text
    src = re.search(r'<img src="([^"]+)"', good.text)
    assert src
    assert "fg=%231a237e" in src[1]
    image = await console.get(src[1].replace("&amp;", "&"))
    assert image.status_code == 200  # the API's image, read with the console's session
    assert decode(image.content) == [f"http://qr.test:8080/r/{code}"]
    assert Image.open(io.BytesIO(image.content)).getpixel((150, 150)) is not None
    poor = await console.get(f"/console/codes/{code}/preview?fg=%23999999&bg=%23ffffff")
    assert 'class="verdict bad"' in poor.text
    assert "<img" not in poor.text  # no image the API would refuse
    hostile = await console.get(f"/console/codes/{code}?fg=%22%3E%3Cscript%3E&size=-5&border=x&ecc=Z")
    assert hostile.status_code == 200
    assert "<script>" not in hostile.text.replace("<script src=", "")
    for field in ("fg", "size", "border", "ecc"):
        assert f'id="e-{field}"' in hostile.text or field == "ecc", field


async def test_a_logo_upload_and_a_file_that_is_no_image(console: httpx.AsyncClient) -> None:
    code = await make_code(console)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "#cc0000").save(buffer, "PNG")
    uploaded = await post_form(
        console,
        f"/console/codes/{code}/logo",
        {},
        files={"logo": ("logo.png", buffer.getvalue(), "image/png")},
    )
    assert uploaded.status_code == 303, uploaded.text[:300]
    assert (await console.get(f"/api/v1/qr/{code}")).json()["logo_sha256"]
    fake = await post_form(
        console, f"/console/codes/{code}/logo", {}, files={"logo": ("x.png", b"not a png", "image/png")}
    )
    assert fake.status_code == 422
    assert "<h1>" in fake.text
    other = await post_form(
        console, f"/console/codes/{code}/logo", {}, files={"logo": ("x.gif", b"GIF89a", "image/gif")}
    )
    assert other.status_code == 422


async def test_the_selection_exports_through_the_api(console: httpx.AsyncClient) -> None:
    first, second = await make_code(console), await make_code(console)
    answer = await console.get(f"/console/export?id={first}&id={second}&as=zip-svg")
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location == f"/api/v1/qr/export.zip?format=svg&ids={first}%2C{second}"
    archive = await console.get(location)
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    for query in (f"id={first}&as=tar", "as=pdf&tag=" + "x" * 200):
        assert (await console.get(f"/console/export?{query}")).status_code in (400, 422), query
    # Nothing selected: back to the list, which says what to do.
    for query in ("as=zip-png", "id=../../etc&as=pdf"):
        empty = await console.get(f"/console/export?{query}")
        assert empty.headers["location"] == "/console/?export=none", query
    assert "select codes first, or choose a tag" in (await console.get("/console/?export=none")).text
    # Every code with a tag, through the API's own filter.
    tagged = await make_code(console, tags="menu, print")
    by_tag = await console.get("/console/export?as=pdf&tag=menu")
    assert by_tag.headers["location"] == "/api/v1/qr/export.pdf?tag=menu"
    sheet = await console.get(by_tag.headers["location"])
    assert sheet.status_code == 200
    assert sheet.headers["content-type"] == "application/pdf"
    assert tagged


# -- many codes --------------------------------------------------------------------------------


async def test_a_csv_with_a_bad_row_shows_it_and_creates_nothing(
    console: httpx.AsyncClient, database_url: str
) -> None:
    lines = ["target_url,title"] + [f"https://example.org/{n},Row {n}" for n in range(1, 51)]
    lines[23] = "not a url,Row 23"
    before = await count_rows(database_url)
    refused = await post_form(
        console, "/console/bulk", {}, files={"csv": ("codes.csv", "\n".join(lines).encode(), "text/csv")}
    )
    assert refused.status_code == 422
    row = re.search(r'<tr id="row-23" class="bad">(.*?)</tr>', refused.text, re.S)
    assert row
    assert "target_url" in row[1]
    assert "must be an absolute http or https URL" in row[1]
    assert refused.text.count('class="bad"') == 1
    assert await count_rows(database_url) == before
    lines[23] = "https://example.org/23,Row 23"
    accepted = await post_form(
        console, "/console/bulk", {}, files={"csv": ("codes.csv", "\n".join(lines).encode(), "text/csv")}
    )
    assert accepted.status_code == 200
    assert "50 codes created" in accepted.text
    assert await count_rows(database_url) == before + 50


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe not utf-8", b"nonsense_column\nx", b'target_url\n"unterminated', b"a\x00b"],
)
async def test_hostile_csv_files_get_a_message(
    console: httpx.AsyncClient, database_url: str, content: bytes
) -> None:
    before = await count_rows(database_url)
    response = await post_form(console, "/console/bulk", {}, files={"csv": ("x.csv", content, "text/csv")})
    assert response.status_code == 422
    assert re.search(r'<p class="error" id="e-csv" role="alert"[^>]*>[^<]+</p>', response.text)
    assert await count_rows(database_url) == before


# -- the list ----------------------------------------------------------------------------------


async def test_search_tags_sorting_and_pages(console: httpx.AsyncClient) -> None:
    made = [
        await make_code(console, title=f"Poster {n}", tags="posters" if n % 2 else "flyers")
        for n in range(30)
    ]
    newest = await console.get("/console/")
    ids = re.findall(r'name="id" value="([^"]+)"', newest.text)
    assert ids == made[::-1][:25]
    following = re.search(r'<a href="/console/(\?[^"]+)" rel="next">', newest.text)
    assert following
    rest = await console.get("/console/" + following[1].replace("&amp;", "&"))
    assert re.findall(r'name="id" value="([^"]+)"', rest.text) == made[::-1][25:]
    tagged = await console.get("/console/?tag=posters&order=created_at")
    assert re.findall(r'name="id" value="([^"]+)"', tagged.text) == made[1::2]
    found = await console.get("/console/?q=Poster+7")
    assert re.findall(r'name="id" value="([^"]+)"', found.text) == [made[7]]
    for hostile in ("q=" + "x" * 300, "cursor=!!", "q=%00", "tag=" + "t" * 80):
        response = await console.get(f"/console/?{hostile}")
        assert response.status_code == 200, hostile
        assert 'class="error"' in response.text, hostile
    unknown_order = await console.get("/console/?order=drop")  # a select: back to its default
    assert unknown_order.status_code == 200
    assert '<option value="-created_at" selected>' in unknown_order.text


# -- sign-in -----------------------------------------------------------------------------------


async def test_with_tokens_the_console_asks_to_sign_in(signed: httpx.AsyncClient, tokens: Path) -> None:
    away = await signed.get("/console/new?x=1")
    assert away.status_code == 303
    assert away.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fnew%3Fx%3D1"
    form = await signed.get("/console/sign-in")
    assert 'type="password"' in form.text
    wrong = await signed.post("/console/sign-in", data={"token": "guess", "next": "/console/"})
    assert wrong.status_code == 401
    assert 'id="e-token"' in wrong.text
    assert "set-cookie" not in wrong.headers
    # An address elsewhere is never where signing in leads.
    for target in ("https://evil.example/", "//evil.example/", "/console/\\evil", "/api/v1/qr"):
        answer = await signed.post("/console/sign-in", data={"token": "alice-secret", "next": target})
        assert answer.headers["location"] == "/console/", target
    answer = await signed.post("/console/sign-in", data={"token": "alice-secret", "next": "/console/new"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/new"
    assert "alice-secret" not in answer.headers["set-cookie"]
    assert digest("alice-secret") not in answer.headers["set-cookie"]  # nothing to test guesses against
    page = await signed.get("/console/new")
    assert page.status_code == 200
    assert "Signed in as <strong>alice</strong>" in page.text
    code = await make_code(signed)
    history = (await signed.get(f"/api/v1/qr/{code}/history")).json()  # a read, with the cookie
    assert history["items"][0]["token_name"] == "alice"
    # The cookie reads the API, never writes it: writes need the bearer token.
    write = await signed.post("/api/v1/qr", json={"target_url": "https://example.org/"})
    assert write.status_code == 401


async def test_a_token_taken_out_of_the_file_ends_its_sessions(
    signed: httpx.AsyncClient, tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.management.auth.tokens as tokens_module

    monkeypatch.setattr(tokens_module, "RELOAD_INTERVAL", 0.0)
    await signed.post("/console/sign-in", data={"token": "alice-secret", "next": "/console/"})
    assert (await signed.get("/console/")).status_code == 200
    tokens.write_text(f"bob:{digest('bob-secret')}\n# alice removed\n")
    assert (await signed.get("/console/")).status_code == 303
    assert (await signed.get("/api/v1/qr")).status_code == 401


async def test_sign_out_ends_the_session(signed: httpx.AsyncClient) -> None:
    await signed.post("/console/sign-in", data={"token": "bob-secret", "next": "/console/"})
    token = csrf_of(await signed.get("/console/new"))
    out = await signed.post("/console/sign-out", data={"csrf": token})
    assert out.status_code == 303
    assert out.headers["location"] == "/console/sign-in?notice=signed-out"
    assert (await signed.get("/console/")).status_code == 303


async def test_a_forged_cookie_opens_nothing(signed: httpx.AsyncClient) -> None:
    for value in ("x", "a.b.c.d", "sid." + digest("alice-secret") + ".9999999999." + "0" * 64, "a" * 400):
        signed.cookies.set("qr_console", value)
        assert (await signed.get("/console/")).status_code == 303, value
        assert (await signed.get("/api/v1/qr")).status_code == 401, value


async def test_the_console_is_behind_the_allowlist_and_the_host_rule(settings: ManagementSettings) -> None:
    async for outsider in serve(settings, client_address="203.0.113.9"):
        for path in ("/", "/console/", "/console/static/console.css", "/console/sign-in"):
            assert (await outsider.get(path)).status_code == 403, path
    async for client in serve(settings):
        misdirected = await client.get("/console/", headers={"host": "elsewhere.example"})
        assert misdirected.status_code == 421


# -- hostile corners -------------------------------------------------------------------------------


async def test_odd_cookies_and_origins_are_refusals_not_errors(signed: httpx.AsyncClient) -> None:
    odd = {"cookie": "qr_console=a.-.9999999999.\u00e9".encode()}  # not ASCII: as raw bytes
    assert (await signed.get("/api/v1/qr", headers=odd)).status_code == 401
    assert (await signed.get("/console/", headers=odd)).status_code == 303
    await signed.post("/console/sign-in", data={"token": "alice-secret", "next": "/console/"})
    token = csrf_of(await signed.get("/console/new"))
    for origin in ("http://[x", "http://localhost:99999999999"):
        answer = await signed.post(
            "/console/new", data={"csrf": token, "target_url": "https://e.org/"}, headers={"origin": origin}
        )
        assert answer.status_code == 400, origin
    bad_token = await signed.post(
        "/console/new", data={"csrf": "\u00e9" * 40, "target_url": "https://e.org/"}
    )
    assert bad_token.status_code == 400


async def test_the_cookie_reads_the_api_only_from_the_consoles_own_pages(signed: httpx.AsyncClient) -> None:
    await signed.post("/console/sign-in", data={"token": "alice-secret", "next": "/console/"})
    assert (await signed.get("/api/v1/qr", headers={"sec-fetch-site": "same-origin"})).status_code == 200
    for site in ("same-site", "cross-site"):  # refused at the door, cookie or not
        assert (await signed.get("/api/v1/qr", headers={"sec-fetch-site": site})).status_code == 403, site


async def test_signing_out_ends_that_cookie_for_good(signed: httpx.AsyncClient) -> None:
    await signed.post("/console/sign-in", data={"token": "alice-secret", "next": "/console/"})
    kept = signed.cookies.get("qr_console")
    token = csrf_of(await signed.get("/console/new"))
    await signed.post("/console/sign-out", data={"csrf": token})
    signed.cookies.set("qr_console", kept)  # a copy of the cookie taken before
    assert (await signed.get("/console/")).status_code == 303
    assert (await signed.get("/api/v1/qr")).status_code == 401


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    answer = await client.post("/console/sign-in", data={"token": token, "next": "/console/"})
    assert answer.status_code == 303, answer.text[:300]
    return answer.cookies["qr_console"]


async def sign_out(client: httpx.AsyncClient) -> None:
    out = await client.post(
        "/console/sign-out",
        data={"csrf": csrf_of(await client.get("/console/new"))},
        headers={"origin": "http://localhost"},
    )
    assert out.status_code == 303


async def test_a_signed_out_cookie_stays_refused_after_a_restart(
    environ: dict[str, str], tokens: Path
) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})
    async for before in serve(settings):
        signed_out = await sign_in(before, "alice-secret")
        kept = await sign_in(before, "bob-secret")
        before.cookies.set("qr_console", signed_out)
        await sign_out(before)
    async for restarted in serve(settings):  # a new app on the same database and data folder
        restarted.cookies.set("qr_console", signed_out)
        assert (await restarted.get("/console/")).status_code == 303
        assert (await restarted.get("/api/v1/qr")).status_code == 401
        assert (await restarted.get("/api/v1/qr/export.csv")).status_code == 401
        restarted.cookies.set("qr_console", kept)  # a session not signed out outlives the restart
        page = await restarted.get("/console/")
        assert page.status_code == 200
        assert "Signed in as <strong>bob</strong>" in page.text


async def test_a_sign_out_holds_in_every_management_process(environ: dict[str, str], tokens: Path) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})
    async for first in serve(settings):
        async for second in serve(settings):  # another process on the same database
            cookie = await sign_in(first, "alice-secret")
            second.cookies.set("qr_console", cookie)
            assert (await second.get("/console/")).status_code == 200
            await sign_out(first)
            assert (await second.get("/console/")).status_code == 303
            assert (await second.get("/api/v1/qr")).status_code == 401


async def test_a_session_cannot_be_checked_without_the_database(tmp_path: Path, tokens: Path) -> None:
    settings = ManagementSettings.from_env(
        {
            "DATABASE_URL": f"postgresql://postgres@/qr?host={tmp_path}",
            "QR_DATA_DIR": str(tmp_path / "images"),
            "ADMIN_TOKENS_FILE": str(tokens),
        }
    )
    async for client in serve(settings):
        await sign_in(client, "alice-secret")  # the tokens file alone says who it is
        page = await client.get("/console/")
        assert page.status_code == 503
        assert "text/html" in page.headers["content-type"]
        api = await client.get("/api/v1/qr")
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "unavailable"


async def test_unicode_digits_are_a_refusal(console: httpx.AsyncClient) -> None:
    response = await post_form(
        console, "/console/new", {"target_url": "https://example.org/", "redirect_status": "\u00b2"}
    )
    assert response.status_code == 422
    assert 'id="e-redirect_status"' in response.text
    rows = "target_url,redirect_status\nhttps://example.org/,\u00b2\n".encode()
    bulk = await console.post("/api/v1/qr/bulk", content=rows, headers={"content-type": "text/csv"})
    assert bulk.status_code == 422
    assert bulk.json()["errors"][0]["field"] == "redirect_status"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("to=9999-12-31&interval=month", "to"),
        ("from=9999-12-01&to=9999-12-31&interval=week", "to"),
        ("from=0001-01-01&to=0001-02-01&tz=Asia/Tokyo", "to"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("from=2000-01-01&to=2026-01-01&interval=hour", "interval"),
    ],
)
async def test_ranges_the_calendar_cannot_hold_are_shown_on_their_field(
    console: httpx.AsyncClient, query: str, field: str
) -> None:
    code = await make_code(console)
    api = await console.get(f"/api/v1/qr/{code}/scans?{query}")
    assert api.status_code == 422, api.text
    page = await console.get(f"/console/codes/{code}/scans?{query}")
    assert page.status_code == 422
    assert f'id="e-{field}"' in page.text


async def test_an_edit_changes_only_what_was_changed(console: httpx.AsyncClient) -> None:
    made = await console.post(
        "/api/v1/qr",
        json={
            "target_url": "https://example.org/a",
            "tags": ["a,b", "c"],
            "expires_at": "2031-01-01T10:20:30Z",
        },
    )
    code = made.json()["id"]
    saved = await post_form(
        console,
        f"/console/codes/{code}/edit",
        {
            "target_url": "https://example.org/b",
            "tags": "a,b, c",  # as the form showed them
            "expires_at": "2031-01-01T10:20",  # as the form showed it (minutes)
            "redirect_status": "302",
            "enabled": "on",
        },
    )
    assert saved.status_code == 303
    after = (await console.get(f"/api/v1/qr/{code}")).json()
    assert after["target_url"] == "https://example.org/b"
    assert after["tags"] == ["a,b", "c"]
    assert after["expires_at"] == "2031-01-01T10:20:30Z"
    history = (await console.get(f"/api/v1/qr/{code}/history")).json()["items"]
    assert set(history[0]["changes"]) == {"target_url"}


async def test_a_bad_logo_is_shown_on_the_logo_field(console: httpx.AsyncClient) -> None:
    code = await make_code(console)
    fake = await post_form(
        console, f"/console/codes/{code}/logo", {}, files={"logo": ("x.png", b"not a png", "image/png")}
    )
    assert fake.status_code == 422
    assert re.search(r'<p class="error" id="e-logo" role="alert">[^<]+</p>', fake.text)
    assert "<h1>" in fake.text


async def test_a_stale_page_link_starts_again_at_the_first_page(console: httpx.AsyncClient) -> None:
    from services.management.codes import encode_cursor

    await make_code(console)
    stale = encode_cursor("not a time", "abc")
    page = await console.get(f"/console/?cursor={stale}")
    assert page.status_code == 200
    assert "That page link is out of date" in page.text


async def test_a_codes_state_is_one_word_in_the_api_and_on_the_pages(console: httpx.AsyncClient) -> None:
    """The state each page says is the API's, computed once: on, off, expired, deleted."""
    made = {
        "on": {"target_url": "https://example.org/on"},
        "off": {"target_url": "https://example.org/off", "enabled": False},
        "expired": {"target_url": "https://example.org/old", "expires_at": "2025-01-01T00:00:00Z"},
        "deleted": {"target_url": "https://example.org/gone"},
    }
    ids = {}
    for state, body in made.items():
        answer = await console.post("/api/v1/qr", json=body)
        assert answer.status_code == 201, answer.text
        ids[state] = answer.json()["id"]
        assert answer.json()["state"] == ("on" if state == "deleted" else state)
    assert (await console.delete(f"/api/v1/qr/{ids['deleted']}")).status_code == 204
    listed = {
        code["id"]: code["state"] for code in (await console.get("/api/v1/qr?limit=200")).json()["items"]
    }
    assert {listed[ids[state]] for state in ("on", "off", "expired")} == {"on", "off", "expired"}
    assert ids["deleted"] not in listed
    page = await console.get(f"/console/codes/{ids['expired']}")
    assert (
        '<p class="state state-expired" id="state"><strong>Expired</strong> since 2025-01-01 00:00 UTC'
        in page.text
    )
    gone = await console.get(f"/console/codes/{ids['deleted']}/scans")
    assert gone.status_code == 200  # its scans stay, and so does their page
    assert "<strong>Deleted</strong>: it answers 404" in gone.text


async def test_a_tag_may_not_hold_the_csvs_separator(console: httpx.AsyncClient) -> None:
    refused = await console.post(
        "/api/v1/qr", json={"target_url": "https://example.org/", "tags": ["print|menu"]}
    )
    assert refused.status_code == 422
    assert "must not contain |" in refused.text
    form = await post_form(
        console, "/console/new", {"target_url": "https://example.org/", "tags": "print|menu"}
    )
    assert form.status_code == 422
    assert 'id="e-tags"' in form.text
    # The CSV's cell is two tags, as it always was.
    csv = b"target_url,tags\nhttps://example.org/csv,print|menu\n"
    bulk = await console.post("/api/v1/qr/bulk", content=csv, headers={"content-type": "text/csv"})
    assert bulk.status_code == 201, bulk.text
    assert bulk.json()["created"][0]["tags"] == ["print", "menu"]


async def test_options_this_code_cannot_be_drawn_in_are_refused_beside_their_field(
    console: httpx.AsyncClient,
) -> None:
    """Refusals that depend on the code, not only on the options: a size its symbol does not divide
    (asked in pixels or in millimetres), an error correction its payload does not fit."""
    made = await console.post("/api/v1/qr", json={"kind": "text", "content": {"text": "Menu. " * 250}})
    assert made.status_code == 201, made.text
    code = made.json()["id"]
    for query, field in (("size=400", "size"), ("size_mm=11&dpi=600", "size_mm"), ("ecc=H", "ecc")):
        api = await console.get(f"/api/v1/qr/{code}/image.png?{query}")
        assert api.status_code == 422, (query, api.text)
        page = await console.get(f"/console/codes/{code}?{query}")
        assert f'id="e-{field}"' in page.text, query
        assert f"/api/v1/qr/{code}/image.png?" not in page.text  # no stale preview, no download
    fine = await console.get(f"/console/codes/{code}")
    assert f"/api/v1/qr/{code}/image.png?" in fine.text
