"""``qr-manage maintain``: VACUUM (ANALYZE) of the busy tables, while writers and readers go on, and
without queueing behind a migration's lock."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import asyncpg

from services.ops.maintenance import HOT_TABLES
from tests.ops.test_cli import qr_manage

STATS = "SELECT relname, last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = ANY($1::text[])"


async def _seed(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO qr_codes (id, short_url, target_url) "
            "SELECT 'code' || n, 'http://x/r/code' || n, 'https://example.org/' || n "
            "FROM generate_series(1, 200) n"
        )
        await connection.execute(
            "INSERT INTO scans (code_id) SELECT 'code' || (n % 200 + 1) FROM generate_series(1, 5000) n"
        )
        await connection.execute("DELETE FROM scans WHERE id % 2 = 0")  # dead rows to reclaim
    finally:
        await connection.close()


async def _stats(dsn: str) -> dict[str, tuple[object, object]]:
    connection = await asyncpg.connect(dsn)
    try:
        return {row[0]: (row[1], row[2]) for row in await connection.fetch(STATS, list(HOT_TABLES))}
    finally:
        await connection.close()


def test_maintain_vacuums_and_analyses_every_busy_table_while_writes_go_on(database_url: str) -> None:
    asyncio.run(_seed(database_url))
    stop = threading.Event()
    written: list[int] = []
    failures: list[BaseException] = []

    async def write_and_read() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                async with connection.transaction():
                    await connection.fetchval("SELECT count(*) FROM qr_codes")
                    await connection.execute("INSERT INTO scans (code_id) VALUES ('code1')")
                written.append(1)
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            await connection.close()

    writer = threading.Thread(target=lambda: asyncio.run(write_and_read()))
    writer.start()
    try:
        time.sleep(0.2)
        before = len(written)
        result = qr_manage("maintain", DATABASE_URL=database_url)
        during = len(written) - before
    finally:
        stop.set()
        writer.join(timeout=10)
    assert result.returncode == 0, result.stderr
    assert failures == []
    assert during > 0  # the writer was never held up for the whole run
    for table in HOT_TABLES:
        assert f"vacuumed and analysed {table} " in result.stdout
    stats = asyncio.run(_stats(database_url))
    assert set(stats) == set(HOT_TABLES)
    assert all(vacuumed is not None and analysed is not None for vacuumed, analysed in stats.values())


def test_maintain_passes_over_a_table_a_migration_holds(database_url: str) -> None:
    async def scenario() -> tuple[int, str, float]:
        holder = await asyncpg.connect(database_url)
        try:
            async with holder.transaction():
                await holder.execute("LOCK TABLE qr_code_changes IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                result = await asyncio.to_thread(qr_manage, "maintain", DATABASE_URL=database_url)
                return result.returncode, result.stdout + result.stderr, time.monotonic() - started
        finally:
            await holder.close()

    returncode, output, seconds = asyncio.run(scenario())
    assert returncode == 0, output
    assert "skipped qr_code_changes: another session holds it" in output
    assert "vacuumed and analysed scans " in output  # the others were done
    assert seconds < 10  # it did not wait for the lock (10 s lock_timeout)


def test_maintain_reports_an_unreachable_database_plainly(tmp_path: Path) -> None:
    result = qr_manage("maintain", DATABASE_URL=f"postgresql://qr@/qr?host={tmp_path}")
    assert result.returncode == 1
    assert "maintenance failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert qr_manage("maintain", "--full", DATABASE_URL="postgresql://qr@/qr").returncode == 2
