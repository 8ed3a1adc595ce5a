from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg
import pytest

from services.ops import backups, embedded


async def _seed(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO qr_codes (id, short_url, target_url) VALUES ($1::text, 'http://x/r/' || $1::text, 'https://example.org/')",
            "back123abc",
        )
    finally:
        await connection.close()


def test_a_backup_is_a_checked_archive_with_a_sortable_name(database_url: str, tmp_path: Path) -> None:
    asyncio.run(_seed(database_url))
    first = backups.take_backup(database_url, tmp_path)
    second = backups.take_backup(database_url, tmp_path)
    assert backups.list_backups(tmp_path) == [first, second]
    assert not list(tmp_path.glob("*.partial"))
    listing = subprocess.run(
        [str(embedded.bin_dir() / "pg_restore"), "--list", str(first)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE DATA public qr_codes" in listing


def test_an_archive_is_readable_by_its_owner_alone_whatever_the_umask(
    database_url: str, tmp_path: Path
) -> None:
    """A dump holds every code and scan: 0600, even under a umask that would share it."""
    import os

    previous = os.umask(0o000)
    try:
        archive = backups.take_backup(database_url, tmp_path)
    finally:
        os.umask(previous)
    assert archive.stat().st_mode & 0o777 == 0o600


def test_a_failed_dump_leaves_nothing_that_looks_like_a_backup(
    pg_server: embedded.EmbeddedServer, tmp_path: Path
) -> None:
    with pytest.raises(backups.BackupError, match="pg_dump failed"):
        backups.take_backup(pg_server.dsn("no_such_database"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_holds_data(database_url: str, empty_database_url: str) -> None:
    assert backups.holds_data_sync(database_url)
    assert not backups.holds_data_sync(empty_database_url)
