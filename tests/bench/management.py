"""The management API: list and search over 100,000 codes, and create throughput against plain
asyncpg doing the same two inserts (the code and its history row) in one transaction."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from shared import ids
from shared.database import asyncpg_dsn
from tests.bench.report import Report, percentiles

CODES = 100_000
SCANNED_CODES = 2_000  # with running totals, as the scan writer keeps them
WORDS = [
    "menu",
    "poster",
    "flyer",
    "table",
    "wine",
    "spring",
    "summer",
    "event",
    "museum",
    "map",
    "bus",
    "park",
]
LATENCY_REQUESTS = 200
CREATES = 1000
CONCURRENCY = 8


async def seed(dsn: str) -> None:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=365)
    rows = []
    for n in range(CODES):
        code_id = ids.new_id()
        title = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {n}"
        created = start + timedelta(seconds=n * 300)  # a year of codes, as an installation grows
        rows.append(
            (
                code_id,
                f"http://localhost/r/{code_id}",
                f"https://example.org/{n}",
                title,
                [rng.choice(WORDS)],
                created,
                created,
            )
        )
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        await connection.copy_records_to_table(
            "qr_codes",
            records=rows,
            columns=["id", "short_url", "target_url", "title", "tags", "created_at", "updated_at"],
        )
        counts = [(row[0], rng.randint(1, 100_000), rng.randint(0, 100)) for row in rows[:SCANNED_CODES]]
        await connection.copy_records_to_table(
            "scan_counts", records=counts, columns=["code_id", "total", "bots"]
        )
        await connection.execute("ANALYZE qr_codes; ANALYZE scan_counts")
    finally:
        await connection.close()


async def latencies(client: httpx.AsyncClient, paths: list[str]) -> list[float]:
    samples = []
    for path in paths:
        started = time.perf_counter()
        response = await client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return samples


async def creates_per_second(post: Any, count: int) -> float:
    queue = list(range(count))
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            await post(queue.pop())

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started)


async def run(stack: Any, report: Report) -> None:
    s = stack.settings
    await seed(stack.dsn)
    direct = f"http://127.0.0.1:{s.management_port}"
    edge = f"http://127.0.0.1:{s.http_port}"
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=direct, timeout=30, limits=limits) as client:
        await latencies(client, ["/api/v1/qr?limit=100"] * 20)  # warm up
        first = await latencies(client, ["/api/v1/qr?limit=100"] * LATENCY_REQUESTS)
        report.add("management", f"GET /api/v1/qr?limit=100, {CODES:,} codes", **_p50(first))
        page = (await client.get("/api/v1/qr?limit=100")).json()
        later = await latencies(
            client, [f"/api/v1/qr?limit=100&cursor={page['next_cursor']}"] * LATENCY_REQUESTS
        )
        report.add("management", "the same, a later page (keyset cursor)", **_p50(later))
        selective = [f"/api/v1/qr?limit=100&q={word}%20{n}" for n, word in enumerate(WORDS * 20)]
        report.add(
            "management",
            "GET ...&q=<word n> (selective search, trigram index)",
            **_p50(await latencies(client, selective[:LATENCY_REQUESTS])),
        )
        common = [f"/api/v1/qr?limit=100&q={word}" for word in WORDS * 20]
        report.add(
            "management",
            "GET ...&q=<common word> (a twelfth of all codes match)",
            **_p50(await latencies(client, common[:LATENCY_REQUESTS])),
        )
        short = [f"/api/v1/qr?limit=100&q={letter}" for letter in "aeimnostu" * 25]
        report.add(
            "management",
            "GET ...&q=<one letter> (no trigram: a scan)",
            **_p50(await latencies(client, short[:LATENCY_REQUESTS])),
        )
        tagged = await latencies(client, ["/api/v1/qr?limit=100&tag=museum"] * LATENCY_REQUESTS)
        report.add("management", "GET /api/v1/qr?limit=100&tag=museum", **_p50(tagged))

    pool = await asyncpg.create_pool(asyncpg_dsn(stack.dsn), min_size=CONCURRENCY, max_size=CONCURRENCY)
    try:

        async def insert(n: int) -> None:
            code_id = ids.new_id()
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    "INSERT INTO qr_codes (id, short_url, target_url, title) VALUES ($1, $2, $3, $4)",
                    code_id,
                    f"http://localhost/r/{code_id}",
                    f"https://example.org/b/{n}",
                    f"bench {n}",
                )
                await connection.execute(
                    "INSERT INTO qr_code_changes (code_id, action, changes) VALUES ($1, 'create', $2::jsonb)",
                    code_id,
                    json.dumps({"target_url": {"old": None, "new": f"https://example.org/b/{n}"}}),
                )

        baseline = report.add(
            "management",
            f"create: plain asyncpg, same 2 inserts in 1 transaction, {CONCURRENCY} at once",
            await creates_per_second(insert, CREATES),
            "req/s",
        )
    finally:
        await pool.close()

    for name, base in (("direct to the service", direct), ("through the edge (Traefik)", edge)):
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def post(n: int, client: httpx.AsyncClient = client) -> None:
                body = {"target_url": f"https://example.org/c/{n}", "title": f"b{n}"}
                response = await client.post("/api/v1/qr", json=body)
                assert response.status_code == 201, response.text

            rate = await creates_per_second(post, CREATES)
        row = report.add(
            "management", f"create: POST /api/v1/qr {name}, {CONCURRENCY} at once", rate, "req/s"
        )
        report.ratio(row, baseline)


def _p50(samples: list[float]) -> dict[str, Any]:
    figures = percentiles(samples)
    return {"value": figures["p50_ms"], "unit": "ms p50", "p99_ms": figures["p99_ms"]}
