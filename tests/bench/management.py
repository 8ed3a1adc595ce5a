"""The management API: list and search over 100,000 codes, and create throughput against a plain
asyncpg insert of the same row."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg
import httpx

from shared import ids
from shared.database import asyncpg_dsn
from tests.bench.report import Report, percentiles

CODES = 100_000
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
    rows = []
    for n in range(CODES):
        code_id = ids.new_id()
        title = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {n}"
        rows.append(
            (code_id, f"http://localhost/r/{code_id}", f"https://example.org/{n}", title, [rng.choice(WORDS)])
        )
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        await connection.copy_records_to_table(
            "qr_codes", records=rows, columns=["id", "short_url", "target_url", "title", "tags"]
        )
        await connection.execute("ANALYZE qr_codes")
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
            n = queue.pop()
            await post(n)

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
        first_pages = await latencies(client, ["/api/v1/qr?limit=100"] * LATENCY_REQUESTS)
        report.add("management", f"GET /api/v1/qr?limit=100, {CODES:,} codes", **_p50(first_pages))
        page = (await client.get("/api/v1/qr?limit=100")).json()
        deep = await latencies(
            client, [f"/api/v1/qr?limit=100&cursor={page['next_cursor']}"] * LATENCY_REQUESTS
        )
        report.add("management", "the same, a later page (keyset cursor)", **_p50(deep))
        searches = [f"/api/v1/qr?limit=100&q={word}%20{n}" for n, word in enumerate(WORDS * 25)][
            :LATENCY_REQUESTS
        ]
        report.add(
            "management",
            "GET /api/v1/qr?limit=100&q=<word n> (trigram index)",
            **_p50(await latencies(client, searches)),
        )
        tagged = await latencies(client, ["/api/v1/qr?limit=100&tag=museum"] * LATENCY_REQUESTS)
        report.add("management", "GET /api/v1/qr?limit=100&tag=museum", **_p50(tagged))

    connection_pool = await asyncpg.create_pool(
        asyncpg_dsn(stack.dsn), min_size=CONCURRENCY, max_size=CONCURRENCY
    )
    try:

        async def insert(n: int) -> None:
            code_id = ids.new_id()
            await connection_pool.execute(
                "INSERT INTO qr_codes (id, short_url, target_url, title) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT DO NOTHING",
                code_id,
                f"http://localhost/r/{code_id}",
                f"https://example.org/b/{n}",
                f"bench {n}",
            )

        baseline = report.add(
            "management",
            f"create: plain asyncpg INSERT, {CONCURRENCY} at once",
            await creates_per_second(insert, CREATES),
            "req/s",
        )
    finally:
        await connection_pool.close()

    for name, base in (("direct to the service", direct), ("through the edge (Traefik)", edge)):
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def post(n: int, client: httpx.AsyncClient = client) -> None:
                response = await client.post(
                    "/api/v1/qr", json={"target_url": f"https://example.org/c/{n}", "title": f"b{n}"}
                )
                assert response.status_code == 201, response.text

            rate = await creates_per_second(post, CREATES)
        report.ratio(
            report.add("management", f"create: POST /api/v1/qr {name}, {CONCURRENCY} at once", rate, "req/s"),
            baseline,
        )


def _p50(samples: list[float]) -> dict[str, Any]:
    figures = percentiles(samples)
    return {"value": figures["p50_ms"], "unit": "ms p50", "p99_ms": figures["p99_ms"]}
