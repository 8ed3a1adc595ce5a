"""Migrations against a real PostgreSQL: models and migrations agree, and up/down keep data."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic.util.exc import CommandError

from services.ops import schema

INSERT = "INSERT INTO qr_codes (id, short_url, target_url) VALUES ($1::text, 'http://x/r/' || $1::text, 'https://example.org/')"


def test_models_and_migrations_agree(database_url: str) -> None:
    schema.check(database_url)  # raises when autogenerate would find a difference


def test_head_is_single_and_current_after_upgrade(database_url: str) -> None:
    assert schema.current_revision_sync(database_url) == schema.head_revision()
    schema.upgrade(database_url)  # idempotent
    assert schema.current_revision_sync(database_url) == schema.head_revision()


async def _seed_and_count(dsn: str, seed: bool) -> tuple[int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        if seed:
            await connection.execute(INSERT, "seed123abc")
            await connection.execute(
                "INSERT INTO scans (code_id) SELECT 'seed123abc' FROM generate_series(1, 10)"
            )
        return (
            await connection.fetchval("SELECT count(*) FROM qr_codes"),
            await connection.fetchval("SELECT count(*) FROM scans"),
        )
    finally:
        await connection.close()


def test_upgrade_from_empty_and_downgrade_to_base(empty_database_url: str) -> None:
    assert schema.current_revision_sync(empty_database_url) is None
    schema.upgrade(empty_database_url)
    assert asyncio.run(_seed_and_count(empty_database_url, seed=True)) == (1, 10)
    schema.downgrade(empty_database_url, "base")
    assert schema.current_revision_sync(empty_database_url) is None
    schema.upgrade(empty_database_url)
    assert asyncio.run(_seed_and_count(empty_database_url, seed=False)) == (0, 0)


async def _notifications(dsn: str) -> list[str]:
    received: list[str] = []
    listener = await asyncpg.connect(dsn)
    writer = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("qr_changed", lambda *args: received.append(args[3]))
        async with writer.transaction():
            await writer.execute(INSERT, "note123abc")
            await asyncio.sleep(0.2)
            assert received == []  # nothing before commit
        await writer.execute("UPDATE qr_codes SET title = 't' WHERE id = 'note123abc'")
        await writer.execute("TRUNCATE qr_codes CASCADE")
        for _ in range(50):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.05)
        return received
    finally:
        await listener.close()
        await writer.close()


def test_every_write_notifies_the_redirect_processes_at_commit(database_url: str) -> None:
    assert asyncio.run(_notifications(database_url)) == ["note123abc", "note123abc", "*"]


def test_an_unknown_revision_is_an_error_that_changes_nothing(database_url: str) -> None:
    with pytest.raises(CommandError, match="nonsense"):
        schema.upgrade(database_url, "nonsense")
    assert schema.current_revision_sync(database_url) == schema.head_revision()
