"""``qr-manage maintain``: partitions of scans ahead, retention, VACUUM (ANALYZE) of the busy tables,
while writers and readers go on, and without queueing behind a migration's lock."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from services.ops import maintenance
from services.ops.maintenance import HOT_TABLES
from tests.ops.test_cli import qr_manage

# Partitions of scans count as scans (the partitioned table itself has no statistics of its own).
STATS = """
SELECT CASE WHEN relname ~ '^scans_' THEN 'scans' ELSE relname END, min(last_vacuum), min(last_analyze)
FROM pg_stat_user_tables WHERE relname = ANY($1::text[]) OR relname ~ '^scans_(\\d{4}_\\d{2}|default)$'
GROUP BY 1
"""


async def _seed(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO qr_codes (id, short_url, target_url) "
            "SELECT 'code' || n, 'http://x/r/code' || n, 'https://example.org/' || n "
            "FROM generate_series(1, 200) n"
        )
        await connection.execute(
            "INSERT INTO scans (code_id, scanned_at) "
            "SELECT 'code' || (n % 200 + 1), now() - n * interval '1 second' FROM generate_series(1, 5000) n"
        )
        await connection.execute(  # dead rows to reclaim
            "DELETE FROM scans WHERE extract(second FROM scanned_at)::int % 2 = 0"
        )
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


def _at(month: str) -> datetime:
    return datetime.fromisoformat(f"{month}-15T12:00:00+00:00")


async def _sql(dsn: str, statement: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(statement, *args)
    finally:
        await connection.close()


def test_partitions_are_made_ahead_filled_from_the_default_and_dropped_past_retention(
    database_url: str,
) -> None:
    partitions = "SELECT relname FROM pg_class WHERE relname ~ '^scans_[0-9]' ORDER BY relname"
    made = [row[0] for row in asyncio.run(_sql(database_url, partitions))]
    now = datetime.now(UTC)
    assert f"scans_{now:%Y_%m}" in made  # the migration made this month's and three ahead
    # A scan far ahead of every partition lands in the default one and is never refused...
    asyncio.run(
        _sql(database_url, "INSERT INTO scans (code_id, scanned_at) VALUES ('ahead1', $1)", _at("2031-03"))
    )
    assert asyncio.run(_sql(database_url, "SELECT count(*) FROM scans_default"))[0][0] == 1
    # ...and maintenance, when that month comes near, moves it into the month's own partition.
    upkeep = asyncio.run(maintenance.keep_partitions(database_url, retention_days=36_500, now=_at("2031-02")))
    assert "scans_2031_03" in upkeep.made
    assert upkeep.moved == 1
    assert asyncio.run(_sql(database_url, "SELECT count(*) FROM scans_default"))[0][0] == 0
    assert asyncio.run(_sql(database_url, "SELECT count(*) FROM scans_2031_03"))[0][0] == 1
    assert asyncio.run(_sql(database_url, "SELECT count(*) FROM scans WHERE code_id = 'ahead1'"))[0][0] == 1
    # Past the retention, whole months go, and raw_since says from when raw scans are kept.
    asyncio.run(
        _sql(database_url, "INSERT INTO scans (code_id, scanned_at) VALUES ('old1', $1)", _at(f"{now:%Y-%m}"))
    )
    later = now + timedelta(days=500)
    upkeep = asyncio.run(maintenance.keep_partitions(database_url, retention_days=400, now=later))
    assert f"scans_{now:%Y_%m}" in upkeep.dropped
    assert asyncio.run(_sql(database_url, "SELECT count(*) FROM scans WHERE code_id = 'old1'"))[0][0] == 0
    raw_since = asyncio.run(_sql(database_url, "SELECT raw_since FROM scan_retention"))[0][0]
    assert raw_since > now - timedelta(days=1)
    left = [row[0] for row in asyncio.run(_sql(database_url, partitions))]
    assert all(name >= f"scans_{later - timedelta(days=431):%Y_%m}" for name in left), left
    assert "scans_2031_03" in left  # what is ahead stays
    # A second run has nothing left to do.
    again = asyncio.run(maintenance.keep_partitions(database_url, retention_days=400, now=later))
    assert (again.made, again.dropped, again.moved) == ((), (), 0)


def test_retention_is_refused_below_a_month() -> None:
    result = qr_manage("maintain", SCAN_RETENTION_DAYS="7", DATABASE_URL="postgresql://qr@/qr")
    assert result.returncode == 2
    assert "SCAN_RETENTION_DAYS" in result.stderr


# -- what goes with the raw scans, and what expires ------------------------------------------------

OLD_DAY = datetime(2025, 3, 10, 12, tzinfo=UTC)  # past the default retention (400 days) from 2026-12 on


async def _scans_of_agents(dsn: str, now: datetime) -> dict[str, int]:
    """Scans through the writer's statement: agent 'old' only in March 2025 (the default partition
    takes them), 'both' then and now, 'new' only now. Their ids by name."""
    from services.redirect import rollups
    from services.redirect.rollups import Scans

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO qr_codes (id, short_url, target_url) VALUES ('code1', 'http://x/r/code1', 'https://e.org/')"
        )
        ids = {
            row["agent"]: row["id"]
            for row in await connection.fetch(
                "INSERT INTO user_agents (agent) VALUES ('old'), ('both'), ('new') RETURNING id, agent"
            )
        }

        def scans(agent: str, at: datetime, host: str) -> Scans:
            return Scans("code1", ids[agent], None, host, agent.encode(), None, None, None, [at.timestamp()])

        await rollups.write(
            connection, [scans("old", OLD_DAY, "old.example"), scans("both", OLD_DAY, "old.example")]
        )
        await rollups.write(connection, [scans("both", now, "new.example"), scans("new", now, "new.example")])
        return ids
    finally:
        await connection.close()


def test_retention_takes_the_tallies_of_the_days_dropped_and_the_agents_only_they_named(
    database_url: str,
) -> None:
    now = datetime.now(UTC)
    ids = asyncio.run(_scans_of_agents(database_url, now))
    tallies = "SELECT DISTINCT code_id, day FROM scan_tallies ORDER BY 1, 2"
    before = [tuple(row) for row in asyncio.run(_sql(database_url, tallies))]
    assert [day for _, day in before] == [OLD_DAY.date(), now.date()] * 2  # '' and code1

    result = qr_manage("maintain", DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    assert "dropped partition scans_2025_03" in result.stdout
    assert "forgot 6 tallies and 1 user agents of the raw scans dropped" in result.stdout

    after = [tuple(row) for row in asyncio.run(_sql(database_url, tallies))]
    assert after == [("", now.date()), ("code1", now.date())]
    agents = {row[0] for row in asyncio.run(_sql(database_url, "SELECT agent FROM user_agents"))}
    assert agents == {"both", "new"}  # 'old' was named by the dropped month only
    named = {row[0] for row in asyncio.run(_sql(database_url, "SELECT agent_id FROM scans"))}
    assert named == {ids["both"], ids["new"]}
    assert "forgot" not in qr_manage("maintain", DATABASE_URL=database_url).stdout  # nothing left to do


def test_idempotency_keys_go_after_their_hours_and_fresh_ones_stay(database_url: str) -> None:
    asyncio.run(
        _sql(
            database_url,
            "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) VALUES "
            "('old-key', '\\x00', 201, '\\x7b7d', now() - interval '24 hours 1 minute'), "
            "('fresh-key', '\\x00', 201, '\\x7b7d', now() - interval '23 hours 59 minutes')",
        )
    )
    result = qr_manage("maintain", DATABASE_URL=database_url)
    assert result.returncode == 0, result.stderr
    assert "forgot 1 idempotency keys past their hours" in result.stdout
    keys = [row[0] for row in asyncio.run(_sql(database_url, "SELECT key FROM idempotency_keys"))]
    assert keys == ["fresh-key"]
