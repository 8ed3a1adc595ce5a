"""One batch of scans into the database: the raw rows and every rollup, in one statement.

The writer sends a batch as groups of scans alike in everything but their moment (one code, user
agent, referrer, visitor and place; a burst from one client is one group), each with the text of
its moments as an array, copied into a temporary table (``COPY``, emptied at commit). PostgreSQL
does the rest in one statement: it unfolds the groups into the raw rows of ``scans`` and adds the
batch to each rollup with one upsert grouped by its key: the running totals per code
(``scan_counts``), quarter hours (``scan_quarters``), UTC days with their unique visitors
(``scan_days``, each visitor hash counted once per code and day through ``scan_day_visitors``), UTC
months (``scan_months``), and the top lists' tallies (``scan_tallies``, which redirect rule served
them among them: a code's own, never summed over every code). Each rollup is kept per
code and, under the code id '', for every code together (a grouping set). The totals per tag the
codes carry (``scan_tag_days``, ``scan_tag_months``: the tags read from ``qr_codes`` as committed
when the batch holds the SCAN_WRITE lock, which a change of a code's tags takes too, in its trigger:
the two follow each other, and the change moves what the batch added), the codes per tag and day
with the day each was scanned before (``scan_tag_code_days``, ``scan_tag_code_months``: a code's
first scan of a day counts it, and a late scan landing before a day the code already has makes it
that day's day before), and the first and last scan of every code (``scan_span``) follow the
same batch. A batch takes the SCAN_WRITE advisory lock before its statement, as an erasure and a
move of tags do: writers of several processes follow each other, each reading what the one before
committed (a code's day before, above all), and none can deadlock with another; every upsert also
takes its rows in key order.

The tallies keep at most ``MAX_TALLY_VALUES`` distinct values per code (and for every code), UTC
day and dimension: anyone can send a new user agent or referrer with every scan, and each would
otherwise be a row kept until the retention. A value the day has not seen yet is kept while there
is room, the batch's most frequent first; the rest are counted under ``OTHER``, so a day's tallies
still add up to its scans. Two writers that find room at the same moment may each fill it: a day
holds at most the cap times the writers adding to it at once, and takes no new value after that.

Counting in Python cost the redirect worker a fifth of its time under load (py-spy: the Counters of
this module and the encoding of their arrays); grouped in PostgreSQL it is a few milliseconds of
the database's time per batch. ``COPY`` rather than array parameters: asyncpg checks every array
element against the ``collections.abc`` types, a Python call each, which cost more than the copy.
Groups rather than a row per scan: the copy encodes every field of every row it gets; 20,000 scans
of 50 clients cost the worker 6 µs of Python a scan and the database 9 µs as rows, 1.3 µs and 5 µs
as groups, and scans of as many clients as scans cost what they did (the CPU of each process while
the writer flushed). Moments go as whole microseconds: an integer's text costs a third of a float's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from services.redirect.visitors import Connection
from shared.database import AdvisoryLock

EVERY_CODE = ""  # the code id of the rollups over all codes
# Distinct values a tally keeps per code, day and dimension; and the value that counts the rest (no
# value of any dimension is empty: agent ids, host names, country codes, bot reasons).
MAX_TALLY_VALUES = 1_000
OTHER = ""

BATCH_COLUMNS = (
    "code_id",
    "agent_id",
    "referrer",
    "referrer_host",
    "visitor_hash",
    "bot_reason",
    "country",
    "city",
    "moments",
)
# What the writer copies: the columns above, then which rule or variant served the scans (a
# column of its own, last, so that a batch copied without it counts no rule).
WRITTEN_COLUMNS = (*BATCH_COLUMNS, "rule")
# Made in the batch's own transaction if this server session has none yet: through PgBouncer in
# transaction mode consecutive batches may land on different server sessions.
STAGE = """
SET LOCAL client_min_messages = warning;
CREATE TEMPORARY TABLE IF NOT EXISTS scan_batch (
    code_id text NOT NULL, agent_id integer, referrer text, referrer_host text, visitor_hash bytea,
    bot_reason text, country text, city text, moments text NOT NULL, rule text
) ON COMMIT DELETE ROWS
"""
# The groups unfold into one row per scan, day and quarter worked out once per row; ``facts`` groups
# the rows that count alike (a few per batch, however many scans), so that every rollup but the
# visitors' adds up groups, not rows. The rollups over every code are the grouping set without the
# code, named '' (no code has an empty id).
WRITE = f"""
WITH batch AS MATERIALIZED (
    SELECT g.code_id, to_timestamp(m.micros::float8 / 1000000) AS scanned_at,
        date '1970-01-01' + (m.micros / 86400000000)::int AS day,
        to_timestamp(m.micros / 900000000 * 900) AS quarter,
        g.agent_id, g.referrer, g.referrer_host, g.visitor_hash, g.bot_reason, g.country, g.city, g.rule
    FROM pg_temp.scan_batch AS g CROSS JOIN LATERAL unnest(g.moments::int8[]) AS m(micros)
), raw AS (
    INSERT INTO scans (code_id, scanned_at, agent_id, referrer, visitor_hash, is_bot, country, city, rule)
    SELECT code_id, scanned_at, agent_id, referrer, visitor_hash, bot_reason IS NOT NULL, country, city, rule
    FROM batch
), facts AS MATERIALIZED (
    SELECT code_id, day, quarter, agent_id, referrer_host, bot_reason, country, rule,
        count(*) AS n, min(scanned_at) AS first_scan_at, max(scanned_at) AS last_scan_at
    FROM batch GROUP BY code_id, day, quarter, agent_id, referrer_host, bot_reason, country, rule
), counts AS (
    INSERT INTO scan_counts (code_id, total, bots, first_scan_at, last_scan_at)
    SELECT code_id, sum(n), coalesce(sum(n) FILTER (WHERE bot_reason IS NOT NULL), 0),
        min(first_scan_at), max(last_scan_at)
    FROM facts GROUP BY code_id ORDER BY 1
    ON CONFLICT (code_id) DO UPDATE SET
        total = scan_counts.total + EXCLUDED.total,
        bots = scan_counts.bots + EXCLUDED.bots,
        first_scan_at = least(scan_counts.first_scan_at, EXCLUDED.first_scan_at),
        last_scan_at = greatest(scan_counts.last_scan_at, EXCLUDED.last_scan_at)
), quarters AS (
    INSERT INTO scan_quarters (code_id, quarter, total, bots)
    SELECT CASE WHEN grouping(code_id) = 0 THEN code_id ELSE '' END, quarter,
        sum(n), coalesce(sum(n) FILTER (WHERE bot_reason IS NOT NULL), 0)
    FROM facts GROUP BY GROUPING SETS ((code_id, quarter), (quarter)) ORDER BY 1, 2
    ON CONFLICT (code_id, quarter) DO UPDATE SET
        total = scan_quarters.total + EXCLUDED.total, bots = scan_quarters.bots + EXCLUDED.bots
), new_visitors AS (
    -- A day's visitors grow by the hashes not seen before that day (RETURNING says which were new).
    INSERT INTO scan_day_visitors (code_id, day, visitor_hash)
    SELECT CASE WHEN grouping(code_id) = 0 THEN code_id ELSE '' END, day, visitor_hash
    FROM batch WHERE bot_reason IS NULL AND visitor_hash IS NOT NULL
    GROUP BY GROUPING SETS ((code_id, day, visitor_hash), (day, visitor_hash))
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING code_id, day
), days AS (
    INSERT INTO scan_days (code_id, day, total, bots, visitors)
    SELECT counted.code_id, counted.day, counted.total, counted.bots, coalesce(fresh.visitors, 0)
    FROM (
        SELECT CASE WHEN grouping(code_id) = 0 THEN code_id ELSE '' END AS code_id, day,
            sum(n) AS total, coalesce(sum(n) FILTER (WHERE bot_reason IS NOT NULL), 0) AS bots
        FROM facts GROUP BY GROUPING SETS ((code_id, day), (day))
    ) AS counted
    LEFT JOIN (SELECT code_id, day, count(*) AS visitors FROM new_visitors GROUP BY 1, 2) AS fresh
        USING (code_id, day)
    ORDER BY 1, 2
    ON CONFLICT (code_id, day) DO UPDATE SET
        total = scan_days.total + EXCLUDED.total,
        bots = scan_days.bots + EXCLUDED.bots,
        visitors = scan_days.visitors + EXCLUDED.visitors
    RETURNING code_id, day, xmax = 0 AS inserted
), tagged AS MATERIALIZED (
    -- The batch's codes' tags, each once, as committed: a change of a code's tags in progress waits
    -- for this batch (its trigger takes SCAN_WRITE) and then moves these scans too.
    SELECT locked.id AS code_id, t.tag
    FROM (SELECT id, tags FROM qr_codes WHERE id IN (SELECT code_id FROM facts)) AS locked
    CROSS JOIN LATERAL (SELECT DISTINCT unnest(locked.tags)) AS t(tag)
), tag_days AS (
    INSERT INTO scan_tag_days (tag, day, total, bots)
    SELECT t.tag, f.day, sum(f.n), coalesce(sum(f.n) FILTER (WHERE f.bot_reason IS NOT NULL), 0)
    FROM facts AS f JOIN tagged AS t USING (code_id) GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tag, day) DO UPDATE SET
        total = scan_tag_days.total + EXCLUDED.total, bots = scan_tag_days.bots + EXCLUDED.bots
), tag_months AS (
    INSERT INTO scan_tag_months (tag, month, total, bots)
    SELECT t.tag, date_trunc('month', f.day)::date, sum(f.n),
        coalesce(sum(f.n) FILTER (WHERE f.bot_reason IS NOT NULL), 0)
    FROM facts AS f JOIN tagged AS t USING (code_id) GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (tag, month) DO UPDATE SET
        total = scan_tag_months.total + EXCLUDED.total, bots = scan_tag_months.bots + EXCLUDED.bots
), arrivals AS MATERIALIZED (
    -- A code's first scan of a day (its scan_days row is new) counts the code on that day, with
    -- the day it was scanned before (since). A day that lands before one the code already has (a
    -- late scan) becomes that day's since: the later day moves (two short reads of the primary key).
    SELECT n.code_id, n.day, before.day AS before, after.day AS after,
        coalesce(greatest(before.day, lag(n.day) OVER (PARTITION BY n.code_id ORDER BY n.day)),
            '-infinity') AS since
    FROM days AS n
    LEFT JOIN LATERAL (
        SELECT d.day FROM scan_days AS d WHERE d.code_id = n.code_id AND d.day < n.day
        ORDER BY d.day DESC LIMIT 1
    ) AS before ON true
    LEFT JOIN LATERAL (
        SELECT d.day FROM scan_days AS d WHERE d.code_id = n.code_id AND d.day > n.day
        ORDER BY d.day LIMIT 1
    ) AS after ON true
    WHERE n.inserted AND n.code_id <> ''
), code_moves AS MATERIALIZED (
    SELECT t.tag, m.day, m.since, sum(m.codes) AS codes
    FROM (
        SELECT code_id, day, since, 1 AS codes FROM arrivals
        UNION ALL
        SELECT code_id, after, moved.since, moved.codes
        FROM (
            SELECT DISTINCT ON (code_id, after) code_id, after, day, before
            FROM arrivals WHERE after IS NOT NULL ORDER BY code_id, after, day DESC
        ) AS latest
        CROSS JOIN LATERAL (VALUES (coalesce(latest.before, '-infinity'), -1), (latest.day, 1))
            AS moved(since, codes)
    ) AS m
    JOIN tagged AS t USING (code_id)
    GROUP BY 1, 2, 3
    HAVING sum(m.codes) <> 0
), tag_code_days AS (
    INSERT INTO scan_tag_code_days (tag, day, since, codes)
    SELECT tag, day, since, codes FROM code_moves ORDER BY 1, 2, 3
    ON CONFLICT (tag, day, since) DO UPDATE SET codes = scan_tag_code_days.codes + EXCLUDED.codes
), tag_code_months AS (
    INSERT INTO scan_tag_code_months (tag, month, since, codes)
    SELECT tag, date_trunc('month', day)::date, since, sum(codes) FROM code_moves
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tag, month, since) DO UPDATE SET codes = scan_tag_code_months.codes + EXCLUDED.codes
), span AS (
    INSERT INTO scan_span (first_scan_at, last_scan_at)
    SELECT min(first_scan_at), max(last_scan_at) FROM facts
    ON CONFLICT (id) DO UPDATE SET
        first_scan_at = least(scan_span.first_scan_at, EXCLUDED.first_scan_at),
        last_scan_at = greatest(scan_span.last_scan_at, EXCLUDED.last_scan_at)
), months AS (
    INSERT INTO scan_months (code_id, month, total, bots)
    SELECT CASE WHEN grouping(code_id) = 0 THEN code_id ELSE '' END, date_trunc('month', day)::date,
        sum(n), coalesce(sum(n) FILTER (WHERE bot_reason IS NOT NULL), 0)
    FROM facts GROUP BY GROUPING SETS ((code_id, date_trunc('month', day)), (date_trunc('month', day)))
    ORDER BY 1, 2
    ON CONFLICT (code_id, month) DO UPDATE SET
        total = scan_months.total + EXCLUDED.total, bots = scan_months.bots + EXCLUDED.bots
), tallied AS MATERIALIZED (
    SELECT CASE WHEN grouping(facts.code_id) = 0 THEN facts.code_id ELSE '' END AS code_id, facts.day,
        tally.dimension, tally.value, sum(facts.n) AS n
    FROM facts CROSS JOIN LATERAL (VALUES
        ('bot_reason', facts.bot_reason),
        ('agent', CASE WHEN facts.bot_reason IS NULL THEN facts.agent_id::text END),
        ('referrer', CASE WHEN facts.bot_reason IS NULL THEN facts.referrer_host END),
        ('country', CASE WHEN facts.bot_reason IS NULL THEN facts.country END),
        -- Every scan a code's rules sent, bots too (the rules send them as they send people).
        ('rule', facts.rule)
    ) AS tally(dimension, value)
    WHERE tally.value IS NOT NULL
    GROUP BY GROUPING SETS ((facts.code_id, facts.day, tally.dimension, tally.value),
        (facts.day, tally.dimension, tally.value))
    -- Rules are a code's own: their numbers mean nothing over every code together.
    HAVING grouping(facts.code_id) = 0 OR tally.dimension <> 'rule'
), crowded AS MATERIALIZED (
    -- The days (of a code, or '') that may have too little room for this batch's agents or
    -- referrers, and the room they have. A day holds no more values than it had scans (scan_days
    -- as it was before this batch), and most are far from the cap: only the others count what they
    -- hold, up to the cap (a short read of the primary key's index). Countries and bot reasons are
    -- few by nature: never capped.
    SELECT g.code_id, g.day, g.dimension, g.given, {MAX_TALLY_VALUES} - (
        SELECT count(*) FROM (
            SELECT FROM scan_tallies AS s
            WHERE s.code_id = g.code_id AND s.day = g.day AND s.dimension = g.dimension
                AND s.value <> '{OTHER}'
            LIMIT {MAX_TALLY_VALUES}
        ) AS held
    ) AS room
    FROM (
        SELECT code_id, day, dimension, count(*) AS given, sum(n) AS n FROM tallied
        WHERE dimension IN ('agent', 'referrer') GROUP BY 1, 2, 3
    ) AS g
    LEFT JOIN scan_days AS d ON d.code_id = g.code_id AND d.day = g.day
    WHERE coalesce(d.total, 0) + g.n > {MAX_TALLY_VALUES}
), placed AS (
    SELECT t.code_id, t.day, t.dimension, t.value, t.n FROM tallied AS t
    WHERE NOT EXISTS (
        SELECT FROM crowded AS c
        WHERE c.code_id = t.code_id AND c.day = t.day AND c.dimension = t.dimension
    )
    UNION ALL
    -- On a crowded day a value it holds adds to its row whatever the cap (looked up only where the
    -- batch brings more values than there is room); new ones take the room left, the batch's most
    -- frequent first, and the rest count as OTHER.
    SELECT code_id, day, dimension, value, sum(n) FROM (
        SELECT code_id, day, dimension, n,
            CASE WHEN kept OR row_number() OVER (
                PARTITION BY code_id, day, dimension, kept ORDER BY n DESC, value
            ) <= room THEN value ELSE '{OTHER}' END AS value
        FROM (
            SELECT t.code_id, t.day, t.dimension, t.value, t.n, c.room,
                CASE WHEN c.room >= c.given THEN true
                    ELSE (
                        SELECT true FROM scan_tallies AS s
                        WHERE s.code_id = t.code_id AND s.day = t.day AND s.dimension = t.dimension
                            AND s.value = t.value
                    ) IS NOT NULL
                END AS kept
            FROM tallied AS t JOIN crowded AS c USING (code_id, day, dimension)
        ) AS known
    ) AS capped
    GROUP BY 1, 2, 3, 4
)
INSERT INTO scan_tallies (code_id, day, dimension, value, count)
SELECT * FROM placed ORDER BY 1, 2, 3, 4
ON CONFLICT (code_id, day, dimension, value) DO UPDATE SET count = scan_tallies.count + EXCLUDED.count
"""  # noqa: S608 - built from the constants above, never from input
LOCK = "SELECT pg_advisory_xact_lock($1)"
ALL = (LOCK, WRITE)  # prepared once STAGE has run


class Scans(NamedTuple):
    """Scans alike in everything but their moment, as the writer worked them out: what is stored,
    and what the rollups count (the fields in the order of ``BATCH_COLUMNS``)."""

    code_id: str
    agent_id: int | None  # None only for scans whose agent could not be named (never by this writer)
    referrer: str | None
    referrer_host: str | None
    visitor: bytes
    bot_reason: str | None  # None: a person
    country: str | None
    city: str | None
    moments: list[float]  # Unix times, one per scan (from 1970 on)
    rule: str | None = None  # what served them: "rule 2", "variant a", "default"; None: a code without rules


def moments_text(moments: Sequence[float]) -> str:
    """An array literal of ``moments`` in whole microseconds (what a timestamp holds): an integer's
    text costs a third of a float's ``repr``, the largest cost of a batch in the worker."""
    return "{" + ",".join([str(int(moment * 1_000_000 + 0.5)) for moment in moments]) + "}"


async def write(connection: Connection, groups: Sequence[Scans]) -> None:
    """Write the scans of ``groups`` and add them to every rollup, all or nothing."""
    if not groups:
        return
    async with connection.transaction():
        await connection.execute(STAGE)
        await connection.copy_records_to_table(
            "scan_batch",
            schema_name="pg_temp",
            records=[(*group[:8], moments_text(group.moments), group.rule) for group in groups],
            columns=WRITTEN_COLUMNS,
        )
        # A statement of its own: WRITE's snapshot is then taken once the batch before committed.
        await connection.execute(LOCK, AdvisoryLock.SCAN_WRITE)
        await connection.execute(WRITE)
