"""What changes do to the redirect service's cache, against a real PostgreSQL: one entry per code
whatever its spelling; creates forget unknown ids only; a change or a flush makes entries stale,
never drops them, so that a printed code keeps its last known target while lookups fail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.management.settings import ManagementSettings
from services.redirect.answers import CodeAnswer
from services.redirect.app import RedirectApp, create_app
from services.redirect.listener import APPLICATION_NAME
from services.redirect.settings import RedirectSettings
from tests.management.conftest import serve
from tests.redirect.test_app import eventually, insert_code

pytestmark = pytest.mark.anyio

LOOKUP_TIMEOUT = 0.3  # seconds a lookup waits on a frozen table before it counts as failed


@pytest.fixture
def app(database_url: str) -> RedirectApp:
    return create_app(
        RedirectSettings(
            lookup_database_url=database_url, primary_database_url=database_url, db_timeout=LOOKUP_TIMEOUT
        )
    )


@pytest.fixture
async def admin(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ManagementSettings.from_env({"DATABASE_URL": database_url, "QR_DATA_DIR": str(tmp_path)})
    async for http in serve(settings):
        yield http


@contextlib.asynccontextmanager
async def lookups_failing(database_url: str) -> AsyncIterator[None]:
    """Every lookup fails (a statement timeout) while the table of codes is locked; the listener,
    which does not read it, is unaffected."""
    connection = await asyncpg.connect(database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE qr_codes IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not within 5 s")


def answer(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.headers.get("location", response.text)


def spellings(word: str) -> list[str]:
    return [
        "".join(c.upper() if n >> i & 1 else c for i, c in enumerate(word)) for n in range(2 ** len(word))
    ]


async def test_sixteen_spellings_of_an_id_make_one_cache_entry_and_one_query(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "Menu", "https://example.org/menu")
    await until(lambda: app.listener.received["id"] == 1, "the insert's notification")
    asked = spellings("menu")
    assert len(set(asked)) == 16
    for spelling in asked:
        response = await client.get(f"/r/{spelling}")
        assert answer(response) == (302, "https://example.org/menu")
    assert len(app.cache) == 1
    assert app.metrics.outcomes_seen["miss"] == 1  # one lookup; the other fifteen were hits
    assert app.metrics.outcomes_seen["hit"] == 15
    for spelling in spellings("nope"):  # unknown ids too: one entry
        assert (await client.get(f"/r/{spelling}")).status_code == 404
    assert len(app.cache._missing) == 1


async def test_a_bulk_create_leaves_other_codes_entries_in_place(
    app: RedirectApp, client: httpx.AsyncClient, admin: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "printed01", "https://example.org/printed")
    await until(lambda: app.listener.received["id"] == 1, "the insert's notification")
    assert (await client.get("/r/printed01")).status_code == 302
    assert (await client.get("/r/Later-Slug")).status_code == 404  # now cached as unknown
    rows = [{"target_url": "https://example.org/later", "slug": "later-slug"}]
    rows += [{"target_url": f"https://example.org/{n}"} for n in range(20)]
    created = await admin.post("/api/v1/qr/bulk", json=rows)
    assert created.status_code == 201, created.text
    await eventually(client, "/r/Later-Slug", 302, "https://example.org/later")  # the 404 forgotten
    await until(lambda: app.listener.received["new"] == 1, "the bulk create's notification")
    assert app.listener.received["all"] == 0
    assert isinstance(app.cache.get("printed01"), CodeAnswer)  # untouched: fresh, no lookup needed

    # A statement around the API that changes many codes says "*": every entry stale, none dropped.
    await db.execute("UPDATE qr_codes SET title = 'retitled'")
    await until(lambda: app.listener.received["all"] == 1, "the flush")
    assert app.cache.get("printed01") is None
    assert app.cache.get_stale("printed01") == CodeAnswer(
        b"https://example.org/printed", 302, code_id="printed01"
    )


async def test_a_code_edited_just_before_lookups_fail_keeps_its_previous_target(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    await insert_code(db, "edited01", "https://example.org/before")
    await insert_code(db, "uncached1", "https://example.org/never-asked")
    await until(lambda: app.listener.received["id"] == 2, "the inserts' notifications")
    assert (await client.get("/r/edited01")).headers["location"] == "https://example.org/before"
    await db.execute("UPDATE qr_codes SET target_url = 'https://example.org/after' WHERE id = 'edited01'")
    await until(lambda: app.listener.received["id"] == 3, "the edit's notification")
    async with lookups_failing(database_url):
        for _ in range(3):
            response = await client.get("/r/edited01")
            # The previous target: a better answer than a 503 for a printed code.
            assert answer(response) == (302, "https://example.org/before")
        assert (await client.get("/r/uncached1")).status_code == 503  # nothing known of it
    assert app.metrics.outcomes_seen["stale"] == 3
    # The database answers again (after the breaker's second): the edit is served.
    await asyncio.sleep(app.resolver.cooldown)
    response = await client.get("/r/edited01")
    assert answer(response) == (302, "https://example.org/after")


async def test_a_code_deleted_or_switched_off_is_never_answered_from_memory(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    """A stale entry answers while lookups fail, but not for a code that stopped answering: the
    management service announces those ("!" + id) and they are forgotten at once."""
    await insert_code(db, "gone0001", "https://example.org/gone")
    await insert_code(db, "off00001", "https://example.org/off")
    await until(lambda: app.listener.received["id"] == 2, "the inserts' notifications")
    for code_id in ("gone0001", "off00001"):
        assert (await client.get(f"/r/{code_id}")).status_code == 302
    async with db.transaction():  # as the management service deletes and switches off
        await db.execute("UPDATE qr_codes SET deleted_at = now() WHERE id = 'gone0001'")
        await db.execute("SELECT pg_notify('qr_changed', '!gone0001')")
        await db.execute("UPDATE qr_codes SET enabled = false WHERE id = 'off00001'")
        await db.execute("SELECT pg_notify('qr_changed', '!off00001')")
    await until(lambda: app.listener.received["stopped"] == 2, "the stops")
    async with lookups_failing(database_url):
        for code_id in ("gone0001", "off00001", "GONE0001"):
            assert (await client.get(f"/r/{code_id}")).status_code == 503, code_id  # not the old target
    await asyncio.sleep(app.resolver.cooldown)
    assert (await client.get("/r/gone0001")).status_code == 404
    assert (await client.get("/r/off00001")).status_code == 410


async def test_after_a_listener_reconnect_with_lookups_failing_known_codes_still_redirect(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    codes = [f"known{n:04d}" for n in range(10)]
    for code_id in codes:
        await insert_code(db, code_id, f"https://example.org/{code_id}")
    await until(lambda: app.listener.received["id"] == len(codes), "the inserts' notifications")
    for code_id in codes:
        assert (await client.get(f"/r/{code_id}")).status_code == 302
    async with lookups_failing(database_url):
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = $1",
            APPLICATION_NAME,
        )
        assert killed == 1
        await until(lambda: app.listener.reconnects == 1 and app.listener.connected.is_set(), "a reconnect")
        assert all(app.cache.get(code_id) is None for code_id in codes)  # stale: looked up again first
        for code_id in codes:
            response = await client.get(f"/r/{code_id}")
            assert answer(response) == (302, f"https://example.org/{code_id}")
    assert app.metrics.outcomes_seen["stale"] == len(codes)
