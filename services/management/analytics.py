"""Scan statistics from the rollups the scan writer keeps: series, totals, unique visitors, top lists.

Nothing here counts raw scans for totals or series: those come from the quarter-hour rollups, and
every time zone's hours, days, weeks and months are made of whole UTC quarter hours (+05:30, +05:45
and the days of a DST change, 23 or 25 hours long, included), so a bucket in any zone is exact.

Unique visitors are distinct visitor hashes among people. The hash's key changes at 00:00 UTC, so
they can be counted exactly per UTC day only: a bucket of an hour counts the distinct hashes of its
raw scans; a day in UTC counts its own visitors; any other bucket (a day in another zone, a week, a
month) sums the daily counts of the UTC days whose noon falls inside it (for a zone within twelve
hours of UTC, the day of the same date), at most its people. Top lists count the same UTC days,
from the daily tallies; they are kept for ever, as the rollups are. Raw scans (hourly unique
visitors, the CSV) go after ``SCAN_RETENTION_DAYS``; the answer says from when they are kept.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management import agents
from services.management.schemas import (
    Bucket,
    Interval,
    ScanQuery,
    ScanReport,
    TagTotals,
    TopEntry,
    TopLists,
)
from shared.errors import InvalidField, NotFound

EVERY_CODE = ""  # the rollups' code id for every code together
MAX_BUCKETS = 10_000
TOP = 10  # entries per top list
DEFAULT_DAYS = 30


@dataclass(frozen=True)
class Range:
    """Bucket starts in the zone (aware), and the range's end: [starts[0], end)."""

    starts: tuple[datetime, ...]
    end: datetime
    interval: Interval
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return self.starts[0]

    def utc_bounds(self) -> list[datetime]:
        return [*(s.astimezone(UTC) for s in self.starts), self.end.astimezone(UTC)]


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(UTC).astimezone(tz)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz`` (where midnight does not exist, the hour after)."""
    return _local(datetime.combine(day, time(), tz), tz)


def floor(moment: datetime, interval: str, tz: ZoneInfo) -> datetime:
    """The start of the bucket of ``interval`` in ``tz`` that holds ``moment``."""
    local = _local(moment, tz)
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.date()
    if interval == "week":
        day -= timedelta(days=day.weekday())  # weeks begin on Monday, as ISO 8601 has it
    elif interval == "month":
        day = day.replace(day=1)
    return _midnight(day, tz)


def following(start: datetime, interval: str, tz: ZoneInfo) -> datetime:
    """The start of the bucket after the one beginning at ``start``."""
    if interval == "hour":
        return _local(start.astimezone(UTC) + timedelta(hours=1), tz)
    day = start.date()
    if interval == "day":
        return _midnight(day + timedelta(days=1), tz)
    if interval == "week":
        return _midnight(day + timedelta(days=7), tz)
    return _midnight((day.replace(day=1) + timedelta(days=32)).replace(day=1), tz)


_SHORTEST = {
    "hour": timedelta(hours=1),
    "day": timedelta(hours=23),
    "week": timedelta(days=7),
    "month": timedelta(days=28),
}


def make_range(query: ScanQuery, now: datetime) -> Range:
    """The buckets ``query`` asks for: ``from`` down to its bucket's start, ``to`` up to a bucket's
    end; by default the last 30 days up to the end of the current bucket."""
    tz = ZoneInfo(query.tz)
    end = (
        _moment(query.to, tz)
        if query.to is not None
        else following(floor(now, query.interval, tz), query.interval, tz)
    )
    start = _moment(query.from_, tz) if query.from_ is not None else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise InvalidField("from", "must be before to")
    if (end - start) / _SHORTEST[query.interval] > MAX_BUCKETS + 1:
        raise InvalidField(
            "interval",
            f"the range holds more than {MAX_BUCKETS:,} {query.interval}s: choose a longer interval "
            "or a shorter range",
        )
    starts = [floor(start, query.interval, tz)]
    while True:
        following_start = following(starts[-1], query.interval, tz)
        if following_start >= end:
            break
        starts.append(following_start)
        if len(starts) > MAX_BUCKETS:
            raise InvalidField("interval", f"the range holds more than {MAX_BUCKETS:,} {query.interval}s")
    return Range(tuple(starts), following(starts[-1], query.interval, tz), query.interval, tz)


def _moment(value: datetime | date, tz: ZoneInfo) -> datetime:
    """A day is its first instant in the zone; a time without a zone is read in it."""
    if isinstance(value, datetime):
        return _local(value if value.tzinfo else value.replace(tzinfo=tz), tz)
    return _midnight(value, tz)


# -- queries ------------------------------------------------------------------------------------

QUARTERS = """
SELECT quarter, total, bots FROM scan_quarters
WHERE code_id = :code AND quarter >= :start AND quarter < :end ORDER BY quarter
"""
DAYS = """
SELECT day, visitors FROM scan_days
WHERE code_id = :code AND day >= :first AND day < :last
"""
HOURLY_VISITORS = """
SELECT width_bucket(scanned_at, CAST(:bounds AS timestamptz[])) AS bucket,
       count(DISTINCT visitor_hash) AS visitors
FROM scans
WHERE (:code = '' OR code_id = :code) AND scanned_at >= :start AND scanned_at < :end AND NOT is_bot
GROUP BY 1
"""
TALLIES = """
SELECT dimension, value, sum(count)::bigint AS count FROM scan_tallies
WHERE code_id = :code AND day >= :first AND day < :last
GROUP BY dimension, value
HAVING sum(count) > 0
"""
BY_TAG = """
SELECT tag, sum(d.total)::bigint AS total, sum(d.bots)::bigint AS bots, count(DISTINCT d.code_id) AS codes
FROM scan_days d JOIN qr_codes c ON c.id = d.code_id CROSS JOIN LATERAL unnest(c.tags) AS tag
WHERE d.code_id <> '' AND d.day >= :first AND d.day < :last
GROUP BY tag ORDER BY total DESC, tag
"""
FIRST_LAST = """
SELECT min(first_scan_at) AS first, max(last_scan_at) AS last FROM scan_counts
WHERE :code = '' OR code_id = :code
"""
RAW_SINCE = "SELECT raw_since FROM scan_retention"
CODE_EXISTS = "SELECT 1 FROM qr_codes WHERE id = :code"


NOON = time(12, tzinfo=UTC)


def _noon_days(span: Range) -> tuple[date, date]:
    """The UTC days whose noon lies in the range, as [first, last)."""
    start, end = span.start.astimezone(UTC), span.end.astimezone(UTC)
    first = start.date() if start.timetz() <= NOON else start.date() + timedelta(days=1)
    last = end.date() if end.timetz() <= NOON else end.date() + timedelta(days=1)
    return first, max(first, last)


async def report(
    conn: AsyncConnection, code_id: str | None, query: ScanQuery, *, now: datetime, countries: bool
) -> ScanReport:
    """The statistics of one code (``code_id``) or of every code (``None``) over ``query``'s range."""
    span = make_range(query, now)
    code = code_id if code_id is not None else EVERY_CODE
    if code_id is not None and (await conn.execute(text(CODE_EXISTS), {"code": code})).first() is None:
        raise NotFound(f"no QR code with id '{code_id}'")
    bounds = span.utc_bounds()
    instants = bounds[:-1]
    totals, bots = [0] * len(instants), [0] * len(instants)
    for quarter, total, bot in await conn.execute(
        text(QUARTERS), {"code": code, "start": bounds[0], "end": bounds[-1]}
    ):
        index = bisect.bisect_right(instants, quarter) - 1
        totals[index] += total
        bots[index] += bot
    people = [t - b for t, b in zip(totals, bots, strict=True)]

    first, last = _noon_days(span)
    daily = list(await conn.execute(text(DAYS), {"code": code, "first": first, "last": last}))
    uniques = [0] * len(instants)
    if span.interval == "hour":  # exact: the distinct hashes of each hour's raw scans
        for bucket, visitors in await conn.execute(
            text(HOURLY_VISITORS), {"code": code, "bounds": bounds, "start": bounds[0], "end": bounds[-1]}
        ):
            if 1 <= bucket <= len(instants):
                uniques[bucket - 1] = visitors
    else:
        for day, visitors in daily:
            uniques[bisect.bisect_right(instants, datetime.combine(day, NOON)) - 1] += visitors
        uniques = [min(u, p) for u, p in zip(uniques, people, strict=True)]

    span_first, span_last = (await conn.execute(text(FIRST_LAST), {"code": code})).one()
    raw_since = (await conn.execute(text(RAW_SINCE))).scalar_one_or_none()
    by_tag = None
    if code_id is None:
        by_tag = [
            TagTotals(tag=tag, total=total, people=total - bot, bots=bot, codes=codes)
            for tag, total, bot, codes in await conn.execute(text(BY_TAG), {"first": first, "last": last})
        ]
    return ScanReport(
        code_id=code_id,
        total=sum(totals),
        people=sum(people),
        bots=sum(bots),
        unique=min(sum(people), sum(visitors for _, visitors in daily)),
        first_scan_at=span_first,
        last_scan_at=span_last,
        from_=span.start,
        to=span.end,
        interval=span.interval,
        tz=query.tz,
        series=[
            Bucket(start=start, total=t, people=p, bots=b, unique=u)
            for start, t, p, b, u in zip(span.starts, totals, people, bots, uniques, strict=True)
        ],
        top=await _top_lists(conn, code, first, last, countries=countries),
        raw_since=raw_since,
        by_tag=by_tag,
    )


async def _top_lists(
    conn: AsyncConnection, code: str, first: date, last: date, *, countries: bool
) -> TopLists:
    counts: dict[str, Counter[str]] = {}
    for dimension, value, count in await conn.execute(
        text(TALLIES), {"code": code, "first": first, "last": last}
    ):
        counts.setdefault(dimension, Counter())[value] += count
    by_agent = counts.get("agent", Counter())
    families = await agents.families(conn, [int(agent_id) for agent_id in by_agent])
    browsers: Counter[str] = Counter()
    systems: Counter[str] = Counter()
    devices: Counter[str] = Counter()
    for agent_id, count in by_agent.items():
        browser, system, device = families.get(int(agent_id), ("Other", "Other", "Other"))
        browsers[browser] += count
        systems[system] += count
        devices[device] += count
    return TopLists(
        countries=_top(counts.get("country", Counter())) if countries else None,
        referrers=_top(counts.get("referrer", Counter())),
        devices=_top(devices),
        os=_top(systems),
        browsers=_top(browsers),
        bot_reasons=_top(counts.get("bot_reason", Counter())),
    )


def _top(counter: Counter[str]) -> list[TopEntry]:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    return [TopEntry(value=value, count=count) for value, count in ranked]
