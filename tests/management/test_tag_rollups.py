"""Totals per tag from the tags' own rollups, checked against raw counts of the same scans.

Scans are written by the real scan writer into a real PostgreSQL and read back through the
management API; the expected answers are counted from the raw scans with SQL and the codes' tags as
they are now (a change of a code's tags moves its past scans).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.management import analytics
from services.management.schemas import ScanQuery
from services.ops import maintenance
from services.redirect import rollups
from services.redirect.scans import ScanRecorder
from shared.database import AdvisoryLock
from tests.management.conftest import create

pytestmark = pytest.mark.anyio

PHONE = b"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
GOOGLEBOT = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

# Per tag the codes carry now: scans, bots and distinct codes scanned in [start, end).
RAW_BY_TAG = """
SELECT t.tag, count(*) AS total, count(*) FILTER (WHERE s.is_bot) AS bots, count(DISTINCT s.code_id) AS codes
FROM scans AS s JOIN qr_codes AS c ON c.id = s.code_id
CROSS JOIN LATERAL (SELECT DISTINCT unnest(c.tags)) AS t(tag)
WHERE s.scanned_at >= $1 AND s.scanned_at < $2
GROUP BY t.tag ORDER BY total DESC, t.tag
"""
# The rollups themselves, per tag and day, against the raw scans (every day, every tag).
RAW_TAG_DAYS = """
SELECT t.tag, (s.scanned_at AT TIME ZONE 'UTC')::date AS day, count(*) AS total,
       count(*) FILTER (WHERE s.is_bot) AS bots
FROM scans AS s JOIN qr_codes AS c ON c.id = s.code_id
CROSS JOIN LATERAL (SELECT DISTINCT unnest(c.tags)) AS t(tag)
GROUP BY 1, 2
"""
TAG_DAYS = "SELECT tag, day, total, bots FROM scan_tag_days WHERE total <> 0"

RANGES = [
    {"from": "2026-10-28", "to": "2026-11-09"},
    {"from": "2026-11-02", "to": "2026-11-04"},
    {"from": "2026-11-07", "to": "2026-11-09"},  # inside the gaps of "sign" and "wine": not counted
    {"from": "2026-11-01", "to": "2026-11-30"},  # a month nearly whole
    {"from": "2026-10-31", "to": "2026-11-06", "tz": "America/New_York"},
    {"from": "2026-10-01", "to": "2027-01-01", "interval": "month", "tz": "Asia/Kolkata"},
    {"from": "2026-11-05", "to": "2026-11-06", "tz": "Pacific/Kiritimati"},
]


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[tuple[ScanRecorder, Clock]]:
    clock = Clock(datetime(2026, 10, 28, 9, 0, tzinfo=UTC))
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60, clock=clock)
    await recorder.start()
    try:
        yield recorder, clock
    finally:
        await recorder.close()


async def by_tag(client: httpx.AsyncClient, params: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/scans", params=params)
    assert response.status_code == 200, response.text
    return response.json()["by_tag"]  # type: ignore[no-any-return]


async def raw_by_tag(database_url: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """by_tag counted from the raw scans: the UTC days whose noon is in the range, as it counts."""
    span = analytics.make_range(ScanQuery.model_validate(params), datetime.now(UTC))
    first, last = analytics._noon_days(span)
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            RAW_BY_TAG, datetime.combine(first, time(), UTC), datetime.combine(last, time(), UTC)
        )
    finally:
        await connection.close()
    return [
        {
            "tag": r["tag"],
            "total": r["total"],
            "people": r["total"] - r["bots"],
            "bots": r["bots"],
            "codes": r["codes"],
        }
        for r in rows
    ]


async def assert_rollups_match_raw(
    client: httpx.AsyncClient, database_url: str
) -> list[list[dict[str, Any]]]:
    connection = await asyncpg.connect(database_url)
    try:
        assert {tuple(r) for r in await connection.fetch(TAG_DAYS)} == {
            tuple(r) for r in await connection.fetch(RAW_TAG_DAYS)
        }
    finally:
        await connection.close()
    answers = []
    for params in RANGES:
        answer = await by_tag(client, params)
        assert answer == await raw_by_tag(database_url, params), params
        answers.append(answer)
    return answers


async def tag_rollups(database_url: str) -> dict[str, set[tuple[Any, ...]]]:
    connection = await asyncpg.connect(database_url)
    try:
        return {
            table: {tuple(row) for row in await connection.fetch(f"TABLE {table}")}
            for table in ("scan_tag_days", "scan_tag_months", "scan_tag_code_days", "scan_tag_code_months")
        }
    finally:
        await connection.close()


async def scan_days(recorder: ScanRecorder, clock: Clock, plan: dict[str, list[int]]) -> None:
    """Scans of each code on the given days of November 2026 (day 0: 31 October), a bot among them."""
    for code, days in plan.items():
        for day in days:
            clock.now = datetime.combine(date(2026, 10, 31) + timedelta(days=day), time(10), UTC).timestamp()
            for n in range(3):
                recorder.record(code, GOOGLEBOT if n == 0 else PHONE, None, f"198.51.100.{n}", None)
                clock.now += 3600 * 5  # the third scan of a day at 20:00 UTC
    await recorder.flush()


async def test_tag_totals_equal_raw_counts_as_tags_change_and_scans_are_erased(
    client: httpx.AsyncClient, database_url: str, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    for slug, tags in (
        ("menu", ["print", "food"]),
        ("wine", ["food", "food"]),
        ("bare", []),
        ("sign", ["print"]),
    ):
        assert (
            await create(client, target_url="https://example.org/", slug=slug, tags=tags)
        ).status_code == 201
    # "sign" is scanned on days 1 and 6, then days 3 and 4 come late, after day 6 was written (day 6
    # is then a day after day 4, not after day 1); "wine" too, before its first day.
    await scan_days(recorder, clock, {"menu": [-3, 1, 2, 3, 8], "wine": [2, 5], "bare": [1], "sign": [1, 6]})
    await scan_days(recorder, clock, {"sign": [3], "wine": [0, 1]})
    await scan_days(recorder, clock, {"sign": [4, 10]})
    first = await assert_rollups_match_raw(client, database_url)
    assert first[0] == [
        {"tag": "food", "total": 27, "people": 18, "bots": 9, "codes": 2},
        {"tag": "print", "total": 27, "people": 18, "bots": 9, "codes": 2},
    ]  # "wine" counts once under "food", which it carries twice

    # Tags added to and taken from codes that already have scans, through the API and not.
    response = await client.patch("/api/v1/qr/bare", json={"tags": ["food", "print"]})
    assert response.status_code == 200, response.text
    assert (await client.patch("/api/v1/qr/menu", json={"tags": ["drinks"]})).status_code == 200
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("UPDATE qr_codes SET tags = '{print,sign,print}' WHERE id = 'wine'")
    finally:
        await connection.close()
    moved = await assert_rollups_match_raw(client, database_url)
    assert moved != first
    assert {"tag": "drinks", "total": 15, "people": 10, "bots": 5, "codes": 1} in moved[0]

    # More scans, then an erasure, then a deleted code (it keeps counting under its tags).
    await scan_days(recorder, clock, {"menu": [9], "bare": [9]})
    assert (await client.delete("/api/v1/qr/wine/scans")).status_code == 204
    await assert_rollups_match_raw(client, database_url)
    assert (await client.delete("/api/v1/qr/bare")).status_code == 204
    await assert_rollups_match_raw(client, database_url)
    every = (await client.get("/api/v1/scans", params=RANGES[0])).json()
    assert (every["first_scan_at"], every["last_scan_at"]) == ("2026-10-28T10:00:00Z", "2026-11-10T20:00:00Z")


async def test_retention_keeps_the_tag_totals(
    client: httpx.AsyncClient, database_url: str, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu", tags=["print"])
    await create(client, target_url="https://example.org/", slug="wine", tags=["print", "food"])
    clock.now = datetime(2025, 3, 10, 12, tzinfo=UTC).timestamp()  # far back: partitions that go
    for day in range(40):
        recorder.record(
            "menu" if day % 3 else "wine", PHONE if day % 5 else GOOGLEBOT, None, "198.51.100.1", None
        )
        clock.now += 86400
    await recorder.flush()
    ranges = [
        {"from": "2025-03-01", "to": "2025-05-01"},
        {"from": "2025-03-15", "to": "2025-04-02", "tz": "Europe/Paris"},
        {"from": "2025-01-01", "to": "2026-01-01", "interval": "month", "tz": "Asia/Kolkata"},
    ]
    before = [await by_tag(client, params) for params in ranges]
    assert before == [await raw_by_tag(database_url, params) for params in ranges]
    rollups_before = await tag_rollups(database_url)
    assert before[0] == [
        {"tag": "print", "total": 40, "people": 32, "bots": 8, "codes": 2},
        {"tag": "food", "total": 14, "people": 11, "bots": 3, "codes": 1},
    ]
    upkeep = await maintenance.keep_partitions(
        database_url, retention_days=400, now=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert {"scans_2025_03", "scans_2025_04"} <= set(upkeep.dropped)
    assert [await by_tag(client, params) for params in ranges] == before
    assert await tag_rollups(database_url) == rollups_before  # the days' rows a later change moves
    # A tag given after the raw scans went still gets the code's past scans (from its daily rollups).
    assert (await client.patch("/api/v1/qr/menu", json={"tags": ["print", "food"]})).status_code == 200
    assert await by_tag(client, ranges[0]) == [
        {"tag": "food", "total": 40, "people": 32, "bots": 8, "codes": 2},
        {"tag": "print", "total": 40, "people": 32, "bots": 8, "codes": 2},
    ]


async def test_a_batch_and_a_change_of_tags_at_the_same_moment_wait_for_each_other(
    client: httpx.AsyncClient, database_url: str, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu", tags=["print"])
    await scan_days(recorder, clock, {"menu": [1, 2]})
    changer = await asyncpg.connect(database_url)
    try:
        # A change of tags not committed yet: the batch that comes meanwhile waits for it, then
        # counts under the tags it made.
        async with changer.transaction():
            await changer.execute("UPDATE qr_codes SET tags = '{food}' WHERE id = 'menu'")
            batch = asyncio.create_task(scan_days(recorder, clock, {"menu": [3]}))
            await asyncio.sleep(0.5)
            assert not batch.done()
        await batch
        # A batch not committed yet: the change that comes meanwhile waits for it, then moves it.
        moment = datetime(2026, 11, 4, 12, tzinfo=UTC).timestamp()
        async with changer.transaction():
            await changer.execute(rollups.STAGE)
            await changer.copy_records_to_table(
                "scan_batch",
                schema_name="pg_temp",
                records=[
                    ("menu", None, None, None, b"v" * 16, None, None, None, rollups.moments_text([moment]))
                ],
                columns=rollups.BATCH_COLUMNS,
            )
            await changer.execute(rollups.LOCK, AdvisoryLock.SCAN_WRITE)  # as the writer does
            await changer.execute(rollups.WRITE)
            change = asyncio.create_task(client.patch("/api/v1/qr/menu", json={"tags": ["drinks"]}))
            await asyncio.sleep(0.5)
            assert not change.done()
        assert (await change).status_code == 200
    finally:
        await changer.close()
    await assert_rollups_match_raw(client, database_url)
    assert (await by_tag(client, RANGES[0]))[0] == {
        "tag": "drinks",
        "total": 10,
        "people": 7,
        "bots": 3,
        "codes": 1,
    }


async def test_tag_moves_erasures_and_batches_at_once_neither_deadlock_nor_miscount(
    client: httpx.AsyncClient, database_url: str, writer: tuple[ScanRecorder, Clock]
) -> None:
    # Codes sharing tags, moved the opposite ways at once, erased, and scanned meanwhile: each
    # waits for the other (one lock orders them all), none fails, and the totals stay exact.
    recorder, clock = writer
    names = [f"code{n}" for n in range(6)]
    for n, name in enumerate(names):
        await create(client, target_url="https://example.org/", slug=name, tags=["a" if n % 2 else "b"])
    await scan_days(recorder, clock, {name: [1, 2, 3] for name in names})

    async def swap(name: str, tags: list[str]) -> int:
        return (await client.patch(f"/api/v1/qr/{name}", json={"tags": tags})).status_code

    async def erase(name: str) -> int:
        return (await client.delete(f"/api/v1/qr/{name}/scans")).status_code

    async def scanned(day: int) -> int:
        await scan_days(recorder, clock, {name: [day] for name in names})
        return 200

    for round_ in range(3):
        answers = await asyncio.gather(
            *(swap(name, ["a" if (n + round_) % 2 else "b", "x"]) for n, name in enumerate(names)),
            erase(names[round_]),
            erase(names[round_ + 3]),
            scanned(4 + round_),
        )
        assert set(answers) <= {200, 204}, answers
    await assert_rollups_match_raw(client, database_url)
