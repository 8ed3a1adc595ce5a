"""Redirect processes (Granian, as deployed) against a real PostgreSQL: several at once following
changes, a frozen and a stopped database, a graceful stop that loses no scan, and a worker's memory
under a flood of huge headers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from services.management.app import create_app as create_management
from services.management.settings import ManagementSettings
from services.ops import embedded, schema
from services.ops.processes import (
    REDIRECT_MAX_HEADER_BYTES,
    Child,
    granian_command,
    spawn,
    venv_command,
    wait_ready,
)
from services.redirect import scans
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


def start_redirect(database_url: str, *, workers: int = 1, **env: str) -> tuple[Child, str]:
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    args = venv_command(granian_command("127.0.0.1", port, workers=workers))
    child = spawn(f"redirect:{port}", args, env=environ)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(child, f"{base}/livez", timeout=30)
    except Exception:
        child.stop()
        raise
    return child, base


@pytest.fixture
def redirects(database_url: str) -> Iterator[list[str]]:
    children = [start_redirect(database_url) for _ in range(2)]
    try:
        yield [base for _, base in children]
    finally:
        for child, _ in children:
            child.stop()


async def follow(bases: list[str], path: str, status: int, location: str | None, within: float) -> float:
    """Poll every process until all answer as expected; the seconds it took (fails past ``within``)."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            answers = [await client.get(f"{base}{path}") for base in bases]
            if all(a.status_code == status and a.headers.get("location") == location for a in answers):
                return time.monotonic() - started
            assert time.monotonic() - started < within, [
                (a.status_code, a.headers.get("location")) for a in answers
            ]
            await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_two_processes_follow_every_change_within_a_second(
    redirects: list[str], database_url: str, tmp_path: Path
) -> None:
    settings = ManagementSettings.from_env({"DATABASE_URL": database_url, "QR_DATA_DIR": str(tmp_path)})
    management = create_management(settings)
    async with LifespanManager(management) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as admin:
            code = (await admin.post("/api/v1/qr", json={"target_url": "https://example.org/one"})).json()
            path = f"/r/{code['id']}"
            await follow(redirects, path, 302, "https://example.org/one", within=1.0)  # now cached in both

            await admin.patch(f"/api/v1/qr/{code['id']}", json={"target_url": "https://example.org/two"})
            await follow(redirects, path, 302, "https://example.org/two", within=1.0)
            await admin.patch(f"/api/v1/qr/{code['id']}", json={"enabled": False})
            await follow(redirects, path, 410, None, within=1.0)
            await admin.patch(f"/api/v1/qr/{code['id']}", json={"enabled": True})
            await follow(redirects, path, 302, "https://example.org/two", within=1.0)

            # Kill the listeners' connections: the processes reconnect, flush, and follow again.
            connection = await asyncpg.connect(database_url)
            try:
                killed = await connection.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'qr-redirect-listener'"
                )
            finally:
                await connection.close()
            assert killed == 2
            await admin.patch(f"/api/v1/qr/{code['id']}", json={"target_url": "https://example.org/three"})
            await follow(redirects, path, 302, "https://example.org/three", within=5.0)

            await admin.delete(f"/api/v1/qr/{code['id']}")
            await follow(redirects, path, 404, None, within=1.0)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[embedded.EmbeddedServer]:
    """A PostgreSQL of this test's own, to freeze and stop without touching anyone else's."""
    server = embedded.start(tmp_path / "var")
    schema.upgrade(server.dsn())
    try:
        yield server
    finally:
        for process in _cluster(server.pid):
            process.send_signal(signal.SIGCONT)
        server.release()
        assert embedded.running(server.pgdata, ready=False) is None  # nothing left behind


def _cluster(pid: int) -> list[psutil.Process]:
    try:
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children()]
    except psutil.NoSuchProcess:
        return []


async def _insert(dsn: str, code_id: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO qr_codes (id, short_url, target_url) "
            "VALUES ($1::text, 'http://x/r/' || $1::text, $2)",
            code_id,
            f"https://example.org/{code_id}",
        )
    finally:
        await connection.close()


@pytest.mark.anyio
async def test_a_frozen_then_stopped_database(own_server: embedded.EmbeddedServer, tmp_path: Path) -> None:
    dsn = own_server.dsn()
    await _insert(dsn, "cached1234")
    child, base = start_redirect(dsn, REDIRECT_DB_TIMEOUT="0.5", REDIRECT_CACHE_TTL="0.2")
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/r/cached1234")).status_code == 302
            await asyncio.sleep(0.3)  # the entry is stale now: a lookup would go to the database

            # Frozen: every PostgreSQL process stopped where it stands (SIGSTOP).
            for process in _cluster(own_server.pid):
                process.send_signal(signal.SIGSTOP)
            for _ in range(5):
                started = time.monotonic()
                cached = await client.get("/r/cached1234")
                uncached = await client.get("/r/uncached12")
                assert time.monotonic() - started < 3.0  # nothing hangs
                assert cached.status_code == 302
                assert cached.headers["location"] == "https://example.org/cached1234"
                assert uncached.status_code == 503
                assert uncached.headers["retry-after"]
            health = await client.get("/health")
            assert health.status_code == 200
            assert health.json()["status"] == "degraded"

            for process in _cluster(own_server.pid):
                process.send_signal(signal.SIGCONT)
            await _heals(client, "/r/uncached12", 404)

            # Edited, then stopped outright before the edit was looked up: the previous target
            # is a better answer than a 503 for a printed code.
            notified = await _notifications(client)
            await _edit(dsn, "cached1234", "https://example.org/edited")
            deadline = time.monotonic() + 5
            while await _notifications(client) == notified:
                assert time.monotonic() < deadline, "the edit's notification did not come"
                await asyncio.sleep(0.05)
            own_server.stop()
            await asyncio.sleep(0.3)
            for _ in range(3):
                cached = await client.get("/r/cached1234")
                assert cached.status_code == 302
                assert cached.headers["location"] == "https://example.org/cached1234"
            assert (await client.get("/r/another12")).status_code == 503

            restarted = await asyncio.to_thread(embedded.start, tmp_path / "var")
            assert restarted.pid != own_server.pid  # the fixture's release stops this one too
            await _insert(restarted.dsn(), "another12")
            await _heals(client, "/r/another12", 302)
            assert (await client.get("/r/cached1234")).headers["location"] == "https://example.org/edited"
    finally:
        child.stop()


async def _edit(dsn: str, code_id: str, target: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("UPDATE qr_codes SET target_url = $2 WHERE id = $1", code_id, target)
    finally:
        await connection.close()


async def _notifications(client: httpx.AsyncClient) -> float:
    """The change notifications of one id the worker has received."""
    from tests.metrics_checks import parse, value

    return value(parse((await client.get("/metrics")).text), "qr_redirect_invalidations_total", kind="id")


async def _heals(client: httpx.AsyncClient, path: str, status: int) -> None:
    deadline = time.monotonic() + 15
    while (await client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path} did not heal"
        await asyncio.sleep(0.2)


@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_n_gets_then_a_stop_signal_leaves_exactly_n_scans(database_url: str, signum: int) -> None:
    await _insert(database_url, "counted123")
    child, base = start_redirect(database_url, SCAN_FLUSH_INTERVAL="30")  # only the stop can flush them
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            gets = 0
            for n in range(300):
                if n % 3 == 0:
                    assert (await client.head("/r/counted123")).status_code == 302
                else:
                    assert (await client.get("/r/counted123")).status_code == 302
                    gets += 1
        child.process.send_signal(signum)
        child.process.wait(timeout=30)
    finally:
        child.stop()
    assert child.exited() == 0
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM scans WHERE code_id = 'counted123'") == gets
        assert await connection.fetchval("SELECT total FROM scan_counts WHERE code_id = 'counted123'") == gets
    finally:
        await connection.close()


@pytest.mark.anyio
async def test_the_same_app_runs_under_hypercorn(database_url: str) -> None:
    await _insert(database_url, "hyper12345")
    port = free_port()
    environ = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    args = [str(Path(sys.executable).parent / "hypercorn"), "--bind", f"127.0.0.1:{port}"]
    child = spawn("hypercorn redirect", [*args, "services.redirect.app:app_from_env()"], env=environ)
    try:
        wait_ready(child, f"http://127.0.0.1:{port}/livez", timeout=30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            response = await client.get("/r/hyper12345")
            assert response.status_code == 302
            assert response.headers["location"] == "https://example.org/hyper12345"
    finally:
        child.stop()
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM scans WHERE code_id = 'hyper12345'") == 1
    finally:
        await connection.close()


@pytest.mark.anyio
async def test_several_workers_give_one_coherent_view_of_the_metrics(
    database_url: str, tmp_path: Path
) -> None:
    from tests.metrics_checks import parse, value

    await _insert(database_url, "workers123")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    child, base = start_redirect(database_url, workers=2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        # A new connection per request, so that the kernel spreads them over both workers.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=no_reuse) as client:
            for _ in range(200):
                assert (await client.get("/r/workers123")).status_code == 302
            await asyncio.sleep(1.5)  # every worker publishes within a second
            views = []
            for _ in range(6):  # each scrape reaches one worker or the other
                async with httpx.AsyncClient(
                    base_url=base, timeout=10
                ) as fresh:  # a new connection each time
                    samples = parse((await fresh.get("/metrics")).text)
                views.append(
                    (
                        value(samples, "qr_redirect_outcomes_total", outcome="hit")
                        + value(samples, "qr_redirect_outcomes_total", outcome="miss"),
                        value(samples, "qr_redirect_workers"),
                    )
                )
    finally:
        child.stop()
    assert views == [(200.0, 2.0)] * 6
    # Each worker's own file, read alone: both answered some of the 200.
    answered = []
    for counter_file in metrics_dir.glob("counter_*.db"):
        alone = tmp_path / counter_file.stem
        alone.mkdir()
        shutil.copy(counter_file, alone)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(alone))  # type: ignore[no-untyped-call]
        samples = parse(generate_latest(registry).decode())
        answered.append(value(samples, "qr_http_requests_total", method="GET", route="/r/{id}", status="302"))
    assert sorted(answered)[-2] > 0, answered
    assert sum(answered) == 200


async def _ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, user_agent: bytes
) -> int | str:
    """One GET on an open connection: the answer's status ("closed" if the server hung up)."""
    writer.write(b"GET %s HTTP/1.1\r\nHost: qr.test\r\nUser-Agent: %s\r\n\r\n" % (path.encode(), user_agent))
    try:
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    except (ConnectionError, asyncio.IncompleteReadError):
        return "closed"
    return int(head.split(b" ", 2)[1])


async def _flood(port: int, path: str, agents: Iterator[bytes], *, keep_alive: bool) -> dict[int | str, int]:
    """Send a GET per user agent; how many got each status."""
    statuses: dict[int | str, int] = {}
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for agent in agents:
        if connection is None:
            connection = await asyncio.open_connection("127.0.0.1", port)
        status = await _ask(*connection, path, agent)
        statuses[status] = statuses.get(status, 0) + 1
        if not keep_alive or status != 302:
            connection[1].close()
            connection = None
    if connection is not None:
        connection[1].close()
    return statuses


def _agents(count: int, size: int) -> Iterator[bytes]:
    """Distinct user agents of ``size`` bytes that read like a browser's (crawlerdetect takes tens of
    milliseconds over a long run of one letter: not what this test measures)."""
    for n in range(count):
        yield (b"Mozilla/5.0 (flood %d) " % n + b"AppleWebKit/605.1.15 Safari/604.1 " * (size // 34))[:size]


@pytest.mark.anyio
async def test_a_flood_of_huge_distinct_user_agents_is_refused_or_cut_and_leaves_the_worker_as_it_was(
    database_url: str,
) -> None:
    await _insert(database_url, "flooded12")
    child, base = start_redirect(database_url)
    port = int(base.rsplit(":", 1)[1])
    try:
        (worker,) = psutil.Process(child.process.pid).children()
        # Warm: the pools, the writer's statements, the classifier's patterns.
        assert await _flood(port, "/r/flooded12", _agents(300, 200), keep_alive=True) == {302: 300}
        await _written(database_url, 300)
        before = worker.memory_info().rss

        # 2,000 distinct 300 KiB agents: refused at the door (431), never stored.
        refused = await _flood(port, "/r/flooded12", _agents(2000, 300 * 1024), keep_alive=False)
        assert refused == {431: 2000}
        refused_grown = worker.memory_info().rss - before
        # 2,000 distinct agents just under the header limit: redirected, stored cut.
        served = await _flood(
            port, "/r/flooded12", _agents(2000, REDIRECT_MAX_HEADER_BYTES - 1024), keep_alive=True
        )
        assert served == {302: 2000}
        await _written(database_url, 2300)
        grown = worker.memory_info().rss - before
    finally:
        child.stop()
    assert refused_grown < 2 * 2**20, (
        f"2,000 refused requests: the worker grew by {refused_grown / 2**20:.1f} MiB"
    )
    assert grown < 8 * 2**20, f"and 2,000 cut agents: the worker grew by {grown / 2**20:.1f} MiB"
    connection = await asyncpg.connect(database_url)
    try:
        assert (
            await connection.fetchval("SELECT max(octet_length(agent)) FROM user_agents")
            == scans.MAX_USER_AGENT
        )
    finally:
        await connection.close()


async def _written(database_url: str, count: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + 60
        while await connection.fetchval("SELECT count(*) FROM scans") < count:
            assert time.monotonic() < deadline, "the scans were not written"
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
