"""Scan statistics from the rollups the scan writer keeps: series, totals, unique visitors, top lists.

Nothing here counts raw scans for totals or series: those come from the quarter-hour rollups, and
every time zone's hours, days, weeks and months are made of whole UTC quarter hours (+05:30, +05:45
and the days of a DST change, 23 or 25 hours long, included), so a bucket in any zone is exact.

Unique visitors are distinct visitor hashes among people. The hash's key changes at 00:00 UTC, so
they can be counted exactly per UTC day only: a bucket of an hour counts the distinct hashes of its
raw scans (which is why an hourly range is kept to ``MAX_HOURLY_DAYS``); a day in UTC counts its own
visitors; any other bucket (a day in another zone, a week, a month) sums the daily counts of the UTC
days whose noon falls inside it (for a zone within twelve hours of UTC, the day of the same date),
at most its people. Top lists count the same UTC days, from the daily tallies, which keep a bounded
number of values a day (the rest counted as "Other", see :mod:`services.redirect.rollups`). Raw
scans (hourly unique visitors, the CSV) go after ``SCAN_RETENTION_DAYS``, and the tallies with them;
the answer says from when they are kept (``raw_since``).

Totals per tag (``by_tag``) come from the tags' own rollups, a few rows per tag and month or day
whatever the number of codes. A code counts under the tags it carries now: a change of its tags
moves its past scans (and its scanned days) from the tags it loses to those it gains, in the
transaction of the change (the trigger ``qr_codes_tags_moved``, so every writer of tags does it); a
deleted code keeps counting under the tags it had, and erasing a code's scans takes them away.

For a caller limited to tags (a token's scope), every code's report is that of the codes carrying one
of them (deleted ones too, as every code's is): the same queries over those codes' own rollups rather
than the every-code rows, so its cost grows with the codes in scope; ``by_tag`` too (summed per
code, then per tag, a code once per tag), as a code in scope may carry tags out of it, which the
tags' rollups cannot tell apart. Totals, series and top lists stay exact; unique visitors too in
hour buckets, while a day's visitors are summed per code (a visitor who scanned two of its codes
that day counts twice, at most its people).

Each answer reads what it shows: per bucket, per tag, and ten entries per top list, summed and
ranked by PostgreSQL. A range is walked bucket by bucket (at most ``MAX_SCAN_BUCKETS``), never day
by day.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management import agents, limits
from services.management.errors import CodeNotFound, InvalidValue
from services.management.schemas import (
    Bucket,
    Interval,
    RuleSeries,
    ScanQuery,
    ScanReport,
    TagTotals,
    TopEntry,
    TopLists,
)

EVERY_CODE = ""  # the rollups' code id for every code together
OTHER = ""  # the tallies' value for the rest of a day's values (services/redirect/rollups.py: OTHER)
OTHER_SHOWN = "Other"  # as the top lists show it (ua-parser's word for a family it cannot tell)
MAX_BUCKETS = limits.MAX_SCAN_BUCKETS
TOP = 10  # entries per top list
PARSED_AT_ONCE = 2_000  # user agents parsed for one answer (about 85 µs each), most scanned first


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
    end; by default the last 30 days up to the end of the current bucket. A range at the edge of
    the calendar (year 1, year 9999), whose buckets cannot be counted out, is a 422."""
    try:
        return _make_range(query, now)
    except OverflowError:
        raise InvalidValue("to" if query.to is not None else "from", "is out of range") from None


def _make_range(query: ScanQuery, now: datetime) -> Range:
    tz = ZoneInfo(query.tz)
    end = (
        _moment(query.to, tz)
        if query.to is not None
        else following(floor(now, query.interval, tz), query.interval, tz)
    )
    start = (
        _moment(query.from_, tz)
        if query.from_ is not None
        else end - timedelta(days=limits.DEFAULT_SCAN_DAYS)
    )
    if start >= end:
        raise InvalidValue("from", "must be before to")
    if (end - start) / _SHORTEST[query.interval] > MAX_BUCKETS + 1:
        raise InvalidValue(
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
            raise InvalidValue("interval", f"the range holds more than {MAX_BUCKETS:,} {query.interval}s")
    return Range(tuple(starts), following(starts[-1], query.interval, tz), query.interval, tz)


def _moment(value: datetime | date, tz: ZoneInfo) -> datetime:
    """A day is its first instant in the zone; a time without a zone is read in it."""
    if isinstance(value, datetime):
        return _local(value if value.tzinfo else value.replace(tzinfo=tz), tz)
    return _midnight(value, tz)


# -- queries ------------------------------------------------------------------------------------

# Buckets are numbered from 1 by their starts (:bounds ends with the range's end). Only the parts of
# buckets that are not whole UTC days are read from quarter hours; whole days come from scan_days.
QUARTERS = """
SELECT width_bucket(q.quarter, CAST(:bounds AS timestamptz[])) AS bucket,
       sum(q.total)::bigint AS total, sum(q.bots)::bigint AS bots
FROM unnest(CAST(:starts AS timestamptz[]), CAST(:ends AS timestamptz[])) AS part(start, stop)
JOIN scan_quarters q ON q.code_id = :code AND q.quarter >= part.start AND q.quarter < part.stop
GROUP BY 1
"""
# Every UTC day whose noon is in the range, summed twice over: its totals into the bucket that holds
# it whole (:edges lists the runs of such days as [first, last) pairs; an odd edge number is inside
# run (edge - 1) / 2), and its visitors into the bucket that holds its noon (:bounds).
DAYS = """
SELECT width_bucket(day, CAST(:edges AS date[])) AS edge,
       width_bucket((day + time '12:00') AT TIME ZONE 'UTC', CAST(:bounds AS timestamptz[])) AS noon,
       sum(total)::bigint AS total, sum(bots)::bigint AS bots, sum(visitors)::bigint AS visitors
FROM scan_days
WHERE code_id = :code AND day >= :first AND day < :last
GROUP BY 1, 2
"""
# One query per case rather than "(:code = '' OR code_id = :code)", which a generic plan cannot
# answer from the (code_id, scanned_at) index.
HOURLY_VISITORS = """
SELECT width_bucket(scanned_at, CAST(:bounds AS timestamptz[])) AS bucket,
       count(DISTINCT visitor_hash) AS visitors
FROM scans
WHERE code_id = :code AND scanned_at >= :start AND scanned_at < :end AND NOT is_bot
GROUP BY 1
"""
HOURLY_VISITORS_EVERY_CODE = """
SELECT width_bucket(scanned_at, CAST(:bounds AS timestamptz[])) AS bucket,
       count(DISTINCT visitor_hash) AS visitors
FROM scans
WHERE scanned_at >= :start AND scanned_at < :end AND NOT is_bot
GROUP BY 1
"""
# Every top list in one read of the range's tallies: the ten most counted values of each dimension
# but the agents, and of the agents' browser, OS and device families (an agent not parsed yet counts
# as OTHER_SHOWN, as the rest of a crowded day's values do: no host name, country code, bot reason
# or family is spelt so), with the number of agents not parsed yet ('unparsed'). Ties in the order
# of the values' code points, as Python sorts them. The CASE keeps every value but an agent's id
# away from the cast, whatever order the plan takes.
TOP_LISTS = """
WITH tallies AS MATERIALIZED (
    SELECT dimension, value, sum(count)::bigint AS count FROM scan_tallies
    WHERE code_id = :code AND day >= :first AND day < :last
    GROUP BY dimension, value
    HAVING sum(count) > 0
), agents AS (
    SELECT t.count, ua.browser, ua.os, ua.device, ua.id IS NOT NULL AND ua.parsed_at IS NULL AS unparsed
    FROM tallies AS t
    LEFT JOIN user_agents AS ua
        ON ua.id = CAST(CASE WHEN t.dimension = 'agent' AND t.value <> :other THEN t.value END AS integer)
    WHERE t.dimension = 'agent'
), entries AS (
    SELECT dimension AS kind, CASE WHEN value = :other THEN :other_shown ELSE value END AS value, count
    FROM tallies WHERE dimension <> 'agent'
    UNION ALL
    SELECT family.kind, coalesce(family.value, :other_shown), a.count
    FROM agents AS a
    CROSS JOIN LATERAL (VALUES ('browsers', a.browser), ('os', a.os), ('devices', a.device))
        AS family(kind, value)
    UNION ALL
    SELECT 'unparsed', '', count(*) FROM agents WHERE unparsed HAVING count(*) > 0
)
SELECT kind, value, count FROM (
    SELECT kind, value, sum(count)::bigint AS count,
        row_number() OVER (PARTITION BY kind ORDER BY sum(count) DESC, value COLLATE "C") AS rank
    FROM entries
    GROUP BY kind, value
) AS ranked
WHERE rank <= :top OR kind = 'rule'
"""
# A code's scans per bucket and redirect rule, from raw scans (by=rule).
RULE_SERIES = """
SELECT width_bucket(scanned_at, CAST(:bounds AS timestamptz[])) AS bucket, rule, count(*) AS n
FROM scans
WHERE code_id = :code AND scanned_at >= :start AND scanned_at < :end AND rule IS NOT NULL
GROUP BY 1, 2
"""
# The agents of the range not parsed yet, the most scanned first (MATERIALIZED: only agent ids
# reach the cast).
UNPARSED = """
WITH agents AS MATERIALIZED (
    SELECT value, sum(count) AS count FROM scan_tallies
    WHERE code_id = :code AND day >= :first AND day < :last AND dimension = 'agent' AND value <> :other
    GROUP BY value
    HAVING sum(count) > 0
)
SELECT ua.id, ua.agent FROM agents AS a
JOIN user_agents AS ua ON ua.id = CAST(a.value AS integer)
WHERE ua.parsed_at IS NULL
ORDER BY a.count DESC, ua.id
LIMIT :most
"""
# Per tag from its own rollups, never a row per code: whole months from scan_tag_months, and days
# from scan_tag_days, added or, where a month is nearly whole, taken away from it (sign -1). The
# codes of a tag scanned in the range [first, last) are those with a scan day in it whose scan day
# before lies before it (scan_tag_code_*.since < first): each counted once, on its first day there.
# A code's tags are the ones it carries now (a change moves its past scans), a deleted code's the
# ones it had.
BY_TAG = """
WITH totals AS (
    SELECT tag, total, bots FROM scan_tag_months WHERE month = ANY(CAST(:months AS date[]))
    UNION ALL
    SELECT d.tag, r.sign * d.total, r.sign * d.bots
    FROM unnest(CAST(:starts AS date[]), CAST(:ends AS date[]), CAST(:signs AS int[])) AS r(start, stop, sign)
    JOIN scan_tag_days d ON d.day >= r.start AND d.day < r.stop
), codes AS (
    SELECT tag, codes FROM scan_tag_code_months
    WHERE month = ANY(CAST(:months AS date[])) AND since < :first
    UNION ALL
    SELECT d.tag, r.sign * d.codes
    FROM unnest(CAST(:starts AS date[]), CAST(:ends AS date[]), CAST(:signs AS int[])) AS r(start, stop, sign)
    JOIN scan_tag_code_days d ON d.day >= r.start AND d.day < r.stop AND d.since < :first
)
SELECT t.tag, t.total, t.bots, coalesce(c.codes, 0) AS codes
FROM (SELECT tag, sum(total)::bigint AS total, sum(bots)::bigint AS bots FROM totals GROUP BY tag) AS t
LEFT JOIN (SELECT tag, sum(codes)::bigint AS codes FROM codes GROUP BY tag) AS c USING (tag)
WHERE t.total > 0
ORDER BY t.total DESC, t.tag
"""

# For a caller limited to tags: summed per code in scope first, then per tag (a code counts once per
# tag), from the codes' own rollups; a code in scope may carry tags out of it, which the tags'
# rollups cannot tell apart. Whole months from scan_months, days from scan_days (as BY_TAG).
BY_TAG_SOME_CODES = """
WITH parts AS (
    SELECT code_id, total, bots FROM scan_months
    WHERE month = ANY(CAST(:months AS date[])) AND code_id = ANY(CAST(:codes AS text[]))
    UNION ALL
    SELECT d.code_id, r.sign * d.total, r.sign * d.bots
    FROM unnest(CAST(:starts AS date[]), CAST(:ends AS date[]), CAST(:signs AS int[])) AS r(start, stop, sign)
    JOIN scan_days d ON d.day >= r.start AND d.day < r.stop AND d.code_id = ANY(CAST(:codes AS text[]))
), per_code AS (
    SELECT code_id, sum(total)::bigint AS total, sum(bots)::bigint AS bots FROM parts
    GROUP BY code_id HAVING sum(total) > 0
)
SELECT tag, sum(p.total)::bigint AS total, sum(p.bots)::bigint AS bots, count(*) AS codes
FROM per_code p JOIN qr_codes c ON c.id = p.code_id
CROSS JOIN LATERAL (SELECT DISTINCT unnest(c.tags)) AS t(tag)
GROUP BY tag ORDER BY total DESC, tag
"""


def month_plan(first: date, last: date) -> tuple[list[date], list[tuple[date, date, int]]]:
    """The UTC days [first, last) as whole months and day ranges with a sign: each month the range
    covers only in part is its days (+1) or, when that is fewer rows, the month less the days it
    leaves out (-1)."""
    months: list[date] = []
    ranges: list[tuple[date, date, int]] = []
    month = first.replace(day=1)
    while month < last:
        following = (month + timedelta(days=32)).replace(day=1)
        start, stop = max(first, month), min(last, following)
        inside, length = (stop - start).days, (following - month).days
        if inside == length:
            months.append(month)
        elif inside <= length - inside:
            ranges.append((start, stop, 1))
        else:
            months.append(month)
            ranges += [(a, b, -1) for a, b in ((month, start), (stop, following)) if a < b]
        month = following
    return months, ranges


FIRST_LAST = "SELECT first_scan_at, last_scan_at FROM scan_counts WHERE code_id = :code"
FIRST_LAST_EVERY_CODE = "SELECT first_scan_at, last_scan_at FROM scan_span"  # kept by the writer
RAW_SINCE = "SELECT raw_since FROM scan_retention"
CODE_EXISTS = "SELECT 1 FROM qr_codes WHERE id = :code"
# The codes (deleted ones too) a caller limited to tags sees, for its every-code report.
IN_SCOPE = "SELECT id FROM qr_codes WHERE tags && CAST(:tags AS text[])"
ONE_CODE = "code_id = :code"
SOME_CODES = "code_id = ANY(CAST(:codes AS text[]))"
FIRST_LAST_SOME_CODES = """
SELECT min(first_scan_at), max(last_scan_at) FROM scan_counts
WHERE code_id = ANY(CAST(:codes AS text[]))
"""


def _over(statement: str, codes: list[str] | None) -> str:
    """A query of one code (or of every code's rows), made one of the codes ``codes`` when given."""
    if codes is None:
        return statement
    if ONE_CODE in statement:
        return statement.replace(ONE_CODE, SOME_CODES)
    if statement == FIRST_LAST_EVERY_CODE:
        return FIRST_LAST_SOME_CODES
    if statement == HOURLY_VISITORS_EVERY_CODE:
        return HOURLY_VISITORS.replace(ONE_CODE, SOME_CODES)
    assert "code_id <> ''" in statement, "a query that cannot be limited to some codes"
    return statement.replace("code_id <> ''", SOME_CODES)


NOON = time(12, tzinfo=UTC)


def _noon_days(span: Range) -> tuple[date, date]:
    """The UTC days whose noon lies in the range, as [first, last)."""
    start, end = span.start.astimezone(UTC), span.end.astimezone(UTC)
    first = start.date() if start.timetz() <= NOON else start.date() + timedelta(days=1)
    last = end.date() if end.timetz() <= NOON else end.date() + timedelta(days=1)
    return first, max(first, last)


async def report(
    conn: AsyncConnection,
    code_id: str | None,
    query: ScanQuery,
    *,
    now: datetime,
    countries: bool,
    scope: frozenset[str] | None = None,
) -> ScanReport:
    """The statistics of one code (``code_id``) or of every code (``None``; every code carrying one
    of the tags ``scope``, when given) over ``query``'s range."""
    span = make_range(query, now)
    code = code_id if code_id is not None else EVERY_CODE
    if code_id is not None and (await conn.execute(text(CODE_EXISTS), {"code": code})).first() is None:
        raise CodeNotFound(code_id)
    some: list[str] | None = None  # the codes an every-code report is limited to
    if code_id is None and scope is not None:
        some = list((await conn.execute(text(IN_SCOPE), {"tags": sorted(scope)})).scalars())
    bounds = span.utc_bounds()
    instants = bounds[:-1]
    totals, bots = [0] * len(instants), [0] * len(instants)
    runs, parts = split_days(bounds, hours=span.interval == "hour")
    if parts:
        for bucket, total, bot in await conn.execute(
            text(_over(QUARTERS, some)),
            {
                "code": code,
                "codes": some,
                "bounds": bounds,
                "starts": [p[0] for p in parts],
                "ends": [p[1] for p in parts],
            },
        ):
            totals[bucket - 1] += total
            bots[bucket - 1] += bot

    first, last = _noon_days(span)
    edges = [day for run in runs for day in run[:2]]
    by_noon = [0] * len(instants)  # visitors of the UTC days whose noon is in each bucket
    for edge, noon, total, bot, visitors in await conn.execute(
        text(_over(DAYS, some)),
        {"code": code, "codes": some, "first": first, "last": last, "edges": edges, "bounds": bounds},
    ):
        if edge % 2 == 1:  # a day wholly in one bucket
            bucket = runs[(edge - 1) // 2][2]
            totals[bucket] += total
            bots[bucket] += bot
        by_noon[noon - 1] += visitors
    people = [t - b for t, b in zip(totals, bots, strict=True)]
    if span.interval == "hour":  # exact: the distinct hashes of each hour's raw scans
        uniques = [0] * len(instants)
        statement = HOURLY_VISITORS if code_id is not None else HOURLY_VISITORS_EVERY_CODE
        for bucket, visitors in await conn.execute(
            text(_over(statement, some)),
            {"code": code, "codes": some, "bounds": bounds, "start": bounds[0], "end": bounds[-1]},
        ):
            if 1 <= bucket <= len(instants):
                uniques[bucket - 1] = visitors
    else:
        uniques = [min(u, p) for u, p in zip(by_noon, people, strict=True)]

    if code_id is not None:
        span_first, span_last = (await conn.execute(text(FIRST_LAST), {"code": code})).one_or_none() or (
            None,
            None,
        )
    else:
        span_first, span_last = (
            await conn.execute(text(_over(FIRST_LAST_EVERY_CODE, some)), {"codes": some})
        ).one_or_none() or (None, None)
    raw_since = (await conn.execute(text(RAW_SINCE))).scalar_one_or_none()
    by_tag = None
    if code_id is None:
        by_tag = [
            TagTotals(tag=tag, total=total, people=total - bot, bots=bot, codes=codes)
            for tag, total, bot, codes in await conn.execute(
                text(BY_TAG if some is None else BY_TAG_SOME_CODES),
                {**_by_tag_parameters(first, last), "codes": some},
            )
        ]
    by_rule = None
    if query.by == "rule" and code_id is not None:
        series: dict[str, list[int]] = {}
        for bucket, rule, n in await conn.execute(
            text(RULE_SERIES), {"code": code, "bounds": bounds, "start": bounds[0], "end": bounds[-1]}
        ):
            if 1 <= bucket <= len(instants):
                series.setdefault(rule, [0] * len(instants))[bucket - 1] += n
        by_rule = [RuleSeries(value=value, counts=counts) for value, counts in sorted(series.items())]
    return ScanReport(
        code_id=code_id,
        total=sum(totals),
        people=sum(people),
        bots=sum(bots),
        unique=min(sum(people), sum(by_noon)),
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
        top=await _top_lists(conn, code, first, last, countries=countries, some=some),
        raw_since=raw_since,
        by_tag=by_tag,
        by_rule=by_rule,
    )


def split_days(
    bounds: list[datetime], *, hours: bool
) -> tuple[list[tuple[date, date, int]], list[tuple[datetime, datetime]]]:
    """The UTC days that lie wholly in one bucket, as runs (first day, the day after the last, the
    bucket's index), and the rest of the range as parts to count from quarter hours (adjacent ones
    joined); bucket by bucket, never day by day. Hour buckets: all parts."""
    if hours:
        return [], [(bounds[0], bounds[-1])]
    runs: list[tuple[date, date, int]] = []
    parts: list[tuple[datetime, datetime]] = []

    def part(start: datetime, stop: datetime) -> None:
        if start >= stop:
            return
        if parts and parts[-1][1] == start:
            parts[-1] = (parts[-1][0], stop)
        else:
            parts.append((start, stop))

    for index, (start, stop) in enumerate(itertools.pairwise(bounds)):
        start, stop = start.astimezone(UTC), stop.astimezone(UTC)
        first = start.date() if start.timetz() == time(tzinfo=UTC) else start.date() + timedelta(days=1)
        last = stop.date()  # the first UTC day not wholly in the bucket
        if first >= last:
            part(start, stop)
            continue
        part(start, datetime.combine(first, time(), UTC))
        runs.append((first, last, index))
        part(datetime.combine(last, time(), UTC), stop)
    return runs, parts


def _by_tag_parameters(first: date, last: date) -> dict[str, Any]:
    months, ranges = month_plan(first, last)
    return {
        "first": first,
        "months": months,
        "starts": [r[0] for r in ranges],
        "ends": [r[1] for r in ranges],
        "signs": [r[2] for r in ranges],
    }


async def _top_lists(
    conn: AsyncConnection, code: str, first: date, last: date, *, countries: bool, some: list[str] | None
) -> TopLists:
    """Ten entries a list, ranked by PostgreSQL. Agents a list counts that were never parsed are
    parsed first (once each, at most PARSED_AT_ONCE an answer, the most scanned first; the rest
    count as Other until a later answer parses them), and the lists read again."""
    days = {
        "code": code,
        "codes": some,
        "first": first,
        "last": last,
        "other": OTHER,
        "other_shown": OTHER_SHOWN,
        "top": TOP,
    }
    lists = await _ranked(conn, days, some)
    if "unparsed" in lists:
        unparsed = await conn.execute(text(_over(UNPARSED, some)), {**days, "most": PARSED_AT_ONCE})
        if rows := [(row.id, row.agent) for row in unparsed]:
            await agents.parse_and_store(conn, rows)
            lists = await _ranked(conn, days, some)
    return TopLists(
        countries=lists.get("country", []) if countries else None,
        referrers=lists.get("referrer", []),
        devices=lists.get("devices", []),
        os=lists.get("os", []),
        browsers=lists.get("browsers", []),
        bot_reasons=lists.get("bot_reason", []),
        rules=lists.get("rule", []),
    )


async def _ranked(
    conn: AsyncConnection, days: dict[str, Any], some: list[str] | None
) -> dict[str, list[TopEntry]]:
    lists: dict[str, list[TopEntry]] = {}
    for kind, value, count in await conn.execute(text(_over(TOP_LISTS, some)), days):
        lists.setdefault(kind, []).append(TopEntry(value=value, count=count))
    for entries in lists.values():
        entries.sort(key=lambda entry: (-entry.count, entry.value))
    return lists
