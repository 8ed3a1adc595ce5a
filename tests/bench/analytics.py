"""Scan statistics at scale: 10 million scans over 10,000 codes over 400 days, and the answers a
user asks for most (one code's daily series over 90 days, its hourly series over 7 days, the
summary over every code), each beside the same question counted from raw scans with SQL.

The generator writes what the scan writer would have written: raw scans month by month in time
order (as they arrive), and the rollups counted from them with SQL (quarter hours, UTC days with
their unique visitors, the top lists' tallies, running totals; per code and for every code). Scans
fall on codes unevenly (code n of N gets a share like 1/sqrt(n)), so there is one busy code (about
1% of all scans) and a long tail; a "typical" code is the median one.

``BENCH_SCANS`` (default 10,000,000) scales it down for a quick look; ``BENCH_CODES`` (default
10,000) spreads the scans over more codes (``make bench-analytics-100k``: 100,000), which the
answers over every code must not feel: they read the rollups per tag, never a row per code.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import random
import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import asyncpg
import httpx

from services.ops import maintenance
from services.ops.schema import MIGRATIONS_DIR
from services.redirect import bots
from shared import ids
from shared.database import asyncpg_dsn
from tests.bench.report import Report, percentiles

SCANS = int(os.environ.get("BENCH_SCANS", "10000000"))
CODES = int(os.environ.get("BENCH_CODES", "10000"))
DAYS = 400
REQUESTS = 50  # per question
BASELINE_RUNS = 5
TAGS = ["menu", "poster", "flyer", "table", "wine", "event", "museum", "map", "bus", "park"]
AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; 23090RA98G) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.6723.107 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "curl/8.5.0",
    "",
]
COUNTRIES = ["FR", "FR", "FR", "DE", "DE", "US", "GB", "ES", "IT", "NL", "BE", "CH"]  # then none
REFERRERS = ["https://www.instagram.com/", "https://t.co/x1", "https://www.google.com/", "android-app://m.x"]

# One month of raw scans, in time order: code n with a weight like 1/sqrt(n), agents evenly, a few
# dozen visitors per code and day (some come back), a country for most, a referrer for a few.
RAW_MONTH = """
INSERT INTO scans (code_id, scanned_at, agent_id, referrer, visitor_hash, is_bot, country, city)
SELECT c.id, g.at, a.id, (CAST($6 AS text[]))[g.r],
       substring(sha256(convert_to(c.id || ':' || (g.at AT TIME ZONE 'UTC')::date || ':' || g.v, 'UTF8'))
                 FROM 1 FOR 16),
       a.bot_reason IS NOT NULL, (CAST($5 AS text[]))[g.k], NULL
FROM (
    SELECT floor($1::int * random() ^ 2)::int AS n,
           $2::timestamptz + random() * ($3::timestamptz - $2::timestamptz) AS at,
           1 + floor(random() * $4::int)::int AS a,
           1 + floor(random() * 20)::int AS k,
           1 + floor(random() * 40)::int AS r,
           floor(random() ^ 2 * 40)::int AS v
    FROM generate_series(1, $7::int)
) AS g
JOIN bench_codes c ON c.n = g.n
JOIN bench_agents a ON a.k = g.a
ORDER BY g.at
"""
QUARTERS = """
INSERT INTO scan_quarters (code_id, quarter, total, bots)
SELECT coalesce(code_id, ''), quarter, count(*), count(*) FILTER (WHERE is_bot)
FROM (SELECT code_id, date_bin('15 minutes', scanned_at, TIMESTAMPTZ '2000-01-01 00:00+00') AS quarter, is_bot
      FROM scans WHERE scanned_at >= $1 AND scanned_at < $2) AS s
GROUP BY GROUPING SETS ((code_id, quarter), (quarter))
"""
DAYS_ROLLUP = """
INSERT INTO scan_days (code_id, day, total, bots, visitors)
SELECT coalesce(code_id, ''), (scanned_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE is_bot), count(DISTINCT visitor_hash) FILTER (WHERE NOT is_bot)
FROM scans WHERE scanned_at >= $1 AND scanned_at < $2
GROUP BY GROUPING SETS (
    (code_id, (scanned_at AT TIME ZONE 'UTC')::date), ((scanned_at AT TIME ZONE 'UTC')::date)
)
"""
TALLIES = """
INSERT INTO scan_tallies (code_id, day, dimension, value, count)
SELECT coalesce(code_id, ''), day, dimension, value, sum(n) FROM (
    SELECT s.code_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day, d.dimension, d.value, 1 AS n
    FROM scans s JOIN user_agents ua ON ua.id = s.agent_id CROSS JOIN LATERAL (VALUES
        ('bot_reason', ua.bot_reason),
        ('agent', CASE WHEN NOT s.is_bot THEN s.agent_id::text END),
        ('country', CASE WHEN NOT s.is_bot THEN s.country END),
        ('referrer', CASE WHEN NOT s.is_bot THEN
            lower(substring(s.referrer from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:@]+)')) END)
    ) AS d(dimension, value)
    WHERE s.scanned_at >= $1 AND s.scanned_at < $2 AND d.value IS NOT NULL
) AS t
GROUP BY GROUPING SETS ((code_id, day, dimension, value), (day, dimension, value))
"""
MONTHS = """
INSERT INTO scan_months (code_id, month, total, bots)
SELECT code_id, date_trunc('month', day)::date, sum(total), sum(bots) FROM scan_days
WHERE day >= ($1::timestamptz AT TIME ZONE 'UTC')::date
  AND day <= (($2::timestamptz - interval '1 microsecond') AT TIME ZONE 'UTC')::date
GROUP BY 1, 2
ON CONFLICT (code_id, month) DO UPDATE SET
    total = scan_months.total + EXCLUDED.total, bots = scan_months.bots + EXCLUDED.bots
"""
COUNTS = """
INSERT INTO scan_counts (code_id, total, bots, first_scan_at, last_scan_at)
SELECT code_id, count(*), count(*) FILTER (WHERE is_bot), min(scanned_at), max(scanned_at)
FROM scans WHERE scanned_at >= $1 AND scanned_at < $2 GROUP BY code_id
ON CONFLICT (code_id) DO UPDATE SET
    total = scan_counts.total + EXCLUDED.total, bots = scan_counts.bots + EXCLUDED.bots,
    first_scan_at = least(scan_counts.first_scan_at, EXCLUDED.first_scan_at),
    last_scan_at = greatest(scan_counts.last_scan_at, EXCLUDED.last_scan_at)
"""


def _migration(pattern: str) -> ModuleType:
    """A migration's module, for the SQL it runs (its file name starts with a date, not a name)."""
    (path,) = (MIGRATIONS_DIR / "versions").glob(pattern)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The tags' rollups from the codes' days: what migration 0011 backfills (and the writer keeps).
TAG_ROLLUPS = _migration("*_0011_tag_rollups.py")
ROLLUP_TABLES = (
    "scan_quarters",
    "scan_days",
    "scan_months",
    "scan_tallies",
    "scan_tag_days",
    "scan_tag_months",
    "scan_tag_code_days",
    "scan_tag_code_months",
)
# What a service without rollups runs: the question counted from raw scans.
RAW_DAILY = """
SELECT date_trunc('day', scanned_at, 'UTC') AS day, count(*), count(*) FILTER (WHERE is_bot),
       count(DISTINCT visitor_hash) FILTER (WHERE NOT is_bot)
FROM scans WHERE ($1 = '' OR code_id = $1) AND scanned_at >= $2 AND scanned_at < $3 GROUP BY 1
"""
RAW_HOURLY = RAW_DAILY.replace("'day'", "'hour'")
RAW_MONTHLY = RAW_DAILY.replace("'day'", "'month'")


def _months(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at the first of each month (UTC)."""
    cuts, month = [start], maintenance.next_month(start.date().replace(day=1))
    while (cut := datetime.combine(month, datetime.min.time(), UTC)) < end:
        cuts.append(cut)
        month = maintenance.next_month(month)
    cuts.append(end)
    return list(itertools.pairwise(cuts))


async def generate(dsn: str, now: datetime) -> dict[str, Any]:
    """Scans, rollups and codes as described above; the busiest and the median code's ids."""
    rng = random.Random(15)
    start = now - timedelta(days=DAYS)
    conn = await asyncpg.connect(
        asyncpg_dsn(dsn),
        server_settings={"synchronous_commit": "off", "work_mem": "256MB", "statement_timeout": "0"},
    )
    try:
        await conn.execute(
            "TRUNCATE scans, scan_quarters, scan_days, scan_months, scan_day_visitors, scan_tallies, "
            "scan_counts, scan_tag_days, scan_tag_months, scan_tag_code_days, scan_tag_code_months, scan_span"
        )
        code_ids = [ids.new_id() for _ in range(CODES)]
        await conn.copy_records_to_table(
            "qr_codes",
            records=[
                (
                    code,
                    f"http://localhost/r/{code}",
                    f"https://example.org/a/{n}",
                    f"stats {n}",
                    [rng.choice(TAGS)],
                )
                for n, code in enumerate(code_ids)
            ],
            columns=["id", "short_url", "target_url", "title", "tags"],
        )
        await conn.execute("CREATE TEMP TABLE bench_codes (n int PRIMARY KEY, id text)")
        await conn.copy_records_to_table("bench_codes", records=list(enumerate(code_ids)))
        await conn.execute(
            "INSERT INTO user_agents (agent, bot_reason) SELECT * FROM unnest($1::text[], $2::text[]) "
            "ON CONFLICT (agent) DO NOTHING",
            AGENTS,
            [bots.classify_fully(agent) for agent in AGENTS],
        )
        await conn.execute(
            "CREATE TEMP TABLE bench_agents AS SELECT row_number() OVER (ORDER BY id)::int AS k, id, "
            "bot_reason FROM user_agents WHERE agent = ANY($1::text[])",
            AGENTS,
        )
        for month_start, month_end in _months(start, now):
            name = maintenance.partition_name(month_start.date().replace(day=1))
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                await maintenance.make_partition(conn, month_start.date().replace(day=1))
            share = round(SCANS * (month_end - month_start) / (now - start))
            await conn.execute(
                RAW_MONTH, CODES, month_start, month_end, len(AGENTS), COUNTRIES, REFERRERS, share
            )
            for statement in (QUARTERS, DAYS_ROLLUP, TALLIES, MONTHS, COUNTS):
                await conn.execute(statement, month_start, month_end)
        # The tags' rollups from the codes' days, by the migration's own backfill.
        async with conn.transaction():
            await conn.execute(TAG_ROLLUPS.BACKFILL_SHIFTED)
            for statement in TAG_ROLLUPS.BACKFILL:
                await conn.execute(statement)
        # As qr-manage maintain leaves them (every six hours): statistics, and the visibility map
        # that lets the day rollups be read from their index alone.
        await conn.execute("VACUUM (ANALYZE)")
        busiest = await conn.fetchval("SELECT code_id FROM scan_counts ORDER BY total DESC LIMIT 1")
        median = await conn.fetchval(
            "SELECT code_id FROM scan_counts ORDER BY total DESC OFFSET $1 LIMIT 1", CODES // 2
        )
        sizes = await conn.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class "
            "WHERE relname = ANY($1::text[]) ORDER BY relname",
            ROLLUP_TABLES,
        )
        totals = {
            code: await conn.fetchval("SELECT total FROM scan_counts WHERE code_id = $1", code)
            for code in (busiest, median)
        }
        return {"busiest": busiest, "median": median, "totals": totals, "sizes": {r[0]: r[1] for r in sizes}}
    finally:
        await conn.close()


async def _timed(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> list[float]:
    for _ in range(3):  # warm up (the first parses the user agents once)
        assert (await client.get(path, params=params)).status_code == 200
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = await client.get(path, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return samples


async def _raw(dsn: str, query: str, *args: Any) -> list[float]:
    conn = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        samples = []
        for _ in range(BASELINE_RUNS):
            started = time.perf_counter()
            await conn.fetch(query, *args)
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        await conn.close()


async def run(stack: Any, report: Report) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.monotonic()
    facts = await generate(stack.dsn, now)
    report.note(
        f"analytics data: {SCANS:,} scans over {CODES:,} codes over {DAYS} days, generated in "
        f"{time.monotonic() - started:.0f} s; busiest code {facts['totals'][facts['busiest']]:,} scans, "
        f"median {facts['totals'][facts['median']]:,}; rollups "
        + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in facts["sizes"].items())
    )
    day90 = {"from": (now - timedelta(days=90)).isoformat(), "to": now.isoformat(), "interval": "day"}
    hour7 = {"from": (now - timedelta(days=7)).isoformat(), "to": now.isoformat(), "interval": "hour"}
    day30 = {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat(), "interval": "day"}
    base = f"http://127.0.0.1:{stack.settings.management_port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for label, code in (("busiest", facts["busiest"]), ("median", facts["median"])):
            for what, params, raw_query, days in (
                ("90-day daily", day90, RAW_DAILY, 90),
                ("7-day hourly", hour7, RAW_HOURLY, 7),
            ):
                baseline = report.add(
                    "analytics",
                    f"raw SQL count, {label} code, {what}",
                    **_p50(await _raw(stack.dsn, raw_query, code, now - timedelta(days=days), now)),
                )
                row = report.add(
                    "analytics",
                    f"GET /api/v1/qr/{{id}}/scans, {label} code, {what}",
                    **_p50(await _timed(client, f"/api/v1/qr/{code}/scans", params)),
                )
                report.ratio(row, baseline)
        baseline = report.add(
            "analytics",
            "raw SQL count, every code, 30-day daily",
            **_p50(await _raw(stack.dsn, RAW_DAILY, "", now - timedelta(days=30), now)),
        )
        row = report.add(
            "analytics",
            "GET /api/v1/scans (every code, 30-day daily, by_tag)",
            **_p50(await _timed(client, "/api/v1/scans", day30)),
        )
        report.ratio(row, baseline)
        year = {"from": (now - timedelta(days=365)).isoformat(), "to": now.isoformat(), "interval": "month"}
        baseline = report.add(
            "analytics",
            "raw SQL count, every code, 12 months monthly",
            **_p50(await _raw(stack.dsn, RAW_MONTHLY, "", now - timedelta(days=365), now)),
        )
        row = report.add(
            "analytics",
            "GET /api/v1/scans (every code, 12 months, by month, by_tag)",
            **_p50(await _timed(client, "/api/v1/scans", year)),
        )
        report.ratio(row, baseline)


def _p50(samples: list[float]) -> dict[str, Any]:
    figures = percentiles(samples)
    return {"value": figures["p50_ms"], "unit": "ms p50", "p99_ms": figures["p99_ms"]}
