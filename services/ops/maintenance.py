"""``qr-manage maintain``: the scheduled upkeep of the database, safe while the services serve.

Now: ``VACUUM (ANALYZE)`` of the tables the services write all day, so their planner statistics
follow the data and dead rows are reclaimed between autovacuum's own rounds. This is also where
scan retention (deleting scans older than a configured age) will live when it comes.

A plain VACUUM takes a lock that readers and writers do not wait for; ``SKIP_LOCKED`` makes it pass
over a table that a migration holds rather than queue behind it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.ops.connections import connection

# The tables written on every scan or admin change, busiest first.
HOT_TABLES = ("scans", "scan_counts", "qr_codes", "qr_code_changes", "visitor_keys", "logos")


@dataclass(frozen=True)
class Step:
    table: str
    seconds: float
    dead_rows_before: int
    skipped: bool = False  # another session held the table (a migration, say): next run


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
            dead = await conn.fetchval(
                "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relname = $1", table
            )
            if dead is None:  # not in this schema revision
                continue
            notices.clear()
            started = time.perf_counter()
            await conn.execute(f"VACUUM (ANALYZE, SKIP_LOCKED) {table}")
            skipped = any(notice.startswith("skipping") for notice in notices)
            steps.append(Step(table, time.perf_counter() - started, int(dead), skipped))
        return steps
