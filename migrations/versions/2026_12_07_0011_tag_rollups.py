"""Rollups per tag, so that statistics over every code read no row per code.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

- ``scan_tag_days`` and ``scan_tag_months``: per tag and UTC day (month), the scans of the codes
  carrying the tag (a code counts once per tag, however often the tag is in its list).
- ``scan_tag_code_days`` and ``scan_tag_code_months``: per tag, UTC day (month) and ``since``, how many
  codes carrying the tag were scanned that day after last being scanned on the day ``since``
  (``-infinity``: never before). The codes of a tag scanned in a range [first, last) are the rows of
  its days with ``since < first``: each such code is counted once, on its first day in the range.
- ``scan_span``: one row, the first and the last scan of every code together.

All are kept by the scan writer in the transaction of each batch. A code's tags are the ones it
carries now: the trigger ``qr_codes_tags_moved`` moves a code's past scans from the tags it loses
to the tags it gains, in the transaction that changes them (a row per tag and day the code was
scanned), whatever writes the change. ``scan_tag_shift`` does the moving; erasing a code's scans
calls it too.

The rollups are backfilled from ``scan_days`` (kept for ever) and ``scan_counts``, with
``scan_days`` locked against writes meanwhile. A redirect process of the version before keeps
writing after the migration, without these rollups: its batches are missing from the totals per
tag (not from any other answer), so the redirect service is upgraded right after the migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Adds (sign 1) or takes away (-1) a code's scans to or from the rollups of the given tags: its
# scan_days rows as they are, each with the day before it that the code was scanned. Rows are taken
# in key order, as the writer takes them, so that the two wait for each other.
SHIFT = """
CREATE FUNCTION scan_tag_shift(code text, shifted text[], sign integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(shifted) = 0 THEN
        RETURN;
    END IF;
    WITH code_rows AS MATERIALIZED (
        SELECT t.tag, d.day, d.since, d.total, d.bots
        FROM (
            SELECT day, coalesce(lag(day) OVER (ORDER BY day), '-infinity') AS since, total, bots
            FROM scan_days WHERE code_id = code
        ) AS d
        CROSS JOIN (SELECT DISTINCT unnest(shifted) AS tag) AS t
    ), days AS (
        INSERT INTO scan_tag_days AS r (tag, day, total, bots)
        SELECT tag, day, sign * total, sign * bots FROM code_rows ORDER BY 1, 2
        ON CONFLICT (tag, day) DO UPDATE SET total = r.total + EXCLUDED.total, bots = r.bots + EXCLUDED.bots
    ), months AS (
        INSERT INTO scan_tag_months AS r (tag, month, total, bots)
        SELECT tag, date_trunc('month', day)::date, sign * sum(total), sign * sum(bots)
        FROM code_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (tag, month) DO UPDATE SET total = r.total + EXCLUDED.total, bots = r.bots + EXCLUDED.bots
    ), code_days AS (
        INSERT INTO scan_tag_code_days AS r (tag, day, since, codes)
        SELECT tag, day, since, sign FROM code_rows ORDER BY 1, 2, 3
        ON CONFLICT (tag, day, since) DO UPDATE SET codes = r.codes + EXCLUDED.codes
    )
    INSERT INTO scan_tag_code_months AS r (tag, month, since, codes)
    SELECT tag, date_trunc('month', day)::date, since, sign * count(*)
    FROM code_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tag, month, since) DO UPDATE SET codes = r.codes + EXCLUDED.codes;
END $$
"""
TAGS_MOVED = """
CREATE FUNCTION qr_codes_tags_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- shared.database.AdvisoryLock.SCAN_WRITE: after the scan batch or erasure in progress, whose
    -- rows each statement below then reads as committed; one move of tags at a time.
    PERFORM pg_advisory_xact_lock(7265031004);
    PERFORM scan_tag_shift(NEW.id, ARRAY(SELECT unnest(OLD.tags) EXCEPT SELECT unnest(NEW.tags)), -1);
    PERFORM scan_tag_shift(NEW.id, ARRAY(SELECT unnest(NEW.tags) EXCEPT SELECT unnest(OLD.tags)), 1);
    RETURN NULL;
END $$
"""
TRIGGER = """
CREATE TRIGGER qr_codes_tags_moved AFTER UPDATE OF tags ON qr_codes
FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags) EXECUTE FUNCTION qr_codes_tags_moved()
"""
# Every code's days with the day before each, per tag it carries (the same rows the function adds).
BACKFILL_SHIFTED = """
CREATE TEMPORARY TABLE scan_tag_backfill ON COMMIT DROP AS
SELECT t.tag, d.day, d.since, d.total, d.bots
FROM (
    SELECT code_id, day, total, bots,
        coalesce(lag(day) OVER (PARTITION BY code_id ORDER BY day), '-infinity') AS since
    FROM scan_days WHERE code_id <> ''
) AS d
JOIN qr_codes AS c ON c.id = d.code_id
CROSS JOIN LATERAL (SELECT DISTINCT unnest(c.tags)) AS t(tag)
"""
BACKFILL = (
    "INSERT INTO scan_tag_days (tag, day, total, bots) "
    "SELECT tag, day, sum(total), sum(bots) FROM scan_tag_backfill GROUP BY 1, 2",
    "INSERT INTO scan_tag_months (tag, month, total, bots) "
    "SELECT tag, date_trunc('month', day)::date, sum(total), sum(bots) FROM scan_tag_backfill GROUP BY 1, 2",
    "INSERT INTO scan_tag_code_days (tag, day, since, codes) "
    "SELECT tag, day, since, count(*) FROM scan_tag_backfill GROUP BY 1, 2, 3",
    "INSERT INTO scan_tag_code_months (tag, month, since, codes) "
    "SELECT tag, date_trunc('month', day)::date, since, count(*) FROM scan_tag_backfill GROUP BY 1, 2, 3",
    "INSERT INTO scan_span (first_scan_at, last_scan_at) "
    "SELECT min(first_scan_at), max(last_scan_at) FROM scan_counts HAVING min(first_scan_at) IS NOT NULL",
)


def upgrade() -> None:
    # Writers of the version before keep no tag rollups: none may add scans during the backfill.
    op.execute("LOCK TABLE scan_days IN EXCLUSIVE MODE")
    # Nor may a code's tags change before the trigger that moves their scans is there.
    op.execute("LOCK TABLE qr_codes IN SHARE ROW EXCLUSIVE MODE")
    for name, period in (("scan_tag_days", "day"), ("scan_tag_months", "month")):
        op.create_table(
            name,
            sa.Column("tag", sa.Text(), nullable=False),
            sa.Column(period, sa.Date(), nullable=False),
            sa.Column("total", sa.BigInteger(), nullable=False),
            sa.Column("bots", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("tag", period, name=op.f(f"pk_{name}")),
        )
    for name, period in (("scan_tag_code_days", "day"), ("scan_tag_code_months", "month")):
        op.create_table(
            name,
            sa.Column("tag", sa.Text(), nullable=False),
            sa.Column(period, sa.Date(), nullable=False),
            sa.Column("since", sa.Date(), nullable=False),
            sa.Column("codes", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("tag", period, "since", name=op.f(f"pk_{name}")),
        )
    op.create_table(
        "scan_span",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("first_scan_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_scan_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name=op.f("ck_scan_span_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_span")),
    )
    op.execute(BACKFILL_SHIFTED)
    for statement in BACKFILL:
        op.execute(statement)
    op.execute("DROP TABLE scan_tag_backfill")
    op.execute(SHIFT)
    op.execute(TAGS_MOVED)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER qr_codes_tags_moved ON qr_codes")
    op.execute("DROP FUNCTION qr_codes_tags_moved()")
    op.execute("DROP FUNCTION scan_tag_shift(text, text[], integer)")
    for table in (
        "scan_span",
        "scan_tag_code_months",
        "scan_tag_code_days",
        "scan_tag_months",
        "scan_tag_days",
    ):
        op.drop_table(table)
