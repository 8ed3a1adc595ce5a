"""The redirect service against a real PostgreSQL, through its ASGI app and lifespan."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.redirect import queries, rollups, scans, visitors
from services.redirect.app import RedirectApp, create_app
from services.redirect.settings import RedirectSettings

pytestmark = pytest.mark.anyio


async def insert_code(db: asyncpg.Connection, code_id: str, target: str, **columns: object) -> None:
    names = ["id", "short_url", "target_url", *columns]
    values = [code_id, f"http://qr.test/r/{code_id}", target, *columns.values()]
    placeholders = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await db.execute(f"INSERT INTO qr_codes ({', '.join(names)}) VALUES ({placeholders})", *values)


async def test_get_and_head_redirect_with_no_store(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await insert_code(db, "menu123abc", "https://example.org/menu")
    for method in ("GET", "HEAD"):
        response = await client.request(method, "/r/menu123abc")
        assert response.status_code == 302
        assert response.headers["location"] == "https://example.org/menu"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-robots-tag"] == "noindex"
        assert response.content == b""


@pytest.mark.parametrize(("status", "no_store"), [(301, False), (307, True), (308, False)])
async def test_each_code_answers_with_its_own_status(
    client: httpx.AsyncClient, db: asyncpg.Connection, status: int, no_store: bool
) -> None:
    await insert_code(db, f"status{status}", "https://example.org/", redirect_status=status)
    response = await client.get(f"/r/status{status}")
    assert response.status_code == status
    assert ("cache-control" in response.headers) is no_store


@pytest.mark.parametrize(
    "path",
    [
        "/r/unknown123",
        "/r/",
        "/r/ab",
        "/r/has%20space",
        "/r/a%2Fb",
        "/r/../api",
        "/r/" + "x" * 65,
        "/r/%00abc",
        "/r/%C3%A4bcdef",
    ],
)
async def test_unknown_and_malformed_ids_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert "location" not in response.headers


async def test_deleted_codes_are_404(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await insert_code(db, "gone123abc", "https://example.org/", deleted_at=datetime.now(UTC))
    assert (await client.get("/r/gone123abc")).status_code == 404


async def test_disabled_and_expired_codes_are_410(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await insert_code(db, "disabled12", "https://example.org/", enabled=False)
    await insert_code(
        db, "expired123", "https://example.org/", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    await insert_code(
        db, "future1234", "https://example.org/", expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    assert (await client.get("/r/disabled12")).status_code == 410
    assert (await client.get("/r/expired123")).status_code == 410
    assert (await client.get("/r/future1234")).status_code == 302


async def test_a_browser_gets_a_short_human_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/r/unknown123", headers={"accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text
    assert "unknown123" not in response.text


async def test_other_methods_are_405(client: httpx.AsyncClient) -> None:
    response = await client.post("/r/unknown123")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_changes_are_followed_within_a_second(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    # Cached as unknown first: the insert's notification must evict the negative entry.
    assert (await client.get("/r/later12345")).status_code == 404
    await insert_code(db, "later12345", "https://example.org/one")
    await eventually(client, "/r/later12345", 302, "https://example.org/one")
    await db.execute("UPDATE qr_codes SET target_url = 'https://example.org/two' WHERE id = 'later12345'")
    await eventually(client, "/r/later12345", 302, "https://example.org/two")
    await db.execute("UPDATE qr_codes SET enabled = false WHERE id = 'later12345'")
    await eventually(client, "/r/later12345", 410)
    await db.execute("UPDATE qr_codes SET deleted_at = now() WHERE id = 'later12345'")
    await eventually(client, "/r/later12345", 404)


async def test_any_spelling_of_an_id_reaches_its_code_and_counts_for_it(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "Menu-Card", "https://example.org/one")
    for spelling in ("Menu-Card", "menu-card", "MENU-CARD"):  # printed, typed, shouted
        response = await client.get(f"/r/{spelling}")
        assert response.status_code == 302, spelling
        assert response.headers["location"] == "https://example.org/one"
    # A change reaches every spelling.
    await db.execute("UPDATE qr_codes SET target_url = 'https://example.org/two' WHERE id = 'Menu-Card'")
    for spelling in ("Menu-Card", "menu-card", "MENU-CARD"):
        await eventually(client, f"/r/{spelling}", 302, "https://example.org/two")
    await app.recorder.flush()
    rows = await scan_rows(db)
    assert len(rows) >= 6
    assert {row["code_id"] for row in rows} == {"Menu-Card"}  # counted for the code, in its own spelling
    assert await db.fetchval("SELECT total FROM scan_counts WHERE code_id = 'Menu-Card'") == len(rows)
    # A spelling cached as unknown learns of the code when it is made.
    assert (await client.get("/r/later-Code")).status_code == 404
    await insert_code(db, "Later-code", "https://example.org/later")
    await eventually(client, "/r/later-Code", 302, "https://example.org/later")


async def test_ids_made_before_they_were_case_insensitive_keep_their_own_spelling(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await db.execute("DROP INDEX ix_qr_codes_id_folded")  # as a database that had clashes keeps it
    await db.execute("CREATE INDEX ix_qr_codes_id_folded ON qr_codes (lower(id))")
    await insert_code(db, "Poster", "https://example.org/first", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    await insert_code(db, "poster", "https://example.org/second")
    await insert_code(db, "POSTER", "https://example.org/gone", deleted_at=datetime.now(UTC))
    assert (await client.get("/r/Poster")).headers["location"] == "https://example.org/first"
    assert (await client.get("/r/poster")).headers["location"] == "https://example.org/second"
    assert (await client.get("/r/POSTER")).status_code == 404  # deleted: its own spelling stays dead
    assert (await client.get("/r/pOsTeR")).headers["location"] == "https://example.org/first"  # the oldest
    for malformed in ("=Poster", "('Poster',)"):  # no path reaches an answer kept for one spelling
        assert (await client.get(f"/r/{malformed}")).status_code == 404


async def eventually(client: httpx.AsyncClient, path: str, status: int, location: str | None = None) -> None:
    deadline = asyncio.get_running_loop().time() + 1.0
    while True:
        response = await client.get(path)
        if response.status_code == status and response.headers.get("location") == location:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{path}: still {response.status_code}"
        await asyncio.sleep(0.02)


async def test_health_reports_database_and_listener(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"
    assert response.json()["listener"] == "ok"
    assert (await client.get("/livez")).json() == {"status": "ok"}


async def test_every_query_prepares_against_the_migrated_schema(db: asyncpg.Connection) -> None:
    await db.execute(rollups.STAGE)  # the scan writer's temporary table, as each batch makes it
    for statement in (*queries.ALL, *scans.ALL, *visitors.ALL):
        prepared = await db.prepare(statement)  # raises on a missing table, column or type
        # Every $n placeholder of the text is a parameter PostgreSQL resolved a type for.
        placeholders = {int(n) for n in re.findall(r"\$(\d+)", statement)}
        assert len(prepared.get_parameters()) == len(placeholders), statement


@pytest.fixture
async def client_without_database(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # A socket folder where no server listens: every connection attempt fails at once.
    dsn = f"postgresql://postgres@/qr?host={tmp_path}"
    app = create_app(RedirectSettings(lookup_database_url=dsn, primary_database_url=dsn, db_timeout=0.5))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as http:
            yield http


async def test_without_a_database_unknown_ids_are_503_never_404(
    client_without_database: httpx.AsyncClient,
) -> None:
    response = await client_without_database.get("/r/unknown123")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "location" not in response.headers
    # Malformed ids need no database to be judged.
    assert (await client_without_database.get("/r/a")).status_code == 404
    health = await client_without_database.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert health.json()["database"].startswith("unreachable")
    assert (await client_without_database.get("/livez")).status_code == 200
    assert "qr_database_up 0.0" in (await client_without_database.get("/metrics")).text


async def test_a_dead_code_with_a_fallback_redirects_there(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(
        db, "fallback01", "https://example.org/", enabled=False, fallback_url="https://example.org/sorry"
    )
    past = datetime.now(UTC) - timedelta(seconds=1)
    await insert_code(
        db, "fallback02", "https://example.org/", expires_at=past, fallback_url="https://example.org/over"
    )
    for code_id, location in (
        ("fallback01", "https://example.org/sorry"),
        ("fallback02", "https://example.org/over"),
    ):
        response = await client.get(f"/r/{code_id}")
        assert response.status_code == 302
        assert response.headers["location"] == location
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("target", "query", "location"),
    [
        ("https://example.org/menu", "utm_source=poster", "https://example.org/menu?utm_source=poster"),
        (
            "https://example.org/m?lang=de",
            "utm_source=poster",
            "https://example.org/m?lang=de&utm_source=poster",
        ),
        ("https://example.org/m?", "a=1", "https://example.org/m?a=1"),
        ("https://example.org/m#top", "a=1", "https://example.org/m?a=1#top"),
        ("https://example.org/m", "a=%20b&c=d%0D%0A", "https://example.org/m?a=%20b&c=d%0D%0A"),
        ("https://example.org/m", "", "https://example.org/m"),
    ],
)
async def test_forward_query_appends_the_scans_query_string(
    client: httpx.AsyncClient, db: asyncpg.Connection, target: str, query: str, location: str
) -> None:
    await insert_code(db, "forward123", target, forward_query=True)
    response = await client.get(f"/r/forward123?{query}" if query else "/r/forward123")
    assert response.headers["location"] == location


async def test_without_forward_query_the_query_string_is_dropped(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "noforward1", "https://example.org/m")
    assert (await client.get("/r/noforward1?utm_source=x")).headers["location"] == "https://example.org/m"


def test_forwarded_queries_are_made_header_safe() -> None:
    from services.redirect.redirects import MAX_FORWARDED_QUERY, with_query

    assert with_query(b"https://e.org/", b"a=\xff#b c") == b"https://e.org/?a=%FF%23b%20c"
    assert with_query(b"https://e.org/", b"x" * (MAX_FORWARDED_QUERY + 1)) == b"https://e.org/"


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await insert_code(db, "reqid12345", "https://example.org/")
    for path in ("/r/reqid12345", "/r/unknown123", "/r/a", "/health", "/livez", "/metrics", "/elsewhere"):
        kept = await client.get(path, headers={"x-request-id": "scan-42"})
        assert kept.headers["x-request-id"] == "scan-42"
        fresh = [(await client.get(path)).headers["x-request-id"] for _ in range(3)]
        assert len(set(fresh)) == 3
        replaced = await client.get(path, headers={"x-request-id": "bad id"})
        assert replaced.headers["x-request-id"] != "bad id"


async def scan_rows(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT s.code_id, nullif(ua.agent, '') AS user_agent, s.referrer, s.visitor_hash, s.is_bot, "
        "ua.bot_reason FROM scans s JOIN user_agents ua ON ua.id = s.agent_id ORDER BY s.scanned_at"
    )


async def test_gets_are_recorded_heads_are_not(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "scanned123", "https://example.org/")
    phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148 Safari/604.1"
    await client.get("/r/scanned123", headers={"user-agent": phone, "referer": "https://poster.example/"})
    await client.get("/r/scanned123", headers={"user-agent": "WhatsApp/2.23.20.0"})
    await client.head("/r/scanned123", headers={"user-agent": phone})
    await client.get("/r/unknown123", headers={"user-agent": phone})  # no redirect, no scan
    recorder = app.recorder
    await recorder.flush()
    rows = await scan_rows(db)
    assert [(r["code_id"], r["is_bot"], r["bot_reason"]) for r in rows] == [
        ("scanned123", False, None),
        ("scanned123", True, "link-preview"),
    ]
    assert rows[0]["user_agent"] == phone
    assert rows[0]["referrer"] == "https://poster.example/"
    assert len(rows[0]["visitor_hash"]) == 16
    assert rows[0]["visitor_hash"] != rows[1]["visitor_hash"]
    totals = await db.fetchrow("SELECT total, bots FROM scan_counts WHERE code_id = 'scanned123'")
    assert (totals["total"], totals["bots"]) == (2, 1)
    assert recorder.written == 2


async def test_the_visitor_is_the_client_behind_a_trusted_proxy(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "visitor123", "https://example.org/")
    agent = {"user-agent": "Mozilla/5.0 (Android 15) Mobile"}
    # The ASGI client is 127.0.0.1, a trusted proxy: its X-Forwarded-For names the visitor.
    await client.get("/r/visitor123", headers={**agent, "x-forwarded-for": "203.0.113.7"})
    await client.get("/r/visitor123", headers={**agent, "x-forwarded-for": "203.0.113.7"})
    await client.get("/r/visitor123", headers={**agent, "x-forwarded-for": "198.51.100.9"})
    await app.recorder.flush()
    hashes = [row["visitor_hash"] for row in await scan_rows(db)]
    assert hashes[0] == hashes[1] != hashes[2]
    assert b"203.0.113.7" not in b"".join(hashes)
    day_keys = await db.fetchval("SELECT count(*) FROM visitor_keys")
    assert day_keys == 1


async def test_hostile_headers_are_stored_safely(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "hostile123", "https://example.org/")
    await client.get(
        "/r/hostile123",
        headers=[(b"user-agent", b"evil\x00agent \xff\xfe" + b"x" * 5000), (b"referer", b"\x00")],
    )
    await app.recorder.flush()
    (row,) = await scan_rows(db)
    assert "\x00" not in row["user_agent"]
    assert len(row["user_agent"]) <= 512


async def test_metrics_count_every_outcome(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    from tests.metrics_checks import parse, value

    await insert_code(db, "metric1234", "https://example.org/")
    await insert_code(db, "metricgone", "https://example.org/", enabled=False)
    await asyncio.sleep(0.3)  # the inserts' own notifications have come and gone
    await client.get("/r/metric1234")  # miss
    await client.get("/r/metric1234")  # hit
    await client.head("/r/metric1234")  # hit, no scan
    await client.get("/r/metricgone")  # gone
    await client.get("/r/nothing123")  # not found
    await client.post("/r/metric1234")  # rejected
    for made_up in ("FOO1", "FOO2", "X" * 50):  # a client chooses the method; not the series
        assert (await client.request(made_up, "/r/metric1234")).status_code == 405
        assert (await client.request(made_up, "/livez")).status_code == 405
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = parse(response.text)
    outcomes = {
        outcome: value(samples, "qr_redirect_outcomes_total", outcome=outcome)
        for outcome in ("hit", "miss", "gone", "not_found", "rejected")
    }
    assert outcomes == {"hit": 2, "miss": 1, "gone": 1, "not_found": 1, "rejected": 4}
    assert value(samples, "qr_http_requests_total", method="OTHER", route="/r/{id}", status="405") == 3
    assert value(samples, "qr_http_requests_total", method="OTHER", route="/livez", status="405") == 3
    assert value(samples, "qr_http_requests_total", method="GET", route="/r/{id}", status="302") == 2
    assert value(samples, "qr_http_requests_total", method="HEAD", route="/r/{id}", status="302") == 1
    assert value(samples, "qr_http_requests_total", method="GET", route="/r/{id}", status="410") == 1
    assert value(samples, "qr_http_request_duration_seconds_count", method="GET", route="/r/{id}") == 4
    assert value(samples, "qr_redirect_cache_entries") == 2
    assert value(samples, "qr_redirect_listener_connected") == 1
    assert value(samples, "qr_database_up") == 1
    assert "metric1234" not in response.text  # ids are never labels


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "forbidden"),
        (404, "not_found"),
        (429, "too_many_requests"),
        (502, "bad_gateway"),
        (504, "gateway_timeout"),
    ],
)
async def test_the_edges_refusal_pages_are_the_api_error_shape(
    client: httpx.AsyncClient, status: int, code: str
) -> None:
    response = await client.get(f"/edge-error/{status}", params={"url": "/api/v1/qr?limit=5"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers["cache-control"] == "no-store"
    if status == 429:
        assert response.headers["retry-after"] == "1"  # the edge's limits count per second
    page = await client.get(f"/edge-error/{status}", params={"url": "/"}, headers={"accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == "default-src 'none'"
    api = await client.get(
        f"/edge-error/{status}", params={"url": "/api/v1/qr"}, headers={"accept": "text/html"}
    )
    assert api.headers["content-type"] == "application/json"  # an API path stays JSON


@pytest.mark.parametrize("path", ["/edge-error/200", "/edge-error/999", "/edge-error/abc", "/edge-error/"])
async def test_anything_else_under_edge_error_is_a_plain_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, params={"url": "<script>"}, headers={"accept": "text/html"})
    assert response.status_code == 404
    assert b"<script>" not in response.content
