"""Reading and writing QR codes (SQLAlchemy Core on the async engine).

Every write to ``qr_codes`` fires the ``qr_changed`` notification from a trigger inside the same
transaction, so the redirect processes see a change exactly when it commits (a bulk create
announces its rows as new codes only, ``NEW_CODES``: the redirect processes then keep every cached
answer but those of unknown ids). Every write returns what it changed, field by field, for the
operation that made it to record in the history in that same transaction (:mod:`.history`).
Codes are never deleted, only tombstoned (``deleted_at``): an id once printed never comes back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, func, literal_column, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management import contents
from services.management.errors import CodeNotFound, InvalidValue, SlugTaken, TryAgain
from services.management.limits import MAX_CURSOR
from services.management.logos import Logo, StoredLogo
from services.management.models import SEARCH_EXPRESSION, logos, qr_codes, scan_counts
from services.management.schemas import NewQRCode, QRCode, QRCodeChanges, QRCodeList
from services.management.schemas.answers import CodeState
from shared import ids
from shared.database import CHANGE_CHANNEL, NEW_CODES, STOPPED, AdvisoryLock
from shared.urls import ascii_host

# With ~49.5 bits per id a collision is rare; several in a row mean something else is wrong.
MAX_ID_ATTEMPTS = 5

# A code as answered, read from the columns of its fields (the others are worked out: the target's
# host, the scan count).
_RESOURCE_COLUMNS = tuple(qr_codes.c[name] for name in QRCode.model_fields if name in qr_codes.c)
_SCAN_COUNT = func.coalesce(
    select(scan_counts.c.total).where(scan_counts.c.code_id == qr_codes.c.id).scalar_subquery(), 0
).label("scan_count")
# Held by every create until it commits, and created_at read from the clock while holding it: codes
# then commit in created_at order, so a listing walking (created_at, id) can never step past a code
# that becomes visible a moment later; and an id is checked against every spelling of every id
# before it is taken. Creates are serialised; they are not the hot path.
CREATE_LOCK = AdvisoryLock.CREATE_CODE
WRITABLE = tuple(QRCodeChanges.model_fields)
_LIVE = qr_codes.c.deleted_at.is_(None)
# What a write changed: each field's old and new value, as answers spell them (the history's shape).
Changes = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Filters:
    q: str | None = None
    tag: str | None = None
    enabled: bool | None = None
    ids: tuple[str, ...] | None = None
    order: str = "created_at"  # or "-created_at": newest first; "-scan_count": most scanned first
    # The caller's tags (a token limited to them): only codes carrying one of them. None: every code.
    scope: frozenset[str] | None = None


def _timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_value(value: Any) -> Any:
    """A column value as it appears in answers and in the history."""
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _host_ascii(url: str) -> str | None:
    try:
        return ascii_host(urlsplit(url).hostname or "")
    except ValueError:  # a row written around the API
        return None


def code_state(
    *,
    enabled: bool,
    expires_at: datetime | None,
    deleted_at: datetime | None = None,
    starts_at: datetime | None = None,
    now: datetime | None = None,
    static: bool = False,
) -> CodeState:
    """What ``/r/{id}`` does for a code now, in one word (the API's ``state``, every console page's):
    the redirect service's own test (switched on, not expired) in the same order."""
    now = now or datetime.now(UTC)
    if deleted_at is not None:
        return "deleted"
    if static:  # no short link: switching it off or an expiry changes nothing a scanner sees
        return "static"
    if not enabled:
        return "off"
    if expires_at is not None and expires_at <= now:
        return "expired"
    if starts_at is not None and now < starts_at:
        return "not_yet"
    return "on"


def to_resource(row: Any) -> QRCode:
    """A row of :data:`_RESOURCE_COLUMNS` (and ``deleted_at`` when it was read) and its scan count as
    the code answered."""
    values = {column.name: getattr(row, column.name) for column in _RESOURCE_COLUMNS}
    static = row.kind != "url" and not row.dynamic
    return QRCode(
        **values,
        # The host as a browser will look it up (a row written before hosts were stored so).
        target_host_ascii=_host_ascii(row.target_url) if row.target_url else None,
        static=static,
        scan_count=row.scan_count,
        state=code_state(
            enabled=row.enabled,
            expires_at=row.expires_at,
            deleted_at=getattr(row, "deleted_at", None),
            static=static,
        ),
    )


def created(values: Mapping[str, Any]) -> Changes:
    """A new code's writable fields as its history's first entry records them."""
    return {name: {"old": None, "new": json_value(values[name])} for name in WRITABLE}


async def create_code(
    conn: AsyncConnection, new: NewQRCode, *, public_base_url: str
) -> tuple[QRCode, Changes]:
    """Insert a code under its slug or a fresh random id; :class:`SlugTaken` if the slug, in any
    spelling, was ever used. The code, and its fields as the history records them.

    The spelling check runs under the create lock, so two creates cannot both pass it; ``ON
    CONFLICT DO NOTHING`` as well, so that a row written around the API costs an empty result
    rather than an aborted transaction.
    """
    values = new.writable()
    await conn.execute(select(func.pg_advisory_xact_lock(CREATE_LOCK)))
    now = (await conn.execute(select(func.clock_timestamp()))).scalar_one()
    values.update(created_at=now, updated_at=now)
    for _ in range(MAX_ID_ATTEMPTS):
        code_id = new.slug or ids.new_id()
        taken = (
            await conn.execute(
                select(qr_codes.c.id).where(func.lower(qr_codes.c.id) == code_id.lower()).limit(1)
            )
        ).scalar_one_or_none()
        row = None
        if taken is None:
            statement = (
                insert(qr_codes)
                .values(id=code_id, short_url=f"{public_base_url}/r/{code_id}", **values)
                .on_conflict_do_nothing()
                .returning(*_RESOURCE_COLUMNS, literal_column("0").label("scan_count"))
            )
            row = (await conn.execute(statement)).first()
        if row is not None:
            return to_resource(row), created(values)
        if new.slug is not None:
            raise SlugTaken(new.slug, spelling=taken)
    raise TryAgain("could not find a free id; try again", retry_after=1)


COPY_COLUMNS = ("id", "short_url", *WRITABLE, "kind", "dynamic", "created_at", "updated_at")
# Copied as their text (redirect rules, a design, a content): COPY has no JSON codec.
_JSON_COLUMNS = frozenset(column.name for column in qr_codes.c if isinstance(column.type, JSONB))
TAKEN = "SELECT lower(id) FROM qr_codes WHERE lower(id) = ANY(CAST(:ids AS text[]))"


async def create_codes(
    conn: AsyncConnection,
    rows: list[tuple[int, NewQRCode]],
    *,
    public_base_url: str,
    partial: bool,
) -> tuple[list[QRCode], list[Changes], list[tuple[int, str]]]:
    """Create many codes in one transaction, in the order given, with one ``COPY`` (so the redirect
    processes get one notification, announced as new codes only); the codes made, their fields as
    the history records them, and (row, message) for each slug that is taken or given twice.

    Under the create lock, like a single create: their ``created_at`` are one microsecond apart from
    the clock's reading, and the transaction does not end before the clock has passed the last, so
    the listing's order is the input's and no later create can sort before them. Without
    ``partial``, a taken slug raises nothing but is reported: the caller then creates nothing.
    """
    await conn.execute(select(func.pg_advisory_xact_lock(CREATE_LOCK)))
    refused: list[tuple[int, str]] = []
    first_row: dict[str, int] = {}
    wanted: list[tuple[int, NewQRCode]] = []
    for number, new in rows:
        if new.slug is None:
            wanted.append((number, new))
            continue
        folded = new.slug.lower()
        if folded in first_row:
            refused.append((number, f"'{new.slug}' is given in row {first_row[folded]} too"))
            continue
        first_row[folded] = number
        wanted.append((number, new))
    taken = set((await conn.execute(text(TAKEN), {"ids": list(first_row)})).scalars())
    for number, new in wanted:
        if new.slug is not None and new.slug.lower() in taken:
            refused.append((number, SlugTaken(new.slug).message))
    refused.sort()
    if refused and not partial:
        return [], [], refused
    refused_rows = {number for number, _ in refused}
    wanted = [(number, new) for number, new in wanted if number not in refused_rows]
    if not wanted:
        return [], [], refused

    ids_by_row = {number: new.slug for number, new in wanted if new.slug is not None}
    in_use = set(first_row)
    for _ in range(MAX_ID_ATTEMPTS):
        fresh = {number: ids.new_id() for number, new in wanted if number not in ids_by_row}
        if not fresh:
            break
        clash = set((await conn.execute(text(TAKEN), {"ids": list(fresh.values())})).scalars())
        seen: set[str] = set()
        for number, code_id in fresh.items():
            if code_id in clash or code_id in in_use or code_id in seen:
                continue  # drawn again
            seen.add(code_id)
            ids_by_row[number] = code_id
        in_use |= seen
    if len(ids_by_row) < len(wanted):
        raise TryAgain("could not find free ids; try again", retry_after=1)

    now = (await conn.execute(select(func.clock_timestamp()))).scalar_one()
    records: list[tuple[Any, ...]] = []
    history: list[Changes] = []
    resources: list[QRCode] = []
    for offset, (number, new) in enumerate(wanted):
        values = new.writable()
        code_id = ids_by_row[number]
        moment = now + timedelta(microseconds=offset)
        row = {
            "id": code_id,
            "short_url": f"{public_base_url}/r/{code_id}",
            **values,
            "created_at": moment,
            "updated_at": moment,
        }
        records.append(
            tuple(
                json.dumps(row[column])
                if column in _JSON_COLUMNS and row[column] is not None
                else row[column]
                for column in COPY_COLUMNS
            )
        )
        history.append(created(values))
        resources.append(to_resource(SimpleNamespace(**row, logo_sha256=None, scan_count=0)))
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    # The statement trigger says "*" for the rows (anything may have changed); said just before it,
    # in the same transaction, this tells the redirect processes that only new codes did.
    await conn.execute(select(func.pg_notify(CHANGE_CHANNEL, NEW_CODES)))
    await raw.copy_records_to_table("qr_codes", records=records, columns=COPY_COLUMNS)
    # The next create reads the clock after this commits: make sure it reads past the last of these.
    await conn.execute(
        text(
            "SELECT pg_sleep(greatest(0, extract(epoch FROM CAST(:last AS timestamptz) - clock_timestamp())))"
        ),
        {"last": records[-1][-1]},
    )
    return resources, history, refused


async def get_code(conn: AsyncConnection, code_id: str) -> QRCode:
    """The live (not deleted) code ``code_id`` with its scan count, or :class:`CodeNotFound`."""
    row = (
        await conn.execute(select(*_RESOURCE_COLUMNS, _SCAN_COUNT).where(qr_codes.c.id == code_id, _LIVE))
    ).first()
    if row is None:
        raise CodeNotFound(code_id)
    return to_resource(row)


async def get_code_even_deleted(conn: AsyncConnection, code_id: str) -> QRCode:
    """The code ``code_id``, live or deleted (state ``deleted``: its scans stay), or
    :class:`CodeNotFound`."""
    statement = select(*_RESOURCE_COLUMNS, qr_codes.c.deleted_at, _SCAN_COUNT).where(qr_codes.c.id == code_id)
    row = (await conn.execute(statement)).first()
    if row is None:
        raise CodeNotFound(code_id)
    return to_resource(row)


async def get_code_or_deleted(conn: AsyncConnection, code_id: str) -> None:
    """:class:`CodeNotFound` unless ``code_id`` is a code, live or deleted (whose scans stay)."""
    if (await conn.execute(select(qr_codes.c.id).where(qr_codes.c.id == code_id))).first() is None:
        raise CodeNotFound(code_id)


async def image_source(conn: AsyncConnection, code_id: str) -> tuple[str, str | None]:
    """What the code's images encode (its short URL, or a static code's payload), and the digest of
    its logo; :class:`CodeNotFound` for an unknown or deleted id."""
    columns = (
        qr_codes.c.short_url,
        qr_codes.c.logo_sha256,
        qr_codes.c.kind,
        qr_codes.c.content,
        qr_codes.c.dynamic,
    )
    row = (await conn.execute(select(*columns).where(qr_codes.c.id == code_id, _LIVE))).first()
    if row is None:
        raise CodeNotFound(code_id)
    return contents.encoded(row.kind, row.content, row.dynamic, str(row.short_url)), row.logo_sha256


async def load_logo(conn: AsyncConnection, sha256: str) -> Logo:
    image = (await conn.execute(select(logos.c.image).where(logos.c.sha256 == sha256))).scalar_one()
    return Logo(sha256, bytes(image))


async def set_logo(conn: AsyncConnection, code_id: str, stored: StoredLogo | None) -> tuple[QRCode, Changes]:
    """Show ``stored`` in the code's images from now on (``None``: no logo); the code, and what
    changed (nothing when it had that logo already)."""
    current = (
        await conn.execute(
            select(qr_codes.c.logo_sha256).where(qr_codes.c.id == code_id, _LIVE).with_for_update()
        )
    ).first()
    if current is None:
        raise CodeNotFound(code_id)
    new = stored.logo.sha256 if stored else None
    if stored is not None:
        await conn.execute(
            insert(logos)
            .values(sha256=new, image=stored.logo.png, width=stored.width, height=stored.height)
            .on_conflict_do_nothing(index_elements=[logos.c.sha256])
        )
    changes: Changes = {}
    if current.logo_sha256 != new:
        await conn.execute(
            update(qr_codes).where(qr_codes.c.id == code_id).values(logo_sha256=new, updated_at=func.now())
        )
        changes["logo_sha256"] = {"old": current.logo_sha256, "new": new}
    return await get_code(conn, code_id), changes


async def update_code(
    conn: AsyncConnection, code_id: str, changes: Mapping[str, Any]
) -> tuple[QRCode, Changes]:
    """Apply ``changes`` (validated field values); the code, and what really changed."""
    if "tags" in changes:
        # Moving the code's scans to its new tags (the trigger qr_codes_tags_moved) waits for the
        # scan batch or erasure in progress: its lock is taken before the code's row, in the order
        # an erasure takes them, so that the two wait for each other instead of deadlocking.
        await conn.execute(select(func.pg_advisory_xact_lock(AdvisoryLock.SCAN_WRITE.value)))
    current = (
        await conn.execute(
            select(*_RESOURCE_COLUMNS).where(qr_codes.c.id == code_id, _LIVE).with_for_update()
        )
    ).first()
    if current is None:
        raise CodeNotFound(code_id)
    changes = contents.checked_changes(current.kind, current.dynamic, changes)
    diff: Changes = {}
    for name, value in changes.items():
        old, new = json_value(getattr(current, name)), json_value(value)
        if old != new:
            diff[name] = {"old": old, "new": new}
    if diff:
        await conn.execute(
            update(qr_codes).where(qr_codes.c.id == code_id).values(**changes, updated_at=func.now())
        )
    code = await get_code(conn, code_id)
    if diff and code.state != "on":
        await _announce_stopped(conn, current.id)
    return code, diff


async def delete_code(conn: AsyncConnection, code_id: str) -> Changes:
    """Tombstone the code: /r/ stops answering, its id is never reused, its scans stay."""
    deleted_at = (
        await conn.execute(
            update(qr_codes)
            .where(qr_codes.c.id == code_id, _LIVE)
            .values(deleted_at=func.now(), updated_at=func.now())
            .returning(qr_codes.c.deleted_at)
        )
    ).scalar_one_or_none()
    if deleted_at is None:
        raise CodeNotFound(code_id)
    await _announce_stopped(conn, code_id)
    return {"deleted_at": {"old": None, "new": _timestamp(deleted_at)}}


async def _announce_stopped(conn: AsyncConnection, code_id: str) -> None:
    """Tell the redirect processes, with the change, that this code answers no more: they forget
    it rather than keep it to answer from while the database is away (shared/database.py)."""
    await conn.execute(select(func.pg_notify(CHANGE_CHANNEL, STOPPED + code_id)))


# -- pages -------------------------------------------------------------------------------------


NOT_A_CURSOR = "is not a cursor from a previous page"


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([json_value(k) for k in key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """The key a previous page ended with; :class:`InvalidValue` for anything that is not one."""
    if len(cursor) > MAX_CURSOR:
        raise InvalidValue("cursor", NOT_A_CURSOR)
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidValue("cursor", NOT_A_CURSOR)
    return key


def _search_pattern(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_codes(
    conn: AsyncConnection, filters: Filters, *, limit: int, cursor: str | None
) -> QRCodeList:
    """One page of live codes, oldest first (codes created meanwhile come at the end), and the
    cursor of the next page, ``None`` on the last one; newest first with ``order="-created_at"``;
    or, with ``order="-scan_count"``, most scanned first (best effort: a code scanned meanwhile may
    move past the cursor or back)."""
    if filters.order == "-scan_count":
        return await _most_scanned(conn, filters, limit=limit, cursor=cursor)
    statement: Select[Any] = _filtered(select(*_RESOURCE_COLUMNS, _SCAN_COUNT).where(_LIVE), filters)
    newest_first = filters.order == "-created_at"
    key = tuple_(qr_codes.c.created_at, qr_codes.c.id)
    if cursor is not None:
        created_at, code_id = decode_cursor(cursor, 2)
        try:
            moment = datetime.fromisoformat(created_at)
            after = moment.astimezone(UTC) if moment.tzinfo is not None else None
        except (TypeError, ValueError, OverflowError):
            after = None
        if after is None or not isinstance(code_id, str) or not ids.is_well_formed(code_id):
            raise InvalidValue("cursor", NOT_A_CURSOR)
        statement = statement.where(key < (after, code_id) if newest_first else key > (after, code_id))
    order = (
        (qr_codes.c.created_at.desc(), qr_codes.c.id.desc())
        if newest_first
        else (
            qr_codes.c.created_at,
            qr_codes.c.id,
        )
    )
    rows = (await conn.execute(statement.order_by(*order).limit(limit + 1))).all()
    items = [to_resource(row) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return QRCodeList(items=items, next_cursor=next_cursor)


def export_statement(filters: Filters) -> Select[Any]:
    """Every live code the filters keep, oldest first, with its scan count (for the exports)."""
    statement = _filtered(select(*_RESOURCE_COLUMNS, _SCAN_COUNT).where(_LIVE), filters)
    return statement.order_by(qr_codes.c.created_at, qr_codes.c.id)


def _filtered(statement: Select[Any], filters: Filters) -> Select[Any]:
    if filters.q:
        statement = statement.where(literal_column(SEARCH_EXPRESSION).like(_search_pattern(filters.q)))
    if filters.tag is not None:
        statement = statement.where(qr_codes.c.tags.contains([filters.tag]))
    if filters.enabled is not None:
        statement = statement.where(qr_codes.c.enabled.is_(filters.enabled))
    if filters.ids is not None:
        statement = statement.where(qr_codes.c.id.in_(filters.ids))
    if filters.scope is not None:
        statement = statement.where(qr_codes.c.tags.overlap(sorted(filters.scope)))
    return statement


async def check_scope(conn: AsyncConnection, code_id: str, scope: frozenset[str] | None) -> None:
    """:class:`CodeNotFound` unless the code (live or deleted) carries one of the caller's tags
    (``scope``; None: every code is in it). Not found rather than forbidden: an id outside the
    scope tells nothing, not even that it exists."""
    if scope is None:
        return
    statement = select(qr_codes.c.id).where(qr_codes.c.id == code_id, qr_codes.c.tags.overlap(sorted(scope)))
    if (await conn.execute(statement)).first() is None:
        raise CodeNotFound(code_id)


def scope_ids(scope: frozenset[str]) -> Select[Any]:
    """The ids of the codes (deleted ones too, whose scans stay) carrying one of the tags."""
    return select(qr_codes.c.id).where(qr_codes.c.tags.overlap(sorted(scope)))


async def known_tags(
    conn: AsyncConnection, *, limit: int = 500, scope: frozenset[str] | None = None
) -> list[str]:
    """The tags live codes carry (those in ``scope``, when given), alphabetically (the console's tag
    filter offers them)."""
    tag = func.unnest(qr_codes.c.tags).label("tag")
    inner = _filtered(select(tag).where(_LIVE), Filters(scope=scope)).subquery()
    rows = await conn.execute(select(inner.c.tag).distinct().order_by(inner.c.tag).limit(limit))
    return [row.tag for row in rows]


async def _most_scanned(
    conn: AsyncConnection, filters: Filters, *, limit: int, cursor: str | None
) -> QRCodeList:
    count = func.coalesce(scan_counts.c.total, 0).label("scan_count")
    statement = _filtered(
        select(*_RESOURCE_COLUMNS, count)
        .select_from(qr_codes.outerjoin(scan_counts, scan_counts.c.code_id == qr_codes.c.id))
        .where(_LIVE),
        filters,
    )
    if cursor is not None:
        after_count, after_id = decode_cursor(cursor, 2)
        if isinstance(after_count, bool) or not isinstance(after_count, int) or not isinstance(after_id, str):
            raise InvalidValue("cursor", NOT_A_CURSOR)
        statement = statement.where(
            (count < after_count) | ((count == after_count) & (qr_codes.c.id > after_id))
        )
    rows = (await conn.execute(statement.order_by(count.desc(), qr_codes.c.id).limit(limit + 1))).all()
    items = [to_resource(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return QRCodeList(items=items, next_cursor=encode_cursor(last.scan_count, last.id) if last else None)


# The code's share of every code's rollups ('') goes with it; its own rows, then its raw scans.
_ERASE = (
    """UPDATE scan_quarters g SET total = g.total - c.total, bots = g.bots - c.bots
       FROM scan_quarters c WHERE c.code_id = :code AND g.code_id = '' AND g.quarter = c.quarter""",
    # A visitor of this code who also scanned others that day is then counted once too few there.
    """UPDATE scan_days g SET total = g.total - c.total, bots = g.bots - c.bots,
           visitors = greatest(g.visitors - c.visitors, 0)
       FROM scan_days c WHERE c.code_id = :code AND g.code_id = '' AND g.day = c.day""",
    """UPDATE scan_tallies g SET count = g.count - c.count
       FROM scan_tallies c WHERE c.code_id = :code AND g.code_id = '' AND g.day = c.day
       AND g.dimension = c.dimension AND g.value = c.value""",
    """UPDATE scan_months g SET total = g.total - c.total, bots = g.bots - c.bots
       FROM scan_months c WHERE c.code_id = :code AND g.code_id = '' AND g.month = c.month""",
    # The tags' rollups lose the code's scans while its days are still there to say which.
    "SELECT scan_tag_shift(:code, (SELECT tags FROM qr_codes WHERE id = :code), -1)",
    "DELETE FROM scan_quarters WHERE code_id = :code",
    "DELETE FROM scan_months WHERE code_id = :code",
    "DELETE FROM scan_days WHERE code_id = :code",
    "DELETE FROM scan_tallies WHERE code_id = :code",
    "DELETE FROM scan_day_visitors WHERE code_id = :code",
    "DELETE FROM scans WHERE code_id = :code",
    "UPDATE scan_counts SET total = 0, bots = 0, first_scan_at = NULL, last_scan_at = NULL "
    "WHERE code_id = :code",
    # Every code's first and last scan, from the running totals left (one row a code, once).
    "DELETE FROM scan_span",
    "INSERT INTO scan_span (first_scan_at, last_scan_at) SELECT min(first_scan_at), max(last_scan_at) "
    "FROM scan_counts HAVING min(first_scan_at) IS NOT NULL",
)


async def erase_scans(conn: AsyncConnection, code_id: str) -> Changes:
    """Erase every scan of the code (deleted codes too), its counters and its rollups; how many
    scans went, as the history records it. It takes the SCAN_WRITE lock first, as the scan writer
    and a move of a code's tags do: they follow each other (never deadlock), and the tags read here
    are those committed (a change of them in progress moves what is left after this)."""
    await get_code_or_deleted(conn, code_id)
    await conn.execute(select(func.pg_advisory_xact_lock(AdvisoryLock.SCAN_WRITE.value)))
    held = (
        await conn.execute(
            select(scan_counts.c.total).where(scan_counts.c.code_id == code_id).with_for_update()
        )
    ).scalar_one_or_none()
    for statement in _ERASE:
        await conn.execute(text(statement), {"code": code_id})
    return {"scans": {"old": int(held or 0), "new": 0}}
