"""Streamed exports: CSV in bounded memory, safe to open in a spreadsheet.

Rows are read through a server-side cursor a thousand at a time and sent as they come, so a range
of millions of scans needs no more memory than one of ten. A cell a spreadsheet would run as a
formula (one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is sent with a
leading apostrophe, as OWASP advises: it then shows as the text it is.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.management import agents, codes
from services.management.schemas import RawScansQuery
from services.management.schemas.fields import TAG_SEPARATOR

log = logging.getLogger(__name__)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 1000

SCAN_COLUMNS = (
    "scanned_at",
    "code_id",
    "is_bot",
    "bot_reason",
    "user_agent",
    "browser",
    "os",
    "device",
    "referrer",
    "country",
    "city",
)
RAW_SCANS = """
SELECT s.scanned_at, s.code_id, s.is_bot,
       CASE WHEN s.is_bot THEN coalesce(s.bot_reason, ua.bot_reason) END AS bot_reason,
       coalesce(s.user_agent, nullif(ua.agent, '')) AS user_agent, ua.browser, ua.os, ua.device,
       s.referrer, s.country, s.city
FROM scans s LEFT JOIN user_agents ua ON ua.id = s.agent_id
WHERE s.code_id = :code AND s.scanned_at >= :start AND s.scanned_at < :end
ORDER BY s.scanned_at
"""
AGENTS_IN_RANGE = """
SELECT DISTINCT agent_id FROM scans
WHERE code_id = :code AND scanned_at >= :start AND scanned_at < :end AND agent_id IS NOT NULL
"""
# The columns the bulk upload takes back, in the order codes are stored, with the scan count.
CODE_COLUMNS = (*codes.COPY_COLUMNS[:-2], "scan_count", *codes.COPY_COLUMNS[-2:])  # then created, updated
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):  # tags, as the bulk upload takes them
        if value and not isinstance(value[0], str):  # rules, a split: their JSON, as the upload takes it
            return cell(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        return cell(TAG_SEPARATOR.join(value)) if value else ""
    if isinstance(value, dict):  # a design or a content, as the bulk upload takes it back
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    text_value = str(value)
    return "'" + text_value if text_value.startswith(FORMULA_STARTS) else text_value


def lines(rows: Iterable[Sequence[Any]]) -> bytes:
    """``rows`` as CSV (RFC 4180 quoting, CRLF line ends), every cell formula-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([cell(value) for value in row])
    return buffer.getvalue().encode("utf-8")


def _instant(value: datetime | date | None, default: datetime) -> datetime:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(), UTC)


async def raw_scans(
    engine: AsyncEngine, code_id: str, query: RawScansQuery, *, faults: tuple[type[BaseException], ...]
) -> AsyncIterator[bytes]:
    """The code's raw scans in the range as CSV (no visitor hash: it is not for export), oldest
    first. A database that fails half-way ends the file early; the log says so."""
    params = {"code": code_id, "start": _instant(query.from_, EARLIEST), "end": _instant(query.to, LATEST)}
    yield lines([SCAN_COLUMNS])
    try:
        async with engine.connect() as conn:
            ids = [row[0] for row in await conn.execute(text(AGENTS_IN_RANGE), params)]
            await agents.families(conn, ids)  # browser, OS and device of every agent in it
            result = await conn.stream(text(RAW_SCANS), params)
            async for partition in result.partitions(ROWS_PER_CHUNK):
                yield lines(partition)
    except faults as exc:
        log.error(
            "scan export cut short: the database failed",
            extra={"code_id": code_id, "error": type(exc).__name__},
        )


async def codes_csv(
    engine: AsyncEngine, filters: codes.Filters, *, faults: tuple[type[BaseException], ...]
) -> AsyncIterator[bytes]:
    """Every code the filters keep, oldest first, as CSV whose columns a bulk upload takes back
    (tags joined with ``|``). A database that fails half-way ends the file early; the log says so."""
    yield lines([CODE_COLUMNS])
    try:
        async with engine.connect() as conn:
            result = await conn.stream(codes.export_statement(filters))
            async for partition in result.partitions(ROWS_PER_CHUNK):
                yield lines([tuple(getattr(row, column) for column in CODE_COLUMNS) for row in partition])
    except faults as exc:
        log.error("code export cut short: the database failed", extra={"error": type(exc).__name__})
