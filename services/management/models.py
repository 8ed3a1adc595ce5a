"""The schema, as SQLAlchemy Core tables: the management service writes through them and Alembic
compares the migrations against them (``alembic check``). The redirect service does not import this
module; its few SQL statements are plain strings, prepared against the migrated schema in the tests.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB

from services.management.contents import KINDS as CONTENT_KINDS
from services.management.limits import HISTORY_ACTIONS, REDIRECT_STATUSES

# Deterministic constraint names, so that a later migration can drop what an earlier one made.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# What `q` searches (id, title, target), lower-cased; a trigram index over exactly this expression
# (migration 0002, ix_qr_codes_search) serves substring searches. Alembic does not compare
# expression indexes, so migrations/env.py leaves these out of `alembic check`.
SEARCH_EXPRESSION = "lower(id || ' ' || coalesce(title, '') || ' ' || target_url)"
SEARCH_INDEX = "ix_qr_codes_search"
# Ids are unique without regard to case: an index on lower(id) (migration 0006), unique unless codes
# made before it differ only in case (qr-manage status lists them).
ID_FOLDED_INDEX = "ix_qr_codes_id_folded"
EXPRESSION_INDEXES = frozenset({SEARCH_INDEX, ID_FOLDED_INDEX})

# Logos, once per content: images stay derivable from the database alone. Stored normalised (PNG,
# RGBA, at most LOGO_STORED_SIDE a side), never as uploaded.
logos = Table(
    "logos",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("image", LargeBinary, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_format"),
)

qr_codes = Table(
    "qr_codes",
    metadata,
    # A generated id or a custom slug. Rows are never deleted, only tombstoned (deleted_at), so an
    # id once handed out can never point somewhere new.
    Column("id", String(64), primary_key=True),
    # Fixed at creation: a later change of PUBLIC_BASE_URL must not change printed codes.
    Column("short_url", Text, nullable=False),
    Column("target_url", Text, nullable=False),
    Column("title", Text),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'::text[]")),
    Column("redirect_status", SmallInteger, nullable=False, server_default=text("302")),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    Column("expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("deleted_at", DateTime(timezone=True)),
    # Where a disabled or expired code sends people instead of the 410 page.
    Column("fallback_url", Text),
    # Append the scan's query string (UTM tags, say) to the target.
    Column("forward_query", Boolean, nullable=False, server_default=false()),
    # The logo in the middle of its images, if any.
    Column("logo_sha256", String(64), ForeignKey("logos.sha256")),
    # What the code carries (services/management/contents.py): 'url', the short link to target_url;
    # any other kind is static, its images encoding content itself (target_url then ''), but for a
    # dynamic vcard, served as a contact page by its short link.
    Column("kind", Text, nullable=False, server_default=text("'url'")),
    Column("content", JSONB(none_as_null=True)),
    Column("dynamic", Boolean, nullable=False, server_default=false()),
    # The saved design (image options: modules, finder, colours, frame...), null for plain squares.
    Column("design", JSONB),
    # Redirect rules (shared/rules.py): an ordered list, and a split of variants (null: none).
    Column("rules", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("split", JSONB),
    CheckConstraint("id ~ '^[A-Za-z0-9_-]{3,64}$'", name="id_format"),
    CheckConstraint(f"kind IN {CONTENT_KINDS}", name="kind"),
    CheckConstraint("(kind = 'url') = (content IS NULL)", name="content_of_kind"),
    CheckConstraint("NOT dynamic OR kind = 'vcard'", name="dynamic_kind"),
    CheckConstraint(f"redirect_status IN {REDIRECT_STATUSES}", name="redirect_status"),
    CheckConstraint("char_length(target_url) <= 2048", name="target_url_length"),
    CheckConstraint("char_length(fallback_url) <= 2048", name="fallback_url_length"),
    # Listing pages walk (created_at, id) with a keyset cursor.
    Index(None, "created_at", "id"),
    # The tag filter: tags @> ARRAY[tag].
    Index(None, "tags", postgresql_using="gin"),
)

# Every change of every code, kept for as long as the code (printed codes live for years: "where
# did this code point last March?"). ``changes`` maps each changed field to {"old": ..., "new": ...}.
qr_code_changes = Table(
    "qr_code_changes",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("code_id", String(64), ForeignKey("qr_codes.id"), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("action", Text, nullable=False),
    Column("changes", JSONB, nullable=False),
    Column("client_address", INET),
    Column("request_id", Text),
    Column("token_name", Text),
    CheckConstraint(f"action IN {HISTORY_ACTIONS}", name="action"),
    Index(None, "code_id", "id"),
)

# Every user agent once: scans name theirs by id. The writer classifies bots when it first sees an
# agent; browser, OS and device are parsed (ua-parser) by the management service when first asked.
user_agents = Table(
    "user_agents",
    metadata,
    Column("id", Integer, Identity(always=True), primary_key=True),
    Column("agent", Text, nullable=False, unique=True),  # as stored: at most 512 characters; '' for none
    Column("bot_reason", Text),
    Column("browser", Text),
    Column("os", Text),
    Column("device", Text),
    Column("parsed_at", DateTime(timezone=True)),
)

# The raw scans, partitioned by month of scanned_at (migration 0007; qr-manage maintain makes the
# partitions ahead and drops those past SCAN_RETENTION_DAYS). No primary key: an append-only log,
# read by code and time. No foreign key either: its check, a trigger per inserted row, was half of
# the database's cost of a scan (measured); scan_counts, upserted in the same transaction, keeps the
# key that catches a vanished code.
scans = Table(
    "scans",
    metadata,
    Column("code_id", String(64), nullable=False),
    Column("scanned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("agent_id", Integer),  # user_agents.id
    Column("referrer", Text),
    # Keyed hash of (client address, user agent); the key rotates daily, the address is never stored.
    Column("visitor_hash", LargeBinary),
    Column("is_bot", Boolean, nullable=False, server_default=false()),
    Column("country", Text),  # ISO 3166 code, from GEOIP_DATABASE when set
    Column("city", Text),
    # Written by the version before 0007 (which a rolling upgrade may still run): the agent as text.
    Column("user_agent", Text),
    Column("bot_reason", Text),
    # Which of the code's redirect rules served it: "rule 2", "variant a", "default" (null: no rules).
    Column("rule", Text),
    Index(None, "code_id", "scanned_at"),
    postgresql_partition_by="RANGE (scanned_at)",
)
SCAN_PARTITION = r"^scans_(\d{4}_\d{2}|default)$"  # the partitions' names (not in this metadata)

# Running totals per code, kept by the redirect service's scan writer in the transaction that writes
# the scans: a code's scan_count is one row away, however many scans it has.
scan_counts = Table(
    "scan_counts",
    metadata,
    Column("code_id", String(64), ForeignKey("qr_codes.id"), primary_key=True),
    Column("total", BigInteger, nullable=False, server_default=text("0")),
    Column("bots", BigInteger, nullable=False, server_default=text("0")),
    Column("first_scan_at", DateTime(timezone=True)),
    Column("last_scan_at", DateTime(timezone=True)),
)

# Rollups, kept by the scan writer in the transaction of each batch: no read counts raw scans. The
# code id '' holds the same for every code together. Quarter hours, because every time zone's hours
# and days are made of whole UTC quarter hours (+05:30, +05:45, and the DST changes included).
scan_quarters = Table(
    "scan_quarters",
    metadata,
    Column("code_id", String(64), primary_key=True),
    Column("quarter", DateTime(timezone=True), primary_key=True),  # its start, UTC
    Column("total", Integer, nullable=False),
    Column("bots", Integer, nullable=False),
)
# Per UTC day, with the day's unique visitors (people): each visitor hash counted once per code and
# day through scan_day_visitors, which holds only the hashes of days that can still gain scans.
scan_days = Table(
    "scan_days",
    metadata,
    Column("code_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("total", Integer, nullable=False),
    Column("bots", Integer, nullable=False),
    Column("visitors", Integer, nullable=False),
    # Every code's days in a range (by_tag), read from the index alone.
    Index("ix_scan_days_day", "day", postgresql_include=["code_id", "total", "bots"]),
)
# Per UTC month (its first day): the totals per tag over long ranges read a row a month per code.
scan_months = Table(
    "scan_months",
    metadata,
    Column("code_id", String(64), primary_key=True),
    Column("month", Date, primary_key=True),
    Column("total", BigInteger, nullable=False),
    Column("bots", BigInteger, nullable=False),
)
scan_day_visitors = Table(
    "scan_day_visitors",
    metadata,
    Column("code_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("visitor_hash", LargeBinary, primary_key=True),
)
TALLY_DIMENSIONS = ("country", "referrer", "agent", "bot_reason", "rule")
# Per UTC day and value: countries, referrer hosts and user agents (by id) of people; bots' reasons.
scan_tallies = Table(
    "scan_tallies",
    metadata,
    Column("code_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("dimension", Text, primary_key=True),
    Column("value", Text, primary_key=True),
    Column("count", Integer, nullable=False),
    CheckConstraint(f"dimension IN {TALLY_DIMENSIONS}", name="dimension"),
)
# Since when raw scans are kept (written when maintenance first drops a partition): hourly unique
# visitors and the CSV of raw scans cover no further back. Rollups are kept for ever.
scan_retention = Table(
    "scan_retention",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=true()),
    Column("raw_since", DateTime(timezone=True), nullable=False),
    CheckConstraint("id", name="one_row"),
)

# Per tag (migration 0011), so that statistics over every code read no row per code: the scans of
# the codes carrying a tag per UTC day and month (a code counts once per tag), and how many of those
# codes were scanned on a day after last being scanned on the day ``since`` ('-infinity': never),
# so that a range's codes per tag are the rows of its days with since before the range. Kept by the
# scan writer; a change of a code's tags moves its past scans (the trigger qr_codes_tags_moved).
scan_tag_days = Table(
    "scan_tag_days",
    metadata,
    Column("tag", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("total", BigInteger, nullable=False),
    Column("bots", BigInteger, nullable=False),
)
scan_tag_months = Table(
    "scan_tag_months",
    metadata,
    Column("tag", Text, primary_key=True),
    Column("month", Date, primary_key=True),
    Column("total", BigInteger, nullable=False),
    Column("bots", BigInteger, nullable=False),
)
scan_tag_code_days = Table(
    "scan_tag_code_days",
    metadata,
    Column("tag", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("since", Date, primary_key=True),
    Column("codes", Integer, nullable=False),
)
scan_tag_code_months = Table(
    "scan_tag_code_months",
    metadata,
    Column("tag", Text, primary_key=True),
    Column("month", Date, primary_key=True),
    Column("since", Date, primary_key=True),
    Column("codes", Integer, nullable=False),
)
# The first and the last scan of every code together (one row, kept by the scan writer).
scan_span = Table(
    "scan_span",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=true()),
    Column("first_scan_at", DateTime(timezone=True), nullable=False),
    Column("last_scan_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id", name="one_row"),
)

# The key of each UTC day's visitor hashes, shared by every redirect process. A day's key is
# deleted soon after the day ends, so hashes of different days cannot be linked, and no address
# can be recovered by trying them all against a key that still exists.
visitor_keys = Table(
    "visitor_keys",
    metadata,
    Column("day", Date, primary_key=True),
    Column("key", LargeBinary, nullable=False),
    CheckConstraint("octet_length(key) = 32", name="key_length"),
)

# The answer to a bulk request under its Idempotency-Key, kept 24 hours (IDEMPOTENCY_HOURS). The row
# is written in the request's own transaction: a second request with the key waits for the first.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", Text, primary_key=True),
    Column("fingerprint", LargeBinary, nullable=False),  # SHA-256 of what was asked
    Column("status", SmallInteger),  # null while the first request is running
    Column("body", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(None, "created_at"),
)

# Console sessions signed out, until their cookies would have expired anyway (auth/sessions.py):
# every management process, and every one after a restart, refuses such a cookie. Rows past
# expires_at are deleted with the next sign-out.
console_sign_outs = Table(
    "console_sign_outs",
    metadata,
    Column("session_id", Text, primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index(None, "expires_at"),
)

# Bearer tokens the service made (qr-manage token create, POST /api/v1/tokens): a keyed hash of the
# secret, never the secret. ``tags`` empty: every code. A revoked token's row stays (revoked_at set),
# so its name is never reused and the audit log keeps naming something.
admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("tags", ARRAY(Text), nullable=False, server_default="{}"),
    Column("secret_hash", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_by", Text),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="role"),
)

# Every admin write, token change, sign-in (and failed one) and sign-out: who, with which role,
# from where, under which request id, what and when. ``detail`` never holds a secret. Kept
# AUDIT_RETENTION_DAYS.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text),
    Column("actor_kind", Text, nullable=False),
    Column("subject", Text),
    Column("email", Text),
    Column("role", Text),
    Column("client_address", INET),
    Column("request_id", Text),
    Column("action", Text, nullable=False),
    Column("target", Text),
    Column("outcome", Text, nullable=False, server_default="ok"),
    Column("detail", JSONB, nullable=False, server_default="{}"),
    Index(None, "at", "id"),
    Index(None, "actor", "id"),
)
