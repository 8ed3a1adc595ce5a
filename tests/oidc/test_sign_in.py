"""The console's sign-in through a real provider (oidc-provider), driven over HTTP: the mapped role,
the refusals, sign-out at both ends, the provider away; and what the audit log keeps of it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.oidc.conftest import CONSOLE_CLIENT, CONSOLE_SECRET, RunningProvider
from tests.oidc.flows import app_with_provider, csrf_of, end_at_provider, sign_in

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app(
    environ: dict[str, str], provider: RunningProvider, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async for http in app_with_provider(environ, provider, tmp_path):
        yield http


async def audit_rows(database_url: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT * FROM audit_log ORDER BY id")
    finally:
        await connection.close()
    return [{**row, "detail": json.loads(row["detail"])} for row in rows]


async def test_the_sign_in_page_leads_to_the_provider(app: httpx.AsyncClient) -> None:
    page = await app.get("/console/", follow_redirects=True)
    assert page.url.path == "/console/sign-in"
    assert 'href="/console/auth/login?next=/console/"' in page.text
    assert 'name="token"' in page.text  # OIDC_ISSUER implies ADMIN_AUTH=identity: service tokens too


async def test_a_person_signs_in_with_the_role_their_groups_map_to(
    app: httpx.AsyncClient, environ: dict[str, str]
) -> None:
    signed_in = await sign_in(app, "viewer")
    assert signed_in.answer.status_code == 200
    # A page that moves on by itself: the Strict session cookie goes with a same-site navigation.
    assert '<meta http-equiv="refresh" content="0; url=/console/scans">' in signed_in.answer.text
    page = await app.get("/console/scans")
    assert page.status_code == 200
    assert "Signed in as <strong>viewer@example.org</strong> (viewer)" in page.text
    admin = await sign_in(app, "admin")  # in qr-admins and in staff: the highest mapped role
    assert admin.answer.status_code == 200
    assert "admin@example.org</strong> (admin)" in (await app.get("/console/")).text

    rows = await audit_rows(environ["DATABASE_URL"])
    assert [(r["action"], r["outcome"], r["actor"], r["actor_kind"], r["role"]) for r in rows] == [
        ("sign-in", "ok", "viewer@example.org", "person", "viewer"),
        ("sign-in", "ok", "admin@example.org", "person", "admin"),
    ]
    assert rows[0]["subject"] == "viewer"
    code = parse_qs(urlsplit(signed_in.callback).query)["code"][0]
    kept = repr(rows)
    for secret in (code, CONSOLE_SECRET):
        assert secret not in kept


async def test_an_account_without_a_mapped_group_gets_a_clear_refusal(
    app: httpx.AsyncClient, environ: dict[str, str]
) -> None:
    signed_in = await sign_in(app, "nobody")  # only in "staff", which maps to nothing
    assert signed_in.answer.status_code == 403
    assert "Your account has no role here" in signed_in.answer.text
    assert "qr_console" not in signed_in.answer.headers.get("set-cookie", "")
    assert (await app.get("/console/")).status_code == 303  # still to the sign-in page
    [row] = await audit_rows(environ["DATABASE_URL"])
    assert (row["action"], row["outcome"], row["actor"], row["role"]) == (
        "sign-in",
        "refused",
        "nobody@example.org",
        None,
    )
    assert row["detail"] == {"reason": "no role"}


async def test_a_callback_that_is_not_this_browsers_sign_in_is_refused(
    app: httpx.AsyncClient, environ: dict[str, str], provider: RunningProvider
) -> None:
    start = await app.get("/console/auth/login")
    authorization = parse_qs(urlsplit(start.headers["location"]).query)
    assert authorization["code_challenge_method"] == ["S256"]
    assert authorization["client_id"] == [CONSOLE_CLIENT]
    assert authorization["redirect_uri"] == ["http://localhost/console/auth/callback"]
    forged = await app.get("/console/auth/callback", params={"code": "x", "state": "another"})
    assert forged.status_code == 400
    assert "start again" in forged.text
    app.cookies.clear()  # another browser: no sign-in under way
    state = authorization["state"][0]
    lost = await app.get("/console/auth/callback", params={"code": "x", "state": state})
    assert lost.status_code == 400
    denied_start = await app.get("/console/auth/login")
    denied_state = parse_qs(urlsplit(denied_start.headers["location"]).query)["state"][0]
    denied = await app.get("/console/auth/callback", params={"error": "access_denied", "state": denied_state})
    assert denied.status_code == 403
    assert "did not sign you in (access_denied)" in denied.text
    reasons = [row["detail"]["reason"] for row in await audit_rows(environ["DATABASE_URL"])]
    assert reasons == [
        "state does not match",
        "no sign-in under way in this browser",
        "the provider answered access_denied",
    ]


async def test_sign_out_ends_the_console_session_and_the_providers(
    app: httpx.AsyncClient, environ: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=10) as browser:
        first = await sign_in(app, "editor", browser)
        assert first.asked
        again = await sign_in(app, "editor", browser)
        assert not again.asked  # signed in at the provider: no login asked for
        page = await app.get("/console/")
        assert "editor@example.org</strong> (editor)" in page.text
        out = await app.post("/console/sign-out", data={"csrf": csrf_of(page)})
        assert out.status_code == 200
        away = out.text.split('id="continue" href="')[1].split('"')[0].replace("&amp;", "&")
        end = urlsplit(away)
        assert end.path == "/session/end"
        assert parse_qs(end.query) == {
            "client_id": [CONSOLE_CLIENT],
            "post_logout_redirect_uri": ["http://localhost/console/sign-in?notice=signed-out"],
        }
        assert (await app.get("/console/")).status_code == 303  # the console session is over
        back = await end_at_provider(away, browser)
        assert back == "http://localhost/console/sign-in?notice=signed-out"
        after = await sign_in(app, "editor", browser)
        assert after.asked  # the provider's session is over too
    actions = [(r["action"], r["actor"]) for r in await audit_rows(environ["DATABASE_URL"])]
    assert ("sign-out", "editor@example.org") in actions


async def test_with_the_provider_away_sessions_go_on_and_sign_in_gets_a_clear_page(
    app: httpx.AsyncClient, provider: RunningProvider
) -> None:
    assert (await sign_in(app, "admin")).answer.status_code == 200
    provider.stop()
    page = await app.get("/console/")
    assert page.status_code == 200
    assert "admin@example.org</strong> (admin)" in page.text
    login = await app.get("/console/auth/login")
    assert login.status_code == 503
    assert "The identity provider cannot be reached now" in login.text
    assert login.headers["retry-after"] == "30"


async def test_a_code_exchanged_while_the_provider_is_away_gets_a_clear_page(
    app: httpx.AsyncClient, provider: RunningProvider
) -> None:
    start = await app.get("/console/auth/login")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    provider.stop()
    callback = await app.get("/console/auth/callback", params={"code": "a-code", "state": state})
    assert callback.status_code == 503
    assert "The identity provider cannot be reached now" in callback.text
