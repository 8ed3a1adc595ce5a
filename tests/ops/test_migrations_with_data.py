"""Migrations on a database that holds data, as a rollout meets them.

Every step up and down keeps the rows it can keep; the redirect service's SQL runs at every revision
from the one that made its columns; two migrators queue on the advisory lock; and a migration stuck
behind a reader gives up after the lock timeout instead of stalling the reads queued behind it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy.exc
from alembic.script import ScriptDirectory

from services.ops import schema
from services.redirect import queries, rollups, scans, visitors
from services.redirect.answers import CodeAnswer
from services.redirect.scans import ScanRecorder
from shared.database import AdvisoryLock
from shared.urls import location_bytes

QR_MANAGE = str(Path(sys.executable).parent / "qr-manage")

# The first revision with every column the code at head reads or writes on the hot path.
LOOKUP_FROM = "0014"  # LOOKUP_TARGET reads rules (0012), kind, content and dynamic (0014)
SCANS_FROM = "0012"  # the scan writer keeps the rollups of 0007 and 0011, and each scan's rule (0012)
COUNTED_FROM = "0003"  # scan_counts exists (the writers of 0003 to 0006 upserted it as below)
COUNTS_BEFORE_0007 = """
INSERT INTO scan_counts (code_id, total, bots)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
ON CONFLICT (code_id) DO UPDATE
SET total = scan_counts.total + EXCLUDED.total, bots = scan_counts.bots + EXCLUDED.bots
"""
# 0005 adds a column to qr_codes: it needs an ACCESS EXCLUSIVE lock there, behind any open read.
BEFORE_LOCKING, LOCKING = "0004", "0005"

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
LOGO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # content only matters for its hash here
LOGO_SHA256 = hashlib.sha256(LOGO).hexdigest()


def revisions() -> list[str]:
    """Every revision, base first, in Alembic's own order."""
    script = ScriptDirectory(str(schema.MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.005)


# -- rows valid at each revision -------------------------------------------------------------------


def code(code_id: str, target_url: str, **columns: Any) -> dict[str, Any]:
    return {
        "id": code_id,
        "short_url": f"https://qr.example/r/{code_id}",
        "target_url": target_url,
        **columns,
    }


def scan(code_id: str, minute: int, user_agent: str = PHONE, bot: str | None = None) -> dict[str, Any]:
    return {
        "code_id": code_id,
        "scanned_at": T0 + timedelta(minutes=minute),
        "user_agent": user_agent,
        "referrer": "https://example.org/poster" if minute % 2 else None,
        "visitor_hash": hashlib.blake2b(f"{code_id}/{minute}".encode(), digest_size=16).digest(),
        "is_bot": bot is not None,
        "bot_reason": bot,
    }


async def insert(connection: asyncpg.Connection, table: str, *rows: dict[str, Any]) -> None:
    for row in rows:
        placeholders = ", ".join(f"${n}" for n in range(1, len(row) + 1))
        await connection.execute(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({placeholders})", *row.values()
        )


async def record_scans(connection: asyncpg.Connection, *rows: dict[str, Any], counted: bool) -> None:
    """Scans as the writer of that revision (0001 to 0006) leaves them: from 0003 on, with the
    running totals."""
    await insert(connection, "scans", *rows)
    if counted:
        codes = sorted({row["code_id"] for row in rows})
        totals = [sum(row["code_id"] == c for row in rows) for c in codes]
        bots = [sum(row["code_id"] == c and row["is_bot"] for row in rows) for c in codes]
        await connection.execute(COUNTS_BEFORE_0007, codes, totals, bots)


async def seed_0001(connection: asyncpg.Connection) -> None:
    await insert(
        connection,
        "qr_codes",
        code("menu-table4", "https://example.org/menu?table=4", title="Menu", tags=["food", "print"]),
        code("old_poster", "https://example.org/summer", redirect_status=301, enabled=False),
        code("Tombstoned", "https://example.org/gone", expires_at=T0, deleted_at=T0 + timedelta(days=1)),
    )
    await record_scans(
        connection,
        *(scan("menu-table4", minute) for minute in range(5)),
        scan("menu-table4", 5, "WhatsApp/2.23.20.0", bot="link-preview"),
        scan("old_poster", 6),
        counted=False,
    )


async def seed_0002(connection: asyncpg.Connection) -> None:
    await insert(
        connection,
        "qr_codes",
        code(
            "flyer-2026",
            "https://example.org/flyer",
            fallback_url="https://example.org/",
            forward_query=True,
            tags=["print"],
        ),
    )
    await insert(
        connection,
        "qr_code_changes",
        {
            "code_id": "flyer-2026",
            "action": "create",
            "changes": json.dumps({"target_url": {"old": None, "new": "https://example.org/flyer"}}),
            "client_address": ipaddress.ip_address("203.0.113.7"),
            "request_id": "req-0002",
            "token_name": "ci",
        },
    )
    await record_scans(connection, scan("flyer-2026", 10), scan("flyer-2026", 11), counted=False)


async def seed_0003(connection: asyncpg.Connection) -> None:
    await insert(connection, "qr_codes", code("card-0003", "https://example.org/card"))
    await insert(connection, "visitor_keys", {"day": date(2026, 11, 20), "key": bytes(range(32))})
    await record_scans(
        connection,
        scan("card-0003", 20),
        scan("menu-table4", 21, "curl/8.5.0", bot="http-client"),
        counted=True,
    )


async def seed_0004(connection: asyncpg.Connection) -> None:
    await insert(connection, "qr_codes", code("sticker-0004", "https://example.org/sticker"))
    await record_scans(connection, scan("sticker-0004", 30), scan("flyer-2026", 31), counted=True)


async def seed_0008(connection: asyncpg.Connection) -> None:
    await insert(connection, "qr_codes", code("bulk-0008", "https://example.org/bulk"))
    await insert(
        connection,
        "idempotency_keys",
        {"key": "batch-0008", "fingerprint": hashlib.sha256(b"[]").digest(), "status": 201, "body": b"{}"},
    )


async def seed_0009(connection: asyncpg.Connection) -> None:
    await insert(
        connection,
        "console_sign_outs",
        {"session_id": "signed-out-0009", "expires_at": T0 + timedelta(hours=12)},
    )


async def seed_0010(connection: asyncpg.Connection) -> None:
    await insert(
        connection,
        "admin_tokens",
        {"name": "printer-0010", "role": "editor", "tags": ["print"], "secret_hash": "h" * 64},
    )
    await insert(
        connection,
        "audit_log",
        {"actor": "printer-0010", "actor_kind": "token", "role": "editor", "action": "code.create"},
    )


async def seed_0006(connection: asyncpg.Connection) -> None:
    await insert(connection, "qr_codes", code("Case-0006", "https://example.org/case"))
    # Unique without regard to case from here on (there was no clash to keep).
    with pytest.raises(asyncpg.UniqueViolationError):
        async with connection.transaction():  # a savepoint: the seed's own transaction goes on
            await insert(connection, "qr_codes", code("CASE-0006", "https://example.org/other"))
    await record_scans(connection, scan("Case-0006", 50), counted=True)


async def seed_0005(connection: asyncpg.Connection) -> None:
    await insert(connection, "logos", {"sha256": LOGO_SHA256, "image": LOGO, "width": 64, "height": 64})
    await insert(
        connection, "qr_codes", code("logo-0005", "https://example.org/logo", logo_sha256=LOGO_SHA256)
    )
    await connection.execute("UPDATE qr_codes SET logo_sha256 = $1 WHERE id = 'menu-table4'", LOGO_SHA256)
    await record_scans(connection, scan("logo-0005", 40), counted=True)


async def seed_0007(connection: asyncpg.Connection) -> None:
    await insert(connection, "qr_codes", code("analytics-0007", "https://example.org/analytics"))
    await connection.execute("INSERT INTO scan_retention (raw_since) VALUES ($1)", T0 - timedelta(days=400))


async def seed_0011(connection: asyncpg.Connection) -> None:
    # A code's tags change: the trigger moves its past scans from "food" to "drinks".
    await connection.execute("UPDATE qr_codes SET tags = '{drinks,print}' WHERE id = 'menu-table4'")


async def write_0011(dsn: str) -> None:
    """Scans as the writer leaves them: through the writer itself (rows, agents, every rollup)."""
    recorder = ScanRecorder(dsn, trusted_proxies=(), flush_interval=60)
    await recorder.start()
    try:
        recorder.record("analytics-0007", PHONE.encode(), b"https://poster.example/p", "198.51.100.7", None)
        recorder.record("analytics-0007", b"Slackbot-LinkExpanding 1.0", None, "198.51.100.8", None)
        recorder.record("menu-table4", PHONE.encode(), None, "198.51.100.7", None)
    finally:
        await recorder.close()
    assert (recorder.written, recorder.dropped) == (3, 0)


async def seed_0012(connection: asyncpg.Connection) -> None:
    rules = [{"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"}]
    split = [
        {"target_url": "https://example.org/a", "weight": 1},
        {"target_url": "https://example.org/b", "weight": 1},
    ]
    await connection.execute(
        "UPDATE qr_codes SET rules = $1::jsonb, split = $2::jsonb WHERE id = 'analytics-0007'",
        json.dumps(rules),
        json.dumps(split),
    )


async def write_0012(dsn: str) -> None:
    """The scans of write_0011 (the writer at head needs the columns of 0012), and one a redirect
    rule served, as the writer records it (the rule in the row and the tallies)."""
    await write_0011(dsn)
    recorder = ScanRecorder(dsn, trusted_proxies=(), flush_interval=60)
    await recorder.start()
    try:
        recorder.record("analytics-0007", PHONE.encode(), None, "198.51.100.9", None, "rule 1")
    finally:
        await recorder.close()
    assert (recorder.written, recorder.dropped) == (1, 0)


async def seed_0013(connection: asyncpg.Connection) -> None:
    # A code is given a saved design.
    await connection.execute(
        """UPDATE qr_codes SET design = '{"modules": "dots", "frame": "label"}' WHERE id = 'menu-table4'"""
    )


async def seed_0014(connection: asyncpg.Connection) -> None:
    # A static Wi-Fi code (its content encoded, no target) and a dynamic contact.
    wifi = '{"ssid": "Café", "password": "croissant", "security": "WPA", "hidden": false}'
    await insert(connection, "qr_codes", code("wifi-0014", "", kind="wifi", content=wifi))
    contact = '{"name": "Zoë", "phones": ["+33 1 23 45 67 89"]}'
    await insert(connection, "qr_codes", code("card-0014", "", kind="vcard", content=contact, dynamic=True))


# Seeds that the writer at head makes, after the rows above, from the first revision it can write to.
WRITTEN = {SCANS_FROM: write_0012}


SEEDS = {
    "0001": seed_0001,
    "0002": seed_0002,
    "0003": seed_0003,
    "0004": seed_0004,
    "0005": seed_0005,
    "0006": seed_0006,
    "0007": seed_0007,
    "0008": seed_0008,
    "0009": seed_0009,
    "0010": seed_0010,
    "0011": seed_0011,
    "0012": seed_0012,
    "0013": seed_0013,
    "0014": seed_0014,
}


async def seed(dsn: str, revision: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await SEEDS[revision](connection)
    finally:
        await connection.close()
    if revision in WRITTEN:
        await WRITTEN[revision](dsn)


# -- what the database holds -----------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    columns: frozenset[str]
    rows: dict[Any, dict[str, Any]]  # primary key -> column -> value (no key: the row's place)
    keyed: bool = True  # False: a table without a primary key (scans, from 0007), compared as a bag


Snapshot = dict[str, Table]

# Tables (a partitioned one as one table, its partitions left out) with their primary key's columns.
TABLES = """
SELECT c.relname AS name,
       (SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i
        CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary) AS key
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'alembic_version'
"""
COLUMNS = (
    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1"
)


async def snapshot(dsn: str) -> Snapshot:
    connection = await asyncpg.connect(dsn)
    try:
        tables = {}
        for table in await connection.fetch(TABLES):
            columns = frozenset(row["column_name"] for row in await connection.fetch(COLUMNS, table["name"]))
            rows = [dict(row) for row in await connection.fetch(f"SELECT * FROM {table['name']}")]
            key = table["key"]
            if not key:
                tables[table["name"]] = Table(columns, dict(enumerate(rows)), keyed=False)
            elif len(key) == 1:
                tables[table["name"]] = Table(columns, {row[key[0]]: row for row in rows})
            else:
                tables[table["name"]] = Table(columns, {tuple(row[k] for k in key): row for row in rows})
        return tables
    finally:
        await connection.close()


def shape(tables: Snapshot) -> dict[str, frozenset[str]]:
    return {name: table.columns for name, table in tables.items()}


def assert_kept(before: Snapshot, after: Snapshot, step: str) -> None:
    """Every row of ``before`` is in ``after``, and no other, with the same values in every column of
    every table both have: only what the step dropped may be lost."""
    for name in sorted(before.keys() & after.keys()):
        columns = before[name].columns & after[name].columns
        if not (before[name].keyed and after[name].keyed):  # no key: the same rows, in any order
            old_bag = sorted(repr(sorted((c, row[c]) for c in columns)) for row in before[name].rows.values())
            new_bag = sorted(repr(sorted((c, row[c]) for c in columns)) for row in after[name].rows.values())
            assert new_bag == old_bag, f"{step}: rows of {name} changed"
            continue
        old = {key: {c: row[c] for c in columns} for key, row in before[name].rows.items()}
        new = {key: {c: row[c] for c in columns} for key, row in after[name].rows.items()}
        assert new == old, f"{step}: rows of {name} changed"


def as_before_0012(tables: Snapshot) -> Snapshot:
    """A 0012 database as the downgrade to 0011 leaves it: no tallies of redirect rules (0011's
    constraint on the tallies' dimensions knows none)."""
    tallies = tables["scan_tallies"]
    rows = {key: row for key, row in tallies.rows.items() if row["dimension"] != "rule"}
    return {**tables, "scan_tallies": Table(tallies.columns, rows, tallies.keyed)}


def as_before_0007(tables: Snapshot) -> Snapshot:
    """The scans of a 0007 database as the downgrade to 0006 writes them: the agent's text and bot
    reason back in the row (from user_agents, for scans the writer of 0007 made)."""
    agents = tables["user_agents"].rows
    rows = {}
    for n, row in tables["scans"].rows.items():
        agent = agents.get(row["agent_id"], {"agent": "", "bot_reason": None})
        rows[n] = {
            **row,
            "user_agent": row["user_agent"] if row["user_agent"] is not None else (agent["agent"] or None),
            "bot_reason": row["bot_reason"]
            if row["bot_reason"] is not None
            else (agent["bot_reason"] if row["is_bot"] else None),
        }
    return {**tables, "scans": Table(tables["scans"].columns, rows, keyed=False)}


def assert_tags_match_scans(tables: Snapshot, scan_rows: list[dict[str, Any]], step: str) -> None:
    """From 0011 on, the tags' rollups: per tag and day, the scans of the codes carrying it now."""
    tags = {row["id"]: set(row["tags"]) for row in tables["qr_codes"].rows.values()}
    expected: dict[tuple[str, date], tuple[int, int]] = {}
    for row in scan_rows:
        day = row["scanned_at"].astimezone(UTC).date()
        for tag in tags.get(row["code_id"], set()):
            total, bots = expected.get((tag, day), (0, 0))
            expected[tag, day] = (total + 1, bots + row["is_bot"])
    kept = {
        (row["tag"], row["day"]): (row["total"], row["bots"])
        for row in tables["scan_tag_days"].rows.values()
        if row["total"]
    }
    assert kept == expected, f"{step}: scan_tag_days disagree with scans"
    codes = {
        (row["tag"], row["day"]): row["codes"]
        for row in tables["scan_tag_code_days"].rows.values()
        if row["codes"]
    }
    assert sum(codes.values()) == sum(
        len(
            {
                (s["code_id"], s["scanned_at"].astimezone(UTC).date())
                for s in scan_rows
                if tag in tags.get(s["code_id"], ())
            }
        )
        for tag in {t for ts in tags.values() for t in ts}
    ), f"{step}: scan_tag_code_days count a code's day other than once per tag"


def assert_counts_match_scans(tables: Snapshot, step: str) -> None:
    """The running totals, and from 0007 on every rollup, say what the raw scans say."""
    if "scan_counts" not in tables:
        return
    scan_rows = list(tables["scans"].rows.values())
    expected: dict[Any, dict[str, Any]] = {}
    for row in scan_rows:
        counts = expected.setdefault(row["code_id"], {"code_id": row["code_id"], "total": 0, "bots": 0})
        counts["total"] += 1
        counts["bots"] += row["is_bot"]
    totals = {
        key: {"code_id": row["code_id"], "total": row["total"], "bots": row["bots"]}
        for key, row in tables["scan_counts"].rows.items()
    }
    assert totals == expected, f"{step}: scan_counts disagree with scans"
    if "scan_quarters" not in tables:
        return
    if "scan_tag_days" in tables:
        assert_tags_match_scans(tables, scan_rows, step)
    for rollup in ("scan_quarters", "scan_days"):
        for scope in ("", *expected):
            rows = [r for r in tables[rollup].rows.values() if r["code_id"] == scope]
            mine = [s for s in scan_rows if scope in ("", s["code_id"])]
            assert sum(r["total"] for r in rows) == len(mine), f"{step}: {rollup} of {scope!r}"
            assert sum(r["bots"] for r in rows) == sum(s["is_bot"] for s in mine), f"{step}: {rollup} bots"
    for scope in ("", *expected):
        people = [s for s in scan_rows if scope in ("", s["code_id"]) and not s["is_bot"]]
        by_day: dict[Any, set[Any]] = {}
        for s in people:
            by_day.setdefault(s["scanned_at"].astimezone(UTC).date(), set()).add(s["visitor_hash"])
        visitors = {
            r["day"]: r["visitors"] for r in tables["scan_days"].rows.values() if r["code_id"] == scope
        }
        assert {day: len(hashes) for day, hashes in by_day.items()} == {
            day: n for day, n in visitors.items() if n
        }, f"{step}: unique visitors of {scope!r}"


def test_every_step_up_and_down_keeps_the_data(empty_database_url: str) -> None:
    dsn = empty_database_url
    order = revisions()
    assert list(SEEDS) == order, "each revision inserts rows of its own: add the new one's to SEEDS"

    seeded: dict[str, Snapshot] = {}  # the database at each revision, after its rows went in
    latest: Snapshot = {}
    for revision in order:
        schema.upgrade(dsn, revision)
        assert schema.current_revision_sync(dsn) == revision
        upgraded = asyncio.run(snapshot(dsn))
        assert_kept(latest, upgraded, f"upgrade to {revision}")
        assert_counts_match_scans(upgraded, f"upgrade to {revision}")  # 0003 backfills them
        asyncio.run(seed(dsn, revision))
        latest = seeded[revision] = asyncio.run(snapshot(dsn))
        assert_counts_match_scans(latest, f"rows at {revision}")
    assert {name for name, table in latest.items() if not table.rows} == set(), "a table without rows"

    for revision in reversed(order[:-1]):
        schema.downgrade(dsn, revision)
        assert schema.current_revision_sync(dsn) == revision
        downgraded = asyncio.run(snapshot(dsn))
        assert shape(downgraded) == shape(seeded[revision]), f"downgrade to {revision}: tables, columns"
        expected = {"0006": as_before_0007, "0011": as_before_0012}.get(revision, dict)(latest)
        assert_kept(expected, downgraded, f"downgrade to {revision}")
        latest = downgraded

    schema.upgrade(dsn)
    assert schema.current_revision_sync(dsn) == order[-1]
    schema.check(dsn)
    final = asyncio.run(snapshot(dsn))
    assert_kept(latest, final, "upgrade back to head")
    # The scans survived the whole round trip, so 0003's backfill rebuilds exactly the totals at head.
    assert final["scan_counts"].rows == seeded[order[-1]]["scan_counts"].rows


# -- the code at head against every revision -------------------------------------------------------

OLD_CODE = "printed-0001"  # written by the first code version, read by every later one
OLD_TARGET = "https://example.org/printed?campaign=launch"


async def hot_path(dsn: str, revision: str, order: list[str]) -> tuple[int, int, int] | None:
    """Run the redirect service's SQL at ``revision``: the lookup, the ping and the scan writer.
    Returns (scans, total, bots) of the old code once the writer can run, else ``None``."""
    connection = await asyncpg.connect(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        if order.index(revision) >= order.index(LOOKUP_FROM):
            for statement in queries.ALL:
                await connection.prepare(statement)
            found = await queries.lookup_target(pool, OLD_CODE, timeout=5)
            expected = CodeAnswer(location=location_bytes(OLD_TARGET), status=301, code_id=OLD_CODE)
            assert found.target == expected, revision
            # Ids are found in any case (fast from 0006, which indexes lower(id)).
            assert (await queries.lookup_target(pool, OLD_CODE.upper(), timeout=5)).target == expected
            assert (await queries.lookup_target(pool, "no-such-code", timeout=5)).target is None
            await queries.ping(pool, timeout=5)
        else:
            with pytest.raises(asyncpg.UndefinedColumnError):
                await connection.prepare(queries.LOOKUP_TARGET)

        if order.index(revision) < order.index(SCANS_FROM):
            await connection.execute(rollups.STAGE)
            with pytest.raises((asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError)):
                await connection.prepare(rollups.WRITE)
            return None
        await connection.execute(rollups.STAGE)  # the scan writer's temporary table
        for statement in (*scans.ALL, *visitors.ALL):
            await connection.prepare(statement)
        existing = await connection.fetch(scans.EXISTING_CODES, [OLD_CODE, "no-such-code"])
        assert [row["id"] for row in existing] == [OLD_CODE]
        recorder = ScanRecorder(dsn, trusted_proxies=(), flush_interval=60)
        await recorder.start()
        try:
            recorder.record(OLD_CODE, PHONE.encode(), b"https://example.org/", "198.51.100.4", None)
            recorder.record(OLD_CODE, b"Slackbot-LinkExpanding 1.0", None, "198.51.100.5", None)
        finally:
            await recorder.close()  # flushes: the rows and every rollup in one statement
        assert (recorder.written, recorder.dropped) == (2, 0), revision
        counts = await connection.fetchrow("SELECT total, bots FROM scan_counts WHERE code_id = $1", OLD_CODE)
        written = await connection.fetchval("SELECT count(*) FROM scans WHERE code_id = $1", OLD_CODE)
        assert counts is not None
        return written, counts["total"], counts["bots"]
    finally:
        await pool.close()
        await connection.close()


async def seed_rows(dsn: str, table: str, *rows: dict[str, Any]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await insert(connection, table, *rows)
    finally:
        await connection.close()


def test_the_hot_path_runs_at_every_revision_that_has_its_columns(empty_database_url: str) -> None:
    dsn = empty_database_url
    order = revisions()
    results = {}
    for revision in order:
        schema.upgrade(dsn, revision)
        if revision == order[0]:
            asyncio.run(seed_rows(dsn, "qr_codes", code(OLD_CODE, OLD_TARGET, redirect_status=301)))
        results[revision] = asyncio.run(hot_path(dsn, revision, order))

    # Two scans (one of them a bot) per revision from SCANS_FROM on, every one kept and counted.
    expected: dict[str, tuple[int, int, int] | None] = {}
    for revision in order:
        written = order.index(revision) - order.index(SCANS_FROM) + 1
        expected[revision] = (2 * written, 2 * written, written) if written > 0 else None
    assert results == expected


# -- two migrators at once -------------------------------------------------------------------------


def advisory_lock_key() -> int:
    """migrations/env.py's key, the shared one (importing env.py would run a migration)."""
    assert "ADVISORY_LOCK_KEY = AdvisoryLock.MIGRATE" in (schema.MIGRATIONS_DIR / "env.py").read_text()
    return int(AdvisoryLock.MIGRATE)


# A bigint advisory key shows in pg_locks as its high half (classid) and low half (objid).
QUEUED_ON_ADVISORY_LOCK = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (classid::bigint << 32) | objid::bigint = $1
"""


async def two_migrators(dsn: str) -> list[tuple[int, str, str]]:
    key = advisory_lock_key()
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR")}
    environ.update(DATABASE_URL=dsn, LOG_LEVEL="INFO")  # INFO: Alembic logs each migration it runs
    holder = await asyncpg.connect(dsn)
    migrators: list[subprocess.Popen[str]] = []
    try:
        # Held here first, so that both are certainly running at once, both queued on the lock.
        await holder.execute("SELECT pg_advisory_lock($1)", key)
        migrators = [
            subprocess.Popen(
                [QR_MANAGE, "migrate"], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]

        async def both_queued() -> bool:
            ended = [m for m in migrators if m.poll() is not None]
            assert not ended, f"a migrator did not wait for the lock: {ended[0].communicate()}"
            return bool(await holder.fetchval(QUEUED_ON_ADVISORY_LOCK, key) == 2)

        await wait_until(both_queued, "both migrators to queue on the advisory lock")
        assert await holder.fetchval("SELECT to_regclass('public.alembic_version')") is None
        await holder.execute("SELECT pg_advisory_unlock($1)", key)
        results = []
        for migrator in migrators:
            out, err = await asyncio.to_thread(migrator.communicate, timeout=120)
            results.append((migrator.returncode, out, err))
        versions = await holder.fetch("SELECT version_num FROM alembic_version")
        assert [row["version_num"] for row in versions] == [schema.head_revision()]
        return results
    finally:
        for migrator in migrators:
            if migrator.poll() is None:
                migrator.kill()
                migrator.communicate()
        await holder.close()


def test_two_migrators_at_once_queue_and_migrate_once(empty_database_url: str) -> None:
    results = asyncio.run(two_migrators(empty_database_url))
    for returncode, out, err in results:
        assert returncode == 0, err
        assert out.splitlines()[-1] == f"schema at revision {schema.head_revision()}"
    # One ran every migration, the other found the schema at head and ran none.
    ran = sorted(err.count('"msg": "Running upgrade ') for _, _, err in results)  # logs go to stderr
    assert ran == [0, len(revisions())]
    schema.check(empty_database_url)


# -- a migration behind a reader -------------------------------------------------------------------

# A lookup as the redirect service makes it (the one at head reads columns of later revisions).
WAITING_FOR_QR_CODES = """
SELECT count(*) FROM pg_locks
WHERE relation = 'qr_codes'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted
"""


# A read of the code as the hot path made it at BEFORE_LOCKING (today's reads columns added later).
A_READ = "SELECT id, target_url, redirect_status, enabled FROM qr_codes WHERE lower(id) = lower($1)"


async def behind_a_reader(dsn: str) -> sqlalchemy.exc.DBAPIError:
    """Upgrade to LOCKING while a reader's transaction holds qr_codes; the upgrade's failure."""
    reader = await asyncpg.connect(dsn)
    later_reader = await asyncpg.connect(dsn)
    try:
        await later_reader.execute(
            "INSERT INTO qr_codes (id, short_url, target_url) VALUES ($1, $2, $3)",
            "busy-code",
            "https://qr.example/r/busy-code",
            "https://example.org/busy",
        )
        async with reader.transaction():
            # ACCESS SHARE on qr_codes until this transaction ends, as a slow read would hold it.
            assert await reader.fetchrow(A_READ, "busy-code") is not None
            migration = asyncio.ensure_future(asyncio.to_thread(schema.upgrade, dsn, LOCKING))

            async def migration_queued() -> bool:
                assert not migration.done(), "the migration ended before it was seen waiting for its lock"
                return bool(await later_reader.fetchval(WAITING_FOR_QR_CODES) == 1)

            await wait_until(migration_queued, "the migration to wait for its lock on qr_codes")
            # A read arriving now queues behind the migration's lock request: it goes on once the
            # migration gives up, after MIGRATION_LOCK_TIMEOUT. 4 s is well under the default
            # timeout (5 s): a migration that ignored the setting would keep this read waiting.
            try:
                row = await asyncio.wait_for(later_reader.fetchrow(A_READ, "busy-code"), 4.0)
            except TimeoutError:
                pytest.fail("a read stalled for 4 s behind the migration waiting for its lock")
            assert row is not None
            assert row["target_url"] == "https://example.org/busy"
            with pytest.raises(sqlalchemy.exc.DBAPIError) as failure:
                await migration
        return failure.value
    finally:
        await later_reader.close()
        await reader.close()


def test_a_migration_behind_a_reader_gives_up_after_the_lock_timeout(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = empty_database_url
    schema.upgrade(dsn, BEFORE_LOCKING)
    # migrations/env.py reads it on every run (Alembic executes env.py afresh for each command).
    monkeypatch.setenv("MIGRATION_LOCK_TIMEOUT", "500ms")

    failure = asyncio.run(behind_a_reader(dsn))
    assert getattr(failure.orig, "sqlstate", None) == "55P03", failure  # lock_not_available
    assert "lock timeout" in str(failure)
    # The whole migration rolled back, its new table with it; the revision is unchanged.
    assert schema.current_revision_sync(dsn) == BEFORE_LOCKING
    assert "logos" not in asyncio.run(snapshot(dsn))

    schema.upgrade(dsn, LOCKING)  # nobody in the way now
    assert schema.current_revision_sync(dsn) == LOCKING
    assert "logos" in asyncio.run(snapshot(dsn))
