"""One batch of scans into the database: the raw rows and every rollup, in one transaction.

The rows go in with ``COPY``; the rollups are counted here and added with one upsert per table:
the running totals per code (``scan_counts``), quarter hours (``scan_quarters``), UTC days with their
unique visitors (``scan_days``, each visitor hash counted once per code and day through
``scan_day_visitors``), UTC months (``scan_months``), and the top lists' tallies
(``scan_tallies``). Each rollup is kept per code and, under the code id '', for every code
together. Every upsert takes its rows in key order, so that two writers adding to the same keys
wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from services.redirect.visitors import Connection

EVERY_CODE = ""  # the code id of the rollups over all codes
QUARTER = 900  # seconds

COPY_COLUMNS = ("code_id", "scanned_at", "agent_id", "referrer", "visitor_hash", "is_bot", "country", "city")

UPSERT_COUNTS = """
INSERT INTO scan_counts (code_id, total, bots, first_scan_at, last_scan_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::timestamptz[])
ORDER BY 1
ON CONFLICT (code_id) DO UPDATE SET
    total = scan_counts.total + EXCLUDED.total,
    bots = scan_counts.bots + EXCLUDED.bots,
    first_scan_at = least(scan_counts.first_scan_at, EXCLUDED.first_scan_at),
    last_scan_at = greatest(scan_counts.last_scan_at, EXCLUDED.last_scan_at)
"""
UPSERT_QUARTERS = """
INSERT INTO scan_quarters (code_id, quarter, total, bots)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::int[])
ORDER BY 1, 2
ON CONFLICT (code_id, quarter) DO UPDATE SET
    total = scan_quarters.total + EXCLUDED.total, bots = scan_quarters.bots + EXCLUDED.bots
"""
# A day's visitors grow by the hashes not seen before that day (RETURNING says which were new).
UPSERT_DAYS = """
WITH new AS (
    INSERT INTO scan_day_visitors (code_id, day, visitor_hash)
    SELECT * FROM unnest($5::text[], $6::date[], $7::bytea[])
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING code_id, day
), fresh AS (
    SELECT code_id, day, count(*)::int AS visitors FROM new GROUP BY code_id, day
)
INSERT INTO scan_days (code_id, day, total, bots, visitors)
SELECT t.code_id, t.day, t.total, t.bots, coalesce(fresh.visitors, 0)
FROM unnest($1::text[], $2::date[], $3::int[], $4::int[]) AS t(code_id, day, total, bots)
LEFT JOIN fresh USING (code_id, day)
ORDER BY 1, 2
ON CONFLICT (code_id, day) DO UPDATE SET
    total = scan_days.total + EXCLUDED.total,
    bots = scan_days.bots + EXCLUDED.bots,
    visitors = scan_days.visitors + EXCLUDED.visitors
"""
UPSERT_MONTHS = """
INSERT INTO scan_months (code_id, month, total, bots)
SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])
ORDER BY 1, 2
ON CONFLICT (code_id, month) DO UPDATE SET
    total = scan_months.total + EXCLUDED.total, bots = scan_months.bots + EXCLUDED.bots
"""
UPSERT_TALLIES = """
INSERT INTO scan_tallies (code_id, day, dimension, value, count)
SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::int[])
ORDER BY 1, 2, 3, 4
ON CONFLICT (code_id, day, dimension, value) DO UPDATE SET count = scan_tallies.count + EXCLUDED.count
"""
ALL = (UPSERT_COUNTS, UPSERT_QUARTERS, UPSERT_DAYS, UPSERT_TALLIES, UPSERT_MONTHS)

_EPOCH_DAY = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Scan:
    """One scan as the writer worked it out: what is stored, and what the rollups count."""

    code_id: str
    moment: float  # Unix time
    agent_id: int | None  # None only for a scan whose agent could not be named (never by this writer)
    referrer: str | None
    referrer_host: str | None
    visitor: bytes
    bot_reason: str | None  # None: a person
    country: str | None
    city: str | None


async def write(connection: Connection, scans: Sequence[Scan]) -> None:
    """Write ``scans`` and add them to every rollup, all or nothing."""
    records = []
    days: Counter[tuple[str, int]] = Counter()
    day_bots: Counter[tuple[str, int]] = Counter()
    quarters: Counter[tuple[str, int]] = Counter()
    quarter_bots: Counter[tuple[str, int]] = Counter()
    tallies: Counter[tuple[str, int, str, str]] = Counter()
    visitors: set[tuple[str, int, bytes]] = set()
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    fromtimestamp = datetime.fromtimestamp
    # Per code here, one pass over the scans; the sums over every code come from these (fewer) keys.
    for scan in scans:
        code, moment, reason = scan.code_id, scan.moment, scan.bot_reason
        records.append(
            (
                code,
                fromtimestamp(moment, UTC),
                scan.agent_id,
                scan.referrer,
                scan.visitor,
                reason is not None,
                scan.country,
                scan.city,
            )
        )
        day, quarter = int(moment // 86400), int(moment // QUARTER) * QUARTER
        days[code, day] += 1
        quarters[code, quarter] += 1
        if reason is not None:
            day_bots[code, day] += 1
            quarter_bots[code, quarter] += 1
            tallies[code, day, "bot_reason", reason] += 1
        else:
            visitors.add((code, day, scan.visitor))
            tallies[code, day, "agent", str(scan.agent_id)] += 1
            if scan.referrer_host:
                tallies[code, day, "referrer", scan.referrer_host] += 1
            if scan.country:
                tallies[code, day, "country", scan.country] += 1
        if moment < first.get(code, moment + 1):
            first[code] = moment
        if moment > last.get(code, moment - 1):
            last[code] = moment
    for counter in (days, day_bots, quarters, quarter_bots):
        _add_every_code(counter)
    every_code_tallies: Counter[tuple[str, int, str, str]] = Counter()
    for (_, day, dimension, value), n in tallies.items():
        every_code_tallies[EVERY_CODE, day, dimension, value] += n
    tallies.update(every_code_tallies)
    visitors |= {(EVERY_CODE, day, visitor) for _, day, visitor in visitors}

    months: Counter[tuple[str, date]] = Counter()
    month_bots: Counter[tuple[str, date]] = Counter()
    for (code, day), n in days.items():  # after the sums over every code: those are in here too
        month = _date(day).replace(day=1)
        months[code, month] += n
        month_bots[code, month] += day_bots[code, day]
    month_keys = sorted(months)

    codes = sorted(first)
    totals = Counter(record[0] for record in records)
    bots = Counter(record[0] for record in records if record[5])
    day_keys, quarter_keys, tally_keys = list(days), list(quarters), list(tallies)
    visitor_rows = list(visitors)
    async with connection.transaction():
        await connection.copy_records_to_table("scans", records=records, columns=COPY_COLUMNS)
        await connection.execute(
            UPSERT_COUNTS,
            codes,
            [totals[c] for c in codes],
            [bots[c] for c in codes],
            [fromtimestamp(first[c], UTC) for c in codes],
            [fromtimestamp(last[c], UTC) for c in codes],
        )
        await connection.execute(
            UPSERT_QUARTERS,
            [code for code, _ in quarter_keys],
            [fromtimestamp(quarter, UTC) for _, quarter in quarter_keys],
            [quarters[key] for key in quarter_keys],
            [quarter_bots[key] for key in quarter_keys],
        )
        await connection.execute(
            UPSERT_DAYS,
            [code for code, _ in day_keys],
            [_date(day) for _, day in day_keys],
            [days[key] for key in day_keys],
            [day_bots[key] for key in day_keys],
            [code for code, _, _ in visitor_rows],
            [_date(day) for _, day, _ in visitor_rows],
            [visitor for _, _, visitor in visitor_rows],
        )
        if tally_keys:
            await connection.execute(
                UPSERT_TALLIES,
                [key[0] for key in tally_keys],
                [_date(key[1]) for key in tally_keys],
                [key[2] for key in tally_keys],
                [key[3] for key in tally_keys],
                [tallies[key] for key in tally_keys],
            )
        await connection.execute(
            UPSERT_MONTHS,
            [code for code, _ in month_keys],
            [month for _, month in month_keys],
            [months[key] for key in month_keys],
            [month_bots[key] for key in month_keys],
        )


def _add_every_code(counter: Counter[tuple[str, int]]) -> None:
    """Add the sums over every code (code id '') to a counter kept per (code, time)."""
    every: Counter[tuple[str, int]] = Counter()
    for (_, moment), n in counter.items():
        every[EVERY_CODE, moment] += n
    counter.update(every)


def _date(day_number: int) -> date:
    return _EPOCH_DAY + timedelta(days=day_number)
