"""``qr-manage maintain``: the scheduled upkeep of the database, safe while the services serve.

- **Partitions of scans, ahead:** one per month (UTC), made for this month and the next three; a
  scan no monthly partition takes lands in the default partition, and its rows are moved into their
  month when that partition is made.
- **Retention:** raw scans older than ``SCAN_RETENTION_DAYS`` go, a whole month's partition at a
  time (one that ended before the cutoff); ``scan_retention.raw_since`` then says from when raw scans
  are kept. The rollups stay, so series and totals do not change.
- **Visitor hashes of past days:** a day's unique visitors are counted once the day can gain no
  more scans; hashes of days before yesterday (UTC) are deleted.
- **Tallies and user agents, with the raw scans:** the top lists' daily tallies of the days before
  ``raw_since`` are deleted (code by code, each a short read of the primary key), and so are the
  user agents that only the dropped partitions named (an agent is stored once, whatever the number
  of its scans; the tallies kept name only agents of the raw scans kept).
- **Idempotency keys** of bulk requests, and the answers stored with them, once their 24 hours
  (``IDEMPOTENCY_HOURS``) are over.
- **VACUUM (ANALYZE)** of the tables the services write all day, so their planner statistics follow
  the data and dead rows are reclaimed between autovacuum's own rounds.

A plain VACUUM takes a lock that readers and writers do not wait for; ``SKIP_LOCKED`` makes it pass
over a table that a migration holds rather than queue behind it. Making or dropping a partition
takes a short lock on ``scans`` under a lock timeout: a writer in the middle of a batch is waited
for, never a long-running reader. The agents a partition names are read before it is dropped,
outside that lock; whether the partitions kept name them is one read of ``scans`` after it.

A redirect process remembers the ids of the agents it has seen (until it has seen 50,000): one that
saw an agent before its last scan left the retention, and sees it again, still names it by its old
id. Such scans keep their counts; the agent's text and families read as unknown.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from services.ops.connections import connection

# The tables written on every scan or admin change, busiest first (scans: all its partitions).
HOT_TABLES = (
    "scans",
    "scan_counts",
    "scan_quarters",
    "scan_days",
    "scan_months",
    "scan_day_visitors",
    "scan_tallies",
    "user_agents",
    "qr_codes",
    "qr_code_changes",
    "visitor_keys",
    "logos",
)
MONTHS_AHEAD = 3
DEFAULT_PARTITION = "scans_default"

PARTITIONS = """
SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'scans'::regclass
"""
DEFAULT_MONTHS = "SELECT DISTINCT date_trunc('month', scanned_at AT TIME ZONE 'UTC')::date FROM scans_default"
# The user agents a partition's scans name (read before the partition is dropped), and which of
# them the scans kept still name.
AGENTS_OF_PARTITION = 'SELECT DISTINCT agent_id FROM "{name}" WHERE agent_id IS NOT NULL'
STILL_NAMED = "SELECT DISTINCT agent_id FROM scans WHERE agent_id IN (SELECT unnest($1::int[]))"
FORGET_AGENTS = "DELETE FROM user_agents WHERE id = ANY($1::int[])"
RAW_SINCE = "SELECT raw_since FROM scan_retention"
OLDEST_TALLY = "SELECT min(day) FROM scan_tallies WHERE code_id = ''"  # every code's: as old as any
# The codes that have tallies, from the primary key's index: one short read per code, not the table.
TALLY_CODES = """
WITH RECURSIVE codes AS (
    (SELECT code_id FROM scan_tallies ORDER BY code_id LIMIT 1)
    UNION ALL
    SELECT (SELECT t.code_id FROM scan_tallies AS t WHERE t.code_id > c.code_id ORDER BY t.code_id LIMIT 1)
    FROM codes AS c WHERE c.code_id IS NOT NULL
)
SELECT code_id FROM codes WHERE code_id IS NOT NULL
"""
FORGET_TALLIES = "DELETE FROM scan_tallies WHERE code_id = ANY($1::text[]) AND day < $2"
TALLY_CODES_AT_ONCE = 500  # codes whose old tallies one statement (one transaction) deletes
EXPIRE_KEYS = "DELETE FROM idempotency_keys WHERE created_at < $1"
EXPIRE_AUDIT = "DELETE FROM audit_log WHERE at < $1"
DEAD_ROWS = """
SELECT coalesce(sum(s.n_dead_tup), 0) FROM pg_stat_user_tables s
WHERE s.relname = $1
   OR s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1))
"""


@dataclass(frozen=True)
class Step:
    table: str
    seconds: float
    dead_rows_before: int
    skipped: bool = False  # another session held the table (a migration, say): next run


@dataclass(frozen=True)
class Upkeep:
    """What a maintenance run did besides vacuuming."""

    made: tuple[str, ...] = ()  # partitions made
    moved: int = 0  # scans moved out of the default partition into their month
    dropped: tuple[str, ...] = ()  # partitions dropped by retention
    forgotten_visitors: int = 0  # visitor hashes of past days deleted
    forgotten_tallies: int = 0  # tallies of days before raw_since deleted
    forgotten_agents: int = 0  # user agents no scan kept names, deleted
    expired_keys: int = 0  # idempotency keys (and their answers) past their hours, deleted
    expired_audit: int = 0  # audit log entries past AUDIT_RETENTION_DAYS, deleted


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month + timedelta(days=32)).replace(day=1)


def partition_name(month: date) -> str:
    return f"scans_{month:%Y_%m}"


def _utc(month: date) -> str:
    return f"{month.isoformat()} 00:00:00+00"


async def _partitioned(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('public.scans')")
    )


async def keep_partitions(
    dsn: str, *, retention_days: int, audit_retention_days: int = 400, now: datetime | None = None
) -> Upkeep:
    """Make this month's partition of scans and the next MONTHS_AHEAD, move what the default
    partition holds of them into them, drop the partitions past retention with the tallies and the
    user agents only they named, forget old visitors, expired idempotency keys and audit entries
    older than ``audit_retention_days``."""
    now = now or datetime.now(UTC)
    settings = {"application_name": "qr-manage maintain", "lock_timeout": "10s", "statement_timeout": "0"}
    async with connection(dsn, server_settings=settings) as conn:
        if not await _partitioned(conn):  # a schema before 0007: nothing of this to do
            return Upkeep()
        existing = {row["name"] for row in await conn.fetch(PARTITIONS)}
        made, moved = [], 0
        months = set()
        month = month_start(now.date())
        for _ in range(MONTHS_AHEAD + 1):
            months.add(month)
            month = next_month(month)
        # Months the default partition holds scans of (backdated ones, a restore of old data, a
        # clock gone wrong): they get their partitions too, so that retention reaches them.
        months |= {row[0] for row in await conn.fetch(DEFAULT_MONTHS)}
        for month in sorted(months):
            name = partition_name(month)
            if name not in existing:
                moved += await make_partition(conn, month)
                made.append(name)
                existing.add(name)

        cutoff = now - timedelta(days=retention_days)
        dropped = []
        named: set[int] = set()  # agents the dropped partitions named
        for name in sorted(existing):
            if name == DEFAULT_PARTITION:
                continue
            start = datetime.strptime(name.removeprefix("scans_"), "%Y_%m").replace(tzinfo=UTC)
            end = datetime.combine(next_month(start.date()), datetime.min.time(), UTC)
            if end <= cutoff:
                named |= {row[0] for row in await conn.fetch(AGENTS_OF_PARTITION.format(name=name))}
                async with conn.transaction():
                    # Dropped from the parent first: readers of scans never see half a drop.
                    await conn.execute(f'ALTER TABLE scans DETACH PARTITION "{name}"')
                    await conn.execute(f'DROP TABLE "{name}"')
                    await conn.execute(
                        "INSERT INTO scan_retention (id, raw_since) VALUES (true, $1) "
                        "ON CONFLICT (id) DO UPDATE SET raw_since = greatest(scan_retention.raw_since, $1)",
                        end,
                    )
                dropped.append(name)
        yesterday = (now - timedelta(days=1)).date()
        forgotten = await conn.execute("DELETE FROM scan_day_visitors WHERE day < $1", yesterday)
        return Upkeep(
            tuple(made),
            moved,
            tuple(dropped),
            _count(forgotten),
            forgotten_tallies=await forget_tallies(conn),
            forgotten_agents=await forget_agents(conn, named),
            expired_keys=await expire_keys(conn, now),
            expired_audit=await expire_audit(conn, now - timedelta(days=audit_retention_days)),
        )


def _count(status: str) -> int:
    """The rows a command's status (``DELETE 12``) says it touched."""
    return int(status.split()[-1])


async def forget_tallies(conn: asyncpg.Connection) -> int:
    """Delete the tallies of the days before ``raw_since``: the top lists cover what the raw scans
    do. Code by code, every code's ('') last, so that an interrupted run is finished by the next."""
    raw_since = await conn.fetchval(RAW_SINCE)
    oldest = await conn.fetchval(OLDEST_TALLY)
    if raw_since is None or oldest is None or oldest >= raw_since.astimezone(UTC).date():
        return 0
    first_kept = raw_since.astimezone(UTC).date()  # a day raw scans only partly cover is kept
    codes = sorted((row[0] for row in await conn.fetch(TALLY_CODES)), key=lambda code: code == "")
    forgotten = 0
    for at in range(0, len(codes), TALLY_CODES_AT_ONCE):
        forgotten += _count(
            await conn.execute(FORGET_TALLIES, codes[at : at + TALLY_CODES_AT_ONCE], first_kept)
        )
    return forgotten


async def forget_agents(conn: asyncpg.Connection, named: set[int]) -> int:
    """Delete the user agents of ``named`` (those the dropped partitions named) that no scan kept
    names. A tally kept names only agents of the scans kept: its day's scans are kept too."""
    if not named:
        return 0
    still = {row[0] for row in await conn.fetch(STILL_NAMED, sorted(named))}
    return _count(await conn.execute(FORGET_AGENTS, sorted(named - still)))


async def expire_keys(conn: asyncpg.Connection, now: datetime) -> int:
    """Delete the idempotency keys, and the answers kept with them, older than their hours (a key
    in use is in a transaction not yet committed: never seen here)."""
    from services.management.limits import IDEMPOTENCY_HOURS  # the bulk API's (limits imports nothing)

    if await conn.fetchval("SELECT to_regclass('public.idempotency_keys')") is None:
        return 0  # a schema before 0008
    return _count(await conn.execute(EXPIRE_KEYS, now - timedelta(hours=IDEMPOTENCY_HOURS)))


async def expire_audit(conn: asyncpg.Connection, cutoff: datetime) -> int:
    """Delete the audit log's entries from before ``cutoff``."""
    if await conn.fetchval("SELECT to_regclass('public.audit_log')") is None:
        return 0  # a schema before 0010
    return _count(await conn.execute(EXPIRE_AUDIT, cutoff))


async def make_partition(conn: asyncpg.Connection, month: date) -> int:
    """Make ``month``'s partition, with the rows the default partition holds of it; how many moved.

    All in one transaction: the new partition is filled while detached, the rows leave the default
    partition, and it is attached (PostgreSQL checks the default partition holds none of its range).
    """
    name, start, end = partition_name(month), _utc(month), _utc(next_month(month))
    async with conn.transaction():
        # No writer adds to the default partition meanwhile (it would then hold rows of the range).
        await conn.execute(f'LOCK TABLE "{DEFAULT_PARTITION}" IN EXCLUSIVE MODE')
        await conn.execute(f'CREATE TABLE "{name}" (LIKE scans INCLUDING DEFAULTS)')
        moved = await conn.execute(
            f'WITH gone AS (DELETE FROM "{DEFAULT_PARTITION}" WHERE scanned_at >= $1 AND scanned_at < $2 '  # noqa: S608 - our own names
            f'RETURNING *) INSERT INTO "{name}" SELECT * FROM gone',
            datetime.fromisoformat(start),
            datetime.fromisoformat(end),
        )
        await conn.execute(
            f"ALTER TABLE scans ATTACH PARTITION \"{name}\" FOR VALUES FROM ('{start}') TO ('{end}')"
        )
    return int(moved.split()[-1])


async def maintain(dsn: str) -> list[Step]:
    settings = {
        "application_name": "qr-manage maintain",
        "lock_timeout": "10s",
        # No statement timeout a role may carry: a VACUUM of a large table takes what it takes.
        "statement_timeout": "0",
    }
    async with connection(dsn, server_settings=settings) as conn:
        notices: list[str] = []
        conn.add_log_listener(lambda _conn, message: notices.append(str(message)))
        steps = []
        for table in HOT_TABLES:
            if await conn.fetchval("SELECT to_regclass($1)", f"public.{table}") is None:
                continue  # not in this schema revision
            dead = await conn.fetchval(DEAD_ROWS, table)
            notices.clear()
            started = time.perf_counter()
            await conn.execute(f"VACUUM (ANALYZE, SKIP_LOCKED) {table}")
            skipped = any(notice.startswith("skipping") for notice in notices)
            steps.append(Step(table, time.perf_counter() - started, int(dead), skipped))
        return steps
