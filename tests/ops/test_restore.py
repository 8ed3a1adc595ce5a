"""``qr-manage restore`` as an operator runs it: the contents come back exactly; an archive that is
not ours, not complete or not restorable is refused; and whatever goes wrong, the live database is
left as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.ops import backups, embedded
from shared.database import AdvisoryLock, database_name, with_database
from tests.conftest import lose_database
from tests.ops.test_cli import qr_manage


async def _execute(dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _fetch(dsn: str, query: str) -> list[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await connection.fetch(query)]
    finally:
        await connection.close()


def execute(dsn: str, *statements: str) -> None:
    asyncio.run(_execute(dsn, *statements))


def fetch(dsn: str, query: str) -> list[Any]:
    return asyncio.run(_fetch(dsn, query))


def add_codes(dsn: str, prefix: str, count: int, *, scans: int = 2) -> None:
    execute(
        dsn,
        f"""
        INSERT INTO qr_codes (id, short_url, target_url)
        SELECT '{prefix}' || n, 'http://localhost:8080/r/{prefix}' || n, 'https://example.org/{prefix}/' || n
        FROM generate_series(1, {count}) AS n
        """,
        f"""
        INSERT INTO scans (code_id, user_agent)
        SELECT '{prefix}' || n, 'test' FROM generate_series(1, {count}) AS n, generate_series(1, {scans})
        """,
    )


CODES = "SELECT id, target_url, enabled, deleted_at FROM qr_codes ORDER BY id"
SCANS = "SELECT code_id, scanned_at FROM scans ORDER BY scanned_at, code_id"


def databases(dsn: str) -> set[str]:
    return {name for (name,) in fetch(with_database(dsn, "postgres"), "SELECT datname FROM pg_database")}


def test_a_restore_brings_back_exactly_what_was_backed_up(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "BACKUP_DIR": str(tmp_path)}
    add_codes(database_url, "kept", 20)
    codes, scans = fetch(database_url, CODES), fetch(database_url, SCANS)
    archive = backups.take_backup(database_url, tmp_path)
    # Everything after the backup is undone by the restore.
    add_codes(database_url, "later", 5)
    execute(
        database_url,
        "UPDATE qr_codes SET target_url = 'https://example.org/changed' WHERE id = 'kept1'",
        "UPDATE qr_codes SET deleted_at = now() WHERE id = 'kept2'",
    )

    refused = qr_manage("restore", str(archive), **env)
    assert refused.returncode == 1
    assert "holds data" in refused.stderr
    assert "--yes" in refused.stderr
    assert len(fetch(database_url, CODES)) == 25  # untouched

    restored = qr_manage("restore", str(archive), "--yes", **env)
    assert restored.returncode == 0, restored.stderr
    assert fetch(database_url, CODES) == codes
    assert fetch(database_url, SCANS) == scans
    # The replaced contents were saved as an ordinary backup, so the restore can itself be undone.
    saved = [p for p in backups.list_backups(tmp_path) if p != archive]
    assert len(saved) == 1
    assert f"saved the replaced contents in {saved[0]}" in restored.stdout
    # Sequences continue after the restored rows: new scans do not collide.
    add_codes(database_url, "after", 3)
    assert len(fetch(database_url, SCANS)) == len(scans) + 6
    name = database_name(database_url)
    assert not {f"{name}_restoring", f"{name}_replaced"} & databases(database_url)

    undone = qr_manage("restore", str(saved[0]), "--yes", **env)
    assert undone.returncode == 0, undone.stderr
    assert {row[0] for row in fetch(database_url, CODES)} >= {"later1", "kept1"}


def test_restoring_into_a_lost_database_creates_it(database_url: str, tmp_path: Path) -> None:
    add_codes(database_url, "code", 3)
    codes = fetch(database_url, CODES)
    archive = backups.take_backup(database_url, tmp_path)
    lose_database(database_url)
    restored = qr_manage("restore", str(archive), DATABASE_URL=database_url, BACKUP_DIR=str(tmp_path))
    assert restored.returncode == 0, restored.stderr  # nothing to replace: no --yes needed
    assert fetch(database_url, CODES) == codes
    assert backups.list_backups(tmp_path) == [archive]  # nothing was saved: there was nothing


@pytest.fixture
def foreign_archive(pg_server: embedded.EmbeddedServer, tmp_path: Path) -> Path:
    """A perfectly good pg_dump archive of some other application's database."""
    from tests.conftest import create_database, drop_database

    name = create_database(pg_server, template=None)
    try:
        execute(
            pg_server.dsn(name),
            "CREATE TABLE invoices (id int PRIMARY KEY)",
            "INSERT INTO invoices VALUES (1)",
        )
        return backups.take_backup(pg_server.dsn(name), tmp_path / "foreign")
    finally:
        drop_database(pg_server, name)


def _truncated(tmp_path: Path, archive: Path, keep: float) -> Path:
    """The archive cut short, as a full disk or an interrupted copy leaves it."""
    data = archive.read_bytes()
    cut = tmp_path / f"cut-{keep}" / archive.name
    cut.parent.mkdir()
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp, good, foreign: tmp / "missing.dump", "no such file"),
        (lambda tmp, good, foreign: _write(tmp / "text.dump", b"SELECT 1;\n" * 100), "not a pg_dump archive"),
        (lambda tmp, good, foreign: _write(tmp / "empty.dump", b""), "not a pg_dump archive"),
        (
            lambda tmp, good, foreign: _write(tmp / "head.dump", good.read_bytes()[:40]),
            "is truncated",
        ),
        (lambda tmp, good, foreign: _truncated(tmp, good, 0.5), "is truncated"),
        (lambda tmp, good, foreign: _truncated(tmp, good, 0.97), "is truncated"),
        (lambda tmp, good, foreign: foreign, "not a backup of this service"),
    ],
    ids=["missing", "text", "empty", "header-only", "half", "tail-cut", "foreign"],
)
def test_bad_archives_are_refused_and_change_nothing(
    database_url: str, tmp_path: Path, foreign_archive: Path, make: Any, reason: str
) -> None:
    add_codes(database_url, "code", 50, scans=20)  # enough data that a cut falls inside the data blocks
    good = backups.take_backup(database_url, tmp_path / "good")
    execute(database_url, "UPDATE qr_codes SET target_url = 'https://example.org/now' WHERE id = 'code1'")
    before = fetch(database_url, CODES)
    result = qr_manage(
        "restore",
        str(make(tmp_path, good, foreign_archive)),
        "--yes",
        DATABASE_URL=database_url,
        BACKUP_DIR=str(tmp_path / "saved"),
    )
    assert result.returncode == 1
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert fetch(database_url, CODES) == before
    assert not (tmp_path / "saved").exists()  # refused before anything was done


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_restore_that_fails_midway_leaves_the_live_database_as_it_was(
    database_url: str, tmp_path: Path
) -> None:
    # An archive that checks out but cannot be restored: a row that breaks a foreign key, written
    # with the triggers that enforce it switched off. pg_restore adds the key after the data: it fails.
    execute(
        database_url,
        "SET session_replication_role = replica",
        "INSERT INTO qr_codes (id, short_url, target_url, logo_sha256) "
        f"VALUES ('broken', 'http://x/r/broken', 'https://example.org/', '{'ab' * 32}')",
    )
    archive = backups.take_backup(database_url, tmp_path / "bad")
    execute(database_url, "DELETE FROM qr_codes WHERE id = 'broken'")
    add_codes(database_url, "live", 4)
    before = fetch(database_url, CODES)
    result = qr_manage("restore", str(archive), "--yes", DATABASE_URL=database_url, BACKUP_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "pg_restore failed, nothing changed" in result.stderr
    assert "foreign key" in result.stderr.lower()
    assert fetch(database_url, CODES) == before
    assert f"{database_name(database_url)}_restoring" not in databases(database_url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["restore"], "name an ARCHIVE or say --newest"),
        (["restore", "a.dump", "--force"], "No such option"),
        (["restore", "a.dump", "--yes=no"], "does not take a value"),
    ],
)
def test_restore_usage_errors(args: list[str], message: str) -> None:
    result = qr_manage(*args, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert message in result.stderr


def test_an_interrupted_restore_is_undone_by_the_next_one(database_url: str, tmp_path: Path) -> None:
    add_codes(database_url, "live", 3)
    before = fetch(database_url, CODES)
    archive = backups.take_backup(database_url, tmp_path)
    name = database_name(database_url)
    admin = with_database(database_url, "postgres")
    # What a restore killed between its two renames leaves: the live database renamed away, closed.
    execute(
        admin,
        f"ALTER DATABASE {name} ALLOW_CONNECTIONS false",
        f"ALTER DATABASE {name} RENAME TO {name}_replaced",
        f"CREATE DATABASE {name}_restoring",
    )
    refused = qr_manage("restore", str(archive), DATABASE_URL=database_url, BACKUP_DIR=str(tmp_path))
    assert refused.returncode == 1
    assert "holds data" in refused.stderr  # the previous contents are back, and guarded again
    assert fetch(database_url, CODES) == before
    assert not {f"{name}_replaced", f"{name}_restoring"} & databases(database_url)


def test_a_leftover_beside_the_live_database_is_never_dropped_blindly(
    database_url: str, tmp_path: Path
) -> None:
    add_codes(database_url, "live", 3)
    archive = backups.take_backup(database_url, tmp_path)
    name = database_name(database_url)
    execute(with_database(database_url, "postgres"), f"CREATE DATABASE {name}_replaced")
    try:
        status = qr_manage("status", DATABASE_URL=database_url, BACKUP_DIR=str(tmp_path))
        assert status.returncode == 1
        assert f"database {name}_replaced is left from an interrupted restore" in status.stderr
        result = qr_manage(
            "restore", str(archive), "--yes", DATABASE_URL=database_url, BACKUP_DIR=str(tmp_path)
        )
        assert result.returncode == 1
        assert f"{name}_replaced" in result.stderr
        assert "drop the one you do not want" in result.stderr
        assert f"{name}_replaced" in databases(database_url)
    finally:
        execute(with_database(database_url, "postgres"), f"DROP DATABASE {name}_replaced")


def test_an_empty_schema_is_nothing_to_lose(database_url: str, tmp_path: Path) -> None:
    """A lost compose volume comes back as an empty, migrated database: no --yes is needed."""
    source = tmp_path / "source"
    add_codes(database_url, "code", 2)
    archive = backups.take_backup(database_url, source)
    codes = fetch(database_url, CODES)
    execute(database_url, "TRUNCATE qr_codes, scans, scan_counts, qr_code_changes CASCADE")
    result = qr_manage("restore", str(archive), DATABASE_URL=database_url, BACKUP_DIR=str(tmp_path / "saved"))
    assert result.returncode == 0, result.stderr
    assert fetch(database_url, CODES) == codes
    assert not (tmp_path / "saved").exists()  # nothing to save


def test_the_database_may_be_named_in_the_query_string(database_url: str, tmp_path: Path) -> None:
    add_codes(database_url, "code", 2)
    codes = fetch(database_url, CODES)
    archive = backups.take_backup(database_url, tmp_path)
    execute(database_url, "DELETE FROM scans", "DELETE FROM qr_codes")
    name = database_name(database_url)
    # postgresql://postgres@/postgres?host=...&dbname=qr_test_...: libpq connects to dbname.
    url = with_database(database_url, "postgres") + f"&dbname={name}"
    result = qr_manage("restore", str(archive), DATABASE_URL=url, BACKUP_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"into database {name} " in result.stdout
    assert fetch(database_url, CODES) == codes


def test_one_restore_at_a_time(database_url: str, tmp_path: Path) -> None:
    archive = backups.take_backup(database_url, tmp_path)

    async def while_locked() -> Any:
        holder = await asyncpg.connect(with_database(database_url, "postgres"))
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", AdvisoryLock.RESTORE)
            return await asyncio.to_thread(
                qr_manage,
                "restore",
                str(archive),
                "--yes",
                DATABASE_URL=database_url,
                BACKUP_DIR=str(tmp_path),
            )
        finally:
            await holder.close()

    result = asyncio.run(while_locked())
    assert result.returncode == 1
    assert "another restore is running" in result.stderr


def test_a_name_too_long_to_restore_beside_is_refused(database_url: str, tmp_path: Path) -> None:
    archive = backups.take_backup(database_url, tmp_path)
    url = with_database(database_url, "q" * 60)
    result = qr_manage("restore", str(archive), DATABASE_URL=url, BACKUP_DIR=str(tmp_path))
    assert result.returncode == 1
    assert "too long" in result.stderr


def test_the_redirect_processes_are_told_to_forget_everything(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the swap, a '*' notification on the restored database (a listener connected to it
    then, as the redirect service's reconnects, hears it)."""
    from services.ops import restore as restoring

    archive = backups.take_backup(database_url, tmp_path)
    heard: list[str] = []
    original = restoring._Restore.notify

    async def listening_notify(job: restoring._Restore) -> None:
        listener = await asyncpg.connect(job.dsn)
        try:
            await listener.add_listener(restoring.CHANGE_CHANNEL, lambda *args: heard.append(args[-1]))
            await original(job)
            for _ in range(50):
                if heard:
                    break
                await asyncio.sleep(0.02)
        finally:
            await listener.close()

    monkeypatch.setattr(restoring._Restore, "notify", listening_notify)
    restoring.restore(database_url, archive, tmp_path, replace=True)
    assert heard == ["*"]
