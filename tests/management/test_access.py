"""The management service's own access rules: the allowlist again, and optional bearer tokens."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from services.management.app import create_app
from services.management.auth.tokens import parse_tokens
from services.management.settings import ManagementSettings, read_admin_auth
from shared.settings import ConfigError
from tests.management.conftest import count_rows, create, serve

pytestmark = pytest.mark.anyio


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_an_address_outside_the_allowlist_is_refused_even_around_the_edge(
    settings: ManagementSettings, database_url: str
) -> None:
    async for client in serve(settings, client_address="192.0.2.10"):
        response = await create(client, target_url="https://example.org/")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
        assert response.headers["x-request-id"]
        assert (await client.get("/api/v1/qr")).status_code == 403
        assert (await client.get("/api/v1/openapi.json")).status_code == 403
        # Probes and health stay open.
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/livez")).status_code == 200
    assert await count_rows(database_url) == 0


async def test_forwarded_for_counts_only_from_a_trusted_proxy(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_ALLOWLIST": "203.0.113.0/24"})
    # From the edge (127.0.0.1, trusted), the forwarded client address decides.
    async for client in serve(settings):
        allowed = await client.get("/api/v1/qr", headers={"x-forwarded-for": "203.0.113.7"})
        assert allowed.status_code == 200
        forged = await client.get("/api/v1/qr", headers={"x-forwarded-for": "203.0.113.7, 198.51.100.1"})
        assert forged.status_code == 403  # the rightmost untrusted entry is the client
        assert (await client.get("/api/v1/qr")).status_code == 403  # the edge itself is not allowlisted
        assert (await client.get("/api/v1/qr", headers={"x-forwarded-for": "junk"})).status_code == 403
    # From anyone else, the header is ignored.
    async for client in serve(settings, client_address="198.51.100.1"):
        response = await client.get("/api/v1/qr", headers={"x-forwarded-for": "203.0.113.7"})
        assert response.status_code == 403


async def test_history_records_the_client_behind_the_edge(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_ALLOWLIST": "203.0.113.0/24"})
    async for client in serve(settings):
        headers = {"x-forwarded-for": "203.0.113.7"}
        code = (
            await client.post("/api/v1/qr", json={"target_url": "https://example.org/"}, headers=headers)
        ).json()
        history = (await client.get(f"/api/v1/qr/{code['id']}/history", headers=headers)).json()
        assert history["items"][0]["client_address"] == "203.0.113.7"


async def test_bearer_tokens_when_a_tokens_file_is_set(
    environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(
        f"# name:sha256 of the token\nci-bot:{digest('s3cret-bot')}\n\nalice:{digest('alice-pw')}\n"
    )
    settings = ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})
    async for client in serve(settings):
        missing = await create(client, target_url="https://example.org/")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "unauthorized"
        for header in (
            "Bearer wrong",
            "Basic czNjcmV0LWJvdA==",
            "s3cret-bot",
            f"Bearer {digest('s3cret-bot')}",
        ):
            response = await client.get("/api/v1/qr", headers={"authorization": header})
            assert response.status_code == 401, header
        good = {"authorization": "Bearer s3cret-bot"}
        code = (
            await client.post("/api/v1/qr", json={"target_url": "https://example.org/"}, headers=good)
        ).json()
        history = (await client.get(f"/api/v1/qr/{code['id']}/history", headers=good)).json()
        assert history["items"][0]["token_name"] == "ci-bot"
        assert (await client.get("/health")).status_code == 200  # open without a token

        # Adding a token to the file takes effect without a restart.
        tokens.write_text(tokens.read_text() + f"carol:{digest('carol-pw')}\n")
        stat = tokens.stat()
        os.utime(tokens, (stat.st_atime, stat.st_mtime + 5))
        monkeypatch.setattr("services.management.auth.tokens.RELOAD_INTERVAL", 0.0)
        assert (
            await client.get("/api/v1/qr", headers={"authorization": "Bearer carol-pw"})
        ).status_code == 200


async def test_the_token_never_reaches_the_log(
    environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared import logging as qrlog

    qrlog.configure("INFO")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci-bot:{digest('s3cret-bot')}\n")
    async for client in serve(ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})):
        await client.get("/api/v1/qr", headers={"authorization": "Bearer s3cret-bot"})
        await client.get("/api/v1/qr", headers={"authorization": "Bearer not-the-token"})
    output = capsys.readouterr().out
    assert '"path": "/api/v1/qr"' in output
    assert "s3cret-bot" not in output
    assert "not-the-token" not in output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("alice\n", "line 1"),
        ("alice:not-a-digest\n", "line 1"),
        (f"al ice:{'a' * 64}\n", "line 1"),
        (f"a:{'a' * 64}\nb:{'a' * 64}\n", "twice"),
    ],
)
def test_a_bad_tokens_file_stops_the_service_with_a_message(content: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tokens(content)


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read"), ("", "no tokens"), ("# none\n", "no tokens")]
)
def test_a_missing_or_empty_tokens_file_stops_the_service(
    environ: dict[str, str], tmp_path: Path, content: str | None, message: str
) -> None:
    tokens = tmp_path / "tokens"
    if content is not None:
        tokens.write_text(content)
    settings = ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})
    with pytest.raises(ConfigError, match=message):
        create_app(settings)


@pytest.mark.parametrize("revoke", ["empty", "delete"])
async def test_emptying_or_deleting_the_tokens_file_revokes_every_token(
    environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revoke: str
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci-bot:{digest('s3cret-bot')}\n")
    monkeypatch.setattr("services.management.auth.tokens.RELOAD_INTERVAL", 0.0)
    async for client in serve(ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})):
        good = {"authorization": "Bearer s3cret-bot"}
        assert (await client.get("/api/v1/qr", headers=good)).status_code == 200
        if revoke == "empty":
            tokens.write_text("")
        else:
            tokens.unlink()
        assert (await client.get("/api/v1/qr", headers=good)).status_code == 401
        # A half-written file (a syntax error) keeps the previous tokens instead.
        tokens.write_text(f"ci-bot:{digest('s3cret-bot')}\n")
        os.utime(tokens, (0, 1))
        assert (await client.get("/api/v1/qr", headers=good)).status_code == 200
        tokens.write_text("ci-bot:half-writ")
        assert (await client.get("/api/v1/qr", headers=good)).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "bearer s3cret-bot-x",
        "Bearer s3cret-bot extra",
        "Bearer s\u00e9cret",
        "Token s3cret-bot",
    ],
)
async def test_malformed_authorization_is_401_not_a_crash(
    environ: dict[str, str], tmp_path: Path, authorization: str
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci-bot:{digest('s3cret-bot')}\n")
    async for client in serve(ManagementSettings.from_env({**environ, "ADMIN_TOKENS_FILE": str(tokens)})):
        response = await client.get("/api/v1/qr", headers={"authorization": authorization.encode("utf-8")})
        assert response.status_code == 401
        assert (
            await client.get("/api/v1/qr", headers={"authorization": "bearer s3cret-bot"})
        ).status_code == 200


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost", 200),
        ("localhost:8080", 200),
        ("127.0.0.1:8002", 200),
        ("LOCALHOST", 200),
        ("rebound.attacker.example", 421),
        ("rebound.attacker.example:8080", 421),
        ("[::1]:8080", 421),  # not in the default ADMIN_HOSTS
        ("", 421),
    ],
)
async def test_the_host_header_must_name_an_admin_host(
    client: httpx.AsyncClient, host: str, status: int
) -> None:
    response = await client.get("/api/v1/qr", headers={"host": host})
    assert response.status_code == status
    if status == 421:
        assert response.json()["error"]["code"] == "misdirected_request"
    assert (await client.get("/health", headers={"host": "rebound.attacker.example"})).status_code == 200


async def test_admin_hosts_can_name_the_public_host(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_HOSTS": "qr.example.org, 10.0.0.5"})
    async for client in serve(settings):
        assert (await client.get("/api/v1/qr", headers={"host": "qr.example.org"})).status_code == 200
        assert (await client.get("/api/v1/qr", headers={"host": "localhost"})).status_code == 421


@pytest.mark.parametrize("value", ["", " , ", "https://qr.example.org", "qr.example.org:8080", "bad host"])
def test_bad_admin_hosts_are_refused(environ: dict[str, str], value: str) -> None:
    with pytest.raises(ConfigError, match="ADMIN_HOSTS"):
        ManagementSettings.from_env({**environ, "ADMIN_HOSTS": value})


async def test_forwarded_for_on_several_header_lines(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_ALLOWLIST": "203.0.113.0/24"})
    async for client in serve(settings):
        headers = [("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "203.0.113.7")]
        assert (await client.get("/api/v1/qr", headers=headers)).status_code == 200
        reversed_lines = [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "198.51.100.1")]
        assert (await client.get("/api/v1/qr", headers=reversed_lines)).status_code == 403
        with_port = await client.get("/api/v1/qr", headers={"x-forwarded-for": "203.0.113.7:5555"})
        assert with_port.status_code == 403  # not an address: fail closed


async def test_an_unknown_method_names_the_allowed_ones(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/qr/abcdefghjk", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert response.json()["error"]["code"] == "method_not_allowed"


# -- requests another site's page makes -------------------------------------------------------------

NAVIGATION = {"sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-user": "?1"}


@pytest.mark.parametrize("with_tokens", [False, True], ids=["allowlist-only", "tokens"])
async def test_a_page_of_another_site_cannot_read_the_api(
    environ: dict[str, str], tmp_path: Path, with_tokens: bool
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci-bot:{digest('s3cret-bot')}\n")
    extra = {"ADMIN_TOKENS_FILE": str(tokens)} if with_tokens else {}
    # A bearer token never comes from another site's page (it would need CORS); sent here anyway, to
    # show that the refusal does not depend on it.
    auth = {"authorization": "Bearer s3cret-bot"} if with_tokens else {}
    async for client in serve(ManagementSettings.from_env({**environ, **extra})):
        code = (
            await client.post("/api/v1/qr", json={"target_url": "https://example.org/"}, headers=auth)
        ).json()
        paths = ("/api/v1/qr?limit=1", f"/api/v1/qr/{code['id']}/image.png", "/api/v1/qr/export.pdf")
        for path in paths:
            for site in ("cross-site", "same-site"):
                for headers in ({"sec-fetch-site": site}, {"sec-fetch-site": site, **NAVIGATION}):
                    refused = await client.get(path, headers={**auth, **headers})
                    assert refused.status_code == 403, (path, headers, refused.text)
                    error = refused.json()["error"]
                    assert error["code"] == "forbidden"
                    assert f"another site made this request (Sec-Fetch-Site: {site})" in error["message"]
            head = await client.head(path, headers={**auth, "sec-fetch-site": "cross-site"})
            assert head.status_code == 403
            # The console's own pages (same-origin), an address typed in (none), a tool (no header).
            for headers in ({"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}, {}):
                assert (await client.get(path, headers={**auth, **headers})).status_code == 200, (
                    path,
                    headers,
                )
        # Nor can it write: a form posted at the API from another site is refused at the door.
        forged = await client.post(
            "/api/v1/qr",
            content=b"{}",
            headers={**auth, "sec-fetch-site": "cross-site", "content-type": "text/plain"},
        )
        assert forged.status_code == 403
        # Health and metrics stay open to anyone.
        assert (await client.get("/health", headers={"sec-fetch-site": "cross-site"})).status_code == 200


async def test_the_consoles_pages_open_from_its_own_pages_and_from_links(client: httpx.AsyncClient) -> None:
    for path in ("/console/", "/console/new", "/console/scans"):
        for headers in ({"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none", **NAVIGATION}, {}):
            assert (await client.get(path, headers=headers)).status_code == 200, (path, headers)
        # A link to the page followed from a mail or a wiki: a top-level navigation opens the page.
        followed = await client.get(path, headers={"sec-fetch-site": "cross-site", **NAVIGATION})
        assert followed.status_code == 200
        # The same page fetched or framed by another site's page (no navigation) is refused.
        for destination in ("empty", "iframe", "image"):
            headers = {
                "sec-fetch-site": "cross-site",
                "sec-fetch-mode": "no-cors",
                "sec-fetch-dest": destination,
            }
            assert (await client.get(path, headers=headers)).status_code == 403, (path, destination)
    # The export a console link leads to is the API's: a browser sends the redirected request as
    # cross-site too (the chain started on another site), and it is refused.
    code = (await create(client, target_url="https://example.org/")).json()
    foreign = {"sec-fetch-site": "cross-site", **NAVIGATION}
    exported = await client.get(f"/console/export?id={code['id']}&as=pdf", headers=foreign)
    assert exported.status_code == 303
    assert (await client.get(exported.headers["location"], headers=foreign)).status_code == 403


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ({}, "network"),
        ({"ADMIN_AUTH": "network"}, "network"),
        ({"ADMIN_AUTH": "identity"}, "identity"),
        ({"ADMIN_AUTH": " Identity "}, "identity"),
        ({"ADMIN_TOKENS_FILE": "/etc/qr/tokens"}, "identity"),
        ({"OIDC_ISSUER": "https://id.example.org/realms/qr"}, "identity"),
        ({"ADMIN_AUTH": "identity", "ADMIN_TOKENS_FILE": "/etc/qr/tokens"}, "identity"),
    ],
)
def test_admin_auth_is_network_unless_said_or_implied(values: dict[str, str], mode: str) -> None:
    # ADMIN_AUTH alone (OIDC_ISSUER's other settings are tests/oidc's).
    assert read_admin_auth({"DATABASE_URL": "postgresql://x/qr", **values}) == mode


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"ADMIN_AUTH": "tokens"}, "ADMIN_AUTH must be network or identity"),
        ({"ADMIN_AUTH": "network", "ADMIN_TOKENS_FILE": "/etc/qr/tokens"}, "ADMIN_TOKENS_FILE"),
        ({"ADMIN_AUTH": "network", "OIDC_ISSUER": "https://id.example.org/"}, "OIDC_ISSUER"),
    ],
)
def test_a_contradiction_or_an_unknown_mode_is_refused_with_why(values: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        ManagementSettings.from_env({"DATABASE_URL": "postgresql://x/qr", **values})


async def test_network_mode_ignores_tokens_and_lets_the_allowlist_decide(
    settings: ManagementSettings, database_url: str
) -> None:
    from tests.management.test_roles import make_token

    viewer = await make_token(database_url, settings.qr_data_dir, "reader", "viewer", ["none-of-these"])
    async for client in serve(settings):
        # A viewer's token changes nothing: without an identity mode every allowed caller is an admin.
        made = await client.post(
            "/api/v1/qr",
            json={"target_url": "https://example.org/"},
            headers={"authorization": f"Bearer {viewer}"},
        )
        assert made.status_code == 201
        assert (await client.delete(f"/api/v1/qr/{made.json()['id']}")).status_code == 204
        assert (await client.get("/api/v1/tokens")).status_code == 200
        assert (await client.get("/console/")).status_code == 200  # no sign-in


async def test_identity_mode_wants_an_identity_on_every_admin_request(environ: dict[str, str]) -> None:
    settings = ManagementSettings.from_env({**environ, "ADMIN_AUTH": "identity"})
    async for client in serve(settings):
        refused = await client.get("/api/v1/qr")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"]["code"] == "unauthorized"
        assert (
            await client.get("/api/v1/qr", headers={"authorization": "Bearer qr_" + "A" * 43})
        ).status_code == 401
        assert (await client.get("/api/v1/qr", headers={"authorization": "Basic eDp5"})).status_code == 401
        assert (
            await client.get("/api/v1/qr", headers={"authorization": "Bearer " + "x" * 10_000})
        ).status_code == 401
        page = await client.get("/console/")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/sign-in")
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
