"""Lookups on a real streaming replica: an embedded primary and a hot standby made from it with
pg_basebackup, the redirect service reading through the standby. The standby's replay is paused
(``pg_wal_replay_pause()``) to hold it behind the primary on purpose, and killed with SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from asgi_lifespan import LifespanManager

from services.ops import embedded, schema
from services.redirect.app import RedirectApp, create_app
from services.redirect.settings import RedirectSettings

pytestmark = pytest.mark.anyio


@dataclass
class Pair:
    primary: embedded.EmbeddedServer
    standby: embedded.EmbeddedServer
    standby_dir: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("replica")
    primary = embedded.start(folder / "primary")
    try:
        schema.upgrade(primary.dsn())
        standby = embedded.start_replica(folder / "standby", primary)
        found = Pair(primary, standby, folder / "standby")
        try:
            yield found
        finally:
            found.standby.release()
    finally:
        primary.release()


async def sql(dsn: str, statement: str, *args: object) -> object:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(statement, *args)
    finally:
        await connection.close()


async def _written(pair: Pair, code_id: str, statement: str, *args: object) -> None:
    """A write as the management service makes one: the row and its notification, one transaction."""
    connection = await asyncpg.connect(pair.primary.dsn())
    try:
        async with connection.transaction():
            await connection.execute(statement, code_id, *args)
            await connection.execute("SELECT pg_notify('qr_changed', $1)", code_id)
    finally:
        await connection.close()


async def create(pair: Pair, code_id: str, target: str) -> None:
    insert = "INSERT INTO qr_codes (id, short_url, target_url) VALUES ($1, $2, $3)"
    await _written(pair, code_id, insert, f"http://qr.test/r/{code_id}", target)


async def change(pair: Pair, code_id: str, target: str) -> None:
    await _written(pair, code_id, "UPDATE qr_codes SET target_url = $2 WHERE id = $1", target)


async def on_replica(pair: Pair, code_id: str) -> str | None:
    found = await sql(pair.standby.dsn(), "SELECT target_url FROM qr_codes WHERE id = $1", code_id)
    return None if found is None else str(found)


async def until(condition: object, within: float, what: str) -> float:
    started = time.monotonic()
    while True:
        value = condition() if callable(condition) else condition  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        assert time.monotonic() - started < within, what
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(pair: Pair, *, max_lag: float) -> AsyncIterator[tuple[RedirectApp, httpx.AsyncClient]]:
    settings = RedirectSettings(
        lookup_database_url=pair.standby.dsn(),
        primary_database_url=pair.primary.dsn(),
        replica_max_lag=max_lag,
        negative_ttl=0.0,
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        await asyncio.wait_for(app.listener.connected.wait(), 10)
        assert app.routing is not None
        await until(lambda: app.routing.state.usable, 10, "the replica never became usable")  # type: ignore[union-attr]
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as client:
            yield app, client


@contextlib.asynccontextmanager
async def replay_paused(pair: Pair) -> AsyncIterator[None]:
    await sql(pair.standby.dsn(), "SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        await sql(pair.standby.dsn(), "SELECT pg_wal_replay_resume()")


async def test_codes_made_a_moment_ago_redirect_while_the_replica_is_behind(pair: Pair) -> None:
    async with serving(pair, max_lag=60) as (app, client), replay_paused(pair):
        assert app.routing is not None
        made = [f"fresh{n:04}" for n in range(150)]
        answers = []
        for code_id in made:
            await create(pair, code_id, f"https://example.org/{code_id}")
            answers.append(await client.get(f"/r/{code_id}"))  # at once: the replica has none of them
        assert [a.status_code for a in answers] == [302] * 150
        assert [a.headers["location"] for a in answers] == [f"https://example.org/{c}" for c in made]
        assert await on_replica(pair, made[0]) is None  # it really was behind
        assert app.routing.lookups["primary"] >= 150
        assert (await client.get("/r/nosuchcode")).status_code == 404  # the primary said so too


async def test_a_change_never_reverts_to_the_old_target(pair: Pair) -> None:
    await create(pair, "moving0001", "https://example.org/old")
    await until(lambda: on_replica(pair, "moving0001"), 10, "the replica never got the code")
    async with serving(pair, max_lag=60) as (app, client):
        assert app.routing is not None
        assert (await client.get("/r/moving0001")).headers["location"] == "https://example.org/old"
        before = app.routing.lookups["replica"]
        async with replay_paused(pair):
            notified = app.listener.received["id"]
            await change(pair, "moving0001", "https://example.org/new")
            await until(lambda: app.listener.received["id"] > notified, 5, "no notification")
            answers = [await client.get("/r/moving0001") for _ in range(20)]
            assert {a.headers["location"] for a in answers} == {"https://example.org/new"}
            assert await on_replica(pair, "moving0001") == "https://example.org/old"  # still behind
        # Caught up, the replica answers for the code again.
        await until(lambda: on_replica(pair, "moving0001"), 10, "no replay")
        app.cache.mark_stale("moving0001")
        assert (await client.get("/r/moving0001")).headers["location"] == "https://example.org/new"
        assert app.routing.lookups["replica"] > before


async def test_a_lagging_or_dead_replica_costs_speed_only(pair: Pair) -> None:
    await create(pair, "steady0001", "https://example.org/steady")
    await until(lambda: on_replica(pair, "steady0001"), 10, "the replica never got the code")
    async with serving(pair, max_lag=1.0) as (app, client):
        assert app.routing is not None
        assert (await client.get("/r/steady0001")).status_code == 302  # cached now
        async with replay_paused(pair):
            await create(pair, "lagging001", "https://example.org/lagging")  # the primary moves on
            await until(lambda: not app.routing.state.usable, 5, "the lag was never noticed")  # type: ignore[union-attr]
            health = (await client.get("/health")).json()
            assert health["status"] == "degraded"
            assert "behind" in health["reason"]
            assert health["replica"] == "bypassed"
        await until(lambda: app.routing.state.usable, 5, "the replica never came back")  # type: ignore[union-attr]

        # Killed: new codes still redirect within a second, cached ones at once.
        os.kill(pair.standby.pid, signal.SIGKILL)
        started = time.monotonic()
        assert (await client.get("/r/steady0001")).status_code == 302
        assert time.monotonic() - started < 0.5
        await create(pair, "afterkill1", "https://example.org/after")
        answer = await client.get("/r/afterkill1")
        assert answer.status_code == 302
        assert time.monotonic() - started < 1.5
        await until(lambda: not app.routing.state.usable, 2, "the death was never noticed")  # type: ignore[union-attr]
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded"
        assert "unreachable" in health["reason"]
        metrics = (await client.get("/metrics")).text
        assert "qr_replica_usable 0.0" in metrics

        # Started again (once the killed server is gone for good): lookups go back to it.
        await until(lambda: not psutil.pid_exists(pair.standby.pid), 30, "the killed server lingers")
        pair.standby = await asyncio.to_thread(embedded.start_replica, pair.standby_dir, pair.primary)
        await until(lambda: app.routing.state.usable, 15, "lookups never went back to the replica")  # type: ignore[union-attr]
        await create(pair, "back000001", "https://example.org/back")
        await until(lambda: on_replica(pair, "back000001"), 10, "no replay after the restart")
        before = app.routing.lookups["replica"]
        assert (await client.get("/r/back000001")).status_code == 302
        assert app.routing.lookups["replica"] == before + 1
        metrics = (await client.get("/metrics")).text
        assert "qr_replica_usable 1.0" in metrics
        assert 'qr_lookups_total{source="replica"}' in metrics
