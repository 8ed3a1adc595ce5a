"""Scan analytics: raw scans partitioned by month, user agents once each, rollups kept by the writer.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

- ``user_agents``: every user agent once (the writer's bot reason with it; browser, OS and device are
  filled in by the management service when first asked). A scan names its agent by id: a tenth of
  the bytes of the text it used to carry.
- ``scans``: partitioned by month of ``scanned_at`` (UTC), so retention drops whole partitions; a
  default partition catches anything no monthly one takes (``qr-manage maintain`` makes them ahead
  and moves such rows into place). No primary key: an append-only log read by code and time. The
  columns ``user_agent`` and ``bot_reason`` stay for scans written by the version before (it writes
  them, and they are kept as they were); this version writes ``agent_id`` instead.
- Rollups, kept by the scan writer in the transaction of each batch, so that no read counts raw
  scans: ``scan_quarters`` (per code and UTC quarter hour: every time zone's hours and days are made
  of whole quarter hours), ``scan_days`` (per code and UTC day, with the day's unique visitors,
  counted once each through ``scan_day_visitors``), ``scan_months`` (per code and UTC month: sums
  over every code's long ranges, as the totals per tag, read a row a month), ``scan_tallies`` (per code, UTC day, dimension
  and value: countries, referrer hosts, user agents of people; bot reasons of bots). The code id ''
  holds the same for every code together.
- ``scan_counts`` gains the first and last scan times; history learns the action ``erase``.

Existing scans are copied into the new table, and every rollup is computed from them. The old
table is locked against writes for the copy (a writer of the version before waits, times out and
tries again, its scans buffered) and dropped at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The host of a referrer URL, lower case (what the referrers' top list counts).
REFERRER_HOST = r"lower(substring(s.referrer from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:@]+)'))"
MONTHS_AHEAD = 3


def _partitions() -> None:
    """Monthly partitions from the oldest scan's month to MONTHS_AHEAD months ahead, and a default."""
    op.execute("CREATE TABLE scans_default PARTITION OF scans DEFAULT")
    op.execute(
        f"""
        DO $$
        DECLARE
            month date := date_trunc('month', coalesce(
                (SELECT min(scanned_at) FROM scans_0006), now()) AT TIME ZONE 'UTC')::date;
        BEGIN
            WHILE month < (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '{MONTHS_AHEAD} months') LOOP
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF scans FOR VALUES FROM (%L) TO (%L)',
                    'scans_' || to_char(month, 'YYYY_MM'),
                    month::timestamp AT TIME ZONE 'UTC',
                    (month + interval '1 month')::timestamp AT TIME ZONE 'UTC'
                );
                month := month + interval '1 month';
            END LOOP;
        END $$
        """
    )


def upgrade() -> None:
    op.execute("LOCK TABLE scans IN EXCLUSIVE MODE")  # readers go on; writers wait for the copy
    op.create_table(
        "user_agents",
        sa.Column("id", sa.Integer(), sa.Identity(always=True), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("bot_reason", sa.Text(), nullable=True),
        sa.Column("browser", sa.Text(), nullable=True),
        sa.Column("os", sa.Text(), nullable=True),
        sa.Column("device", sa.Text(), nullable=True),
        sa.Column("parsed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_agents")),
        sa.UniqueConstraint("agent", name=op.f("uq_user_agents_agent")),
    )
    op.execute(
        "INSERT INTO user_agents (agent, bot_reason) "
        "SELECT DISTINCT ON (coalesce(user_agent, '')) coalesce(user_agent, ''), bot_reason "
        "FROM scans ORDER BY coalesce(user_agent, ''), scanned_at DESC"
    )
    op.execute("ALTER TABLE scans RENAME TO scans_0006")
    op.execute("ALTER INDEX ix_scans_code_id_scanned_at RENAME TO ix_scans_0006_code_id_scanned_at")
    op.execute("ALTER TABLE scans_0006 RENAME CONSTRAINT pk_scans TO pk_scans_0006")
    op.execute(
        """
        CREATE TABLE scans (
            code_id varchar(64) NOT NULL,
            scanned_at timestamptz NOT NULL DEFAULT now(),
            agent_id integer,
            referrer text,
            visitor_hash bytea,
            is_bot boolean NOT NULL DEFAULT false,
            country text,
            city text,
            user_agent text,
            bot_reason text
        ) PARTITION BY RANGE (scanned_at)
        """
    )
    _partitions()
    op.execute(
        "INSERT INTO scans (code_id, scanned_at, agent_id, referrer, visitor_hash, is_bot, user_agent, bot_reason) "
        "SELECT s.code_id, s.scanned_at, ua.id, s.referrer, s.visitor_hash, s.is_bot, s.user_agent, s.bot_reason "
        "FROM scans_0006 s LEFT JOIN user_agents ua ON ua.agent = coalesce(s.user_agent, '') "
        "ORDER BY s.scanned_at, s.id"
    )
    op.execute("CREATE INDEX ix_scans_code_id_scanned_at ON scans (code_id, scanned_at)")
    op.execute("DROP TABLE scans_0006")

    op.create_table(
        "scan_quarters",
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("quarter", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("bots", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code_id", "quarter", name=op.f("pk_scan_quarters")),
    )
    op.create_table(
        "scan_days",
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("bots", sa.Integer(), nullable=False),
        sa.Column("visitors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code_id", "day", name=op.f("pk_scan_days")),
    )
    op.create_index("ix_scan_days_day", "scan_days", ["day"], postgresql_include=["code_id", "total", "bots"])
    op.create_table(
        "scan_months",
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("bots", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code_id", "month", name=op.f("pk_scan_months")),
    )
    op.create_table(
        "scan_day_visitors",
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("visitor_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("code_id", "day", "visitor_hash", name=op.f("pk_scan_day_visitors")),
    )
    op.create_table(
        "scan_tallies",
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("dimension", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "dimension IN ('country', 'referrer', 'agent', 'bot_reason')",
            name=op.f("ck_scan_tallies_dimension"),
        ),
        sa.PrimaryKeyConstraint("code_id", "day", "dimension", "value", name=op.f("pk_scan_tallies")),
    )
    op.create_table(
        "scan_retention",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("raw_since", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name=op.f("ck_scan_retention_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_retention")),
    )
    _backfill()

    op.add_column("scan_counts", sa.Column("first_scan_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("scan_counts", sa.Column("last_scan_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE scan_counts c SET first_scan_at = s.first, last_scan_at = s.last "
        "FROM (SELECT code_id, min(scanned_at) AS first, max(scanned_at) AS last FROM scans GROUP BY code_id) s "
        "WHERE s.code_id = c.code_id"
    )
    op.drop_constraint(op.f("ck_qr_code_changes_action"), "qr_code_changes", type_="check")
    op.create_check_constraint(
        op.f("ck_qr_code_changes_action"),
        "qr_code_changes",
        "action IN ('create', 'update', 'delete', 'erase')",
    )


def _backfill() -> None:
    """Every rollup from the scans copied in, per code and for every code together ('')."""
    for scope in ("s.code_id", "''"):
        op.execute(
            f"INSERT INTO scan_quarters (code_id, quarter, total, bots) "
            f"SELECT {scope}, date_bin('15 minutes', s.scanned_at, timestamptz '2000-01-01 00:00+00'), "
            f"count(*), count(*) FILTER (WHERE s.is_bot) FROM scans s GROUP BY 1, 2"
        )
        op.execute(
            f"INSERT INTO scan_days (code_id, day, total, bots, visitors) "
            f"SELECT {scope}, (s.scanned_at AT TIME ZONE 'UTC')::date, count(*), count(*) FILTER (WHERE s.is_bot), "
            f"count(DISTINCT s.visitor_hash) FILTER (WHERE NOT s.is_bot) FROM scans s GROUP BY 1, 2"
        )
        op.execute(
            f"INSERT INTO scan_tallies (code_id, day, dimension, value, count) "
            f"SELECT code_id, day, dimension, value, count(*) FROM ("
            f"  SELECT {scope} AS code_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day, d.dimension, d.value "
            f"  FROM scans s CROSS JOIN LATERAL (VALUES "
            f"    ('agent', CASE WHEN NOT s.is_bot THEN s.agent_id::text END), "
            f"    ('referrer', CASE WHEN NOT s.is_bot THEN {REFERRER_HOST} END), "
            f"    ('country', CASE WHEN NOT s.is_bot THEN s.country END), "
            f"    ('bot_reason', CASE WHEN s.is_bot THEN coalesce(s.bot_reason, 'bot') END)"
            f"  ) AS d(dimension, value) WHERE d.value IS NOT NULL"
            f") AS t GROUP BY 1, 2, 3, 4"
        )
    op.execute(
        "INSERT INTO scan_months (code_id, month, total, bots) "
        "SELECT code_id, date_trunc('month', day)::date, sum(total), sum(bots) FROM scan_days GROUP BY 1, 2"
    )
    # Visitor hashes are only needed while their day can still gain scans: today's and yesterday's.
    op.execute(
        "INSERT INTO scan_day_visitors (code_id, day, visitor_hash) "
        "SELECT DISTINCT scope.code_id, (s.scanned_at AT TIME ZONE 'UTC')::date, s.visitor_hash "
        "FROM scans s CROSS JOIN LATERAL (VALUES (s.code_id), ('')) AS scope(code_id) "
        "WHERE NOT s.is_bot AND s.visitor_hash IS NOT NULL "
        "AND s.scanned_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 day'"
    )


def downgrade() -> None:
    op.execute("UPDATE qr_code_changes SET action = 'update' WHERE action = 'erase'")
    op.drop_constraint(op.f("ck_qr_code_changes_action"), "qr_code_changes", type_="check")
    op.create_check_constraint(
        op.f("ck_qr_code_changes_action"), "qr_code_changes", "action IN ('create', 'update', 'delete')"
    )
    op.drop_column("scan_counts", "last_scan_at")
    op.drop_column("scan_counts", "first_scan_at")
    for table in (
        "scan_retention",
        "scan_tallies",
        "scan_day_visitors",
        "scan_months",
        "scan_days",
        "scan_quarters",
    ):
        op.drop_table(table)
    op.execute("LOCK TABLE scans IN EXCLUSIVE MODE")
    op.execute("ALTER TABLE scans RENAME TO scans_0007")
    op.execute("ALTER INDEX ix_scans_code_id_scanned_at RENAME TO ix_scans_0007_code_id_scanned_at")
    op.create_table(
        "scans",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("referrer", sa.Text(), nullable=True),
        sa.Column("visitor_hash", sa.LargeBinary(), nullable=True),
        sa.Column("is_bot", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("bot_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    op.execute(
        "INSERT INTO scans (code_id, scanned_at, user_agent, referrer, visitor_hash, is_bot, bot_reason) "
        "SELECT s.code_id, s.scanned_at, coalesce(s.user_agent, nullif(ua.agent, '')), s.referrer, "
        "s.visitor_hash, s.is_bot, coalesce(s.bot_reason, CASE WHEN s.is_bot THEN ua.bot_reason END) "
        "FROM scans_0007 s LEFT JOIN user_agents ua ON ua.id = s.agent_id ORDER BY s.scanned_at"
    )
    op.create_index(op.f("ix_scans_code_id_scanned_at"), "scans", ["code_id", "scanned_at"])
    op.execute("DROP TABLE scans_0007")  # with its partitions
    op.drop_table("user_agents")
