"""An export's selection of codes (the PDF's and the ZIP's): counted against ``EXPORT_MAX_CODES``
before any work starts, read a page at a time, and how far the export got.

A PDF or ZIP export holds at most ``EXPORT_MAX_CODES`` codes: the selection is counted first (up to
one past the bound) and a larger one refused with 422 before any work starts. Codes are read a page
at a time in the listing's order (each code once, however the list changes meanwhile). A client
that goes away stops an export between codes: Starlette cancels the response's body when the
server reports the disconnect, and the log says how far it got.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.management import codes
from services.management.errors import InvalidValue
from services.management.schemas import QRCode

log = logging.getLogger(__name__)

PAGE = 500


async def check_size(conn: AsyncConnection, filters: codes.Filters, *, max_codes: int) -> int:
    """How many codes the export holds; :class:`InvalidValue` (``selection``) naming the bound
    when more than ``max_codes``. Counts at most one past it, however many codes there are."""
    selected = codes.export_statement(filters).order_by(None).limit(max_codes + 1).subquery()
    count = int((await conn.execute(select(func.count()).select_from(selected))).scalar_one())
    if count > max_codes:
        raise InvalidValue(
            "selection",
            f"more than {max_codes:,} codes are selected; an export holds at most {max_codes:,} "
            "(EXPORT_MAX_CODES): narrow it with tag, q, enabled or ids, or export it in parts",
        )
    return count


async def pages(
    engine: AsyncEngine,
    filters: codes.Filters,
    *,
    faults: tuple[type[BaseException], ...],
    max_codes: int | None = None,
) -> AsyncIterator[list[QRCode]]:
    """The codes the filters keep, oldest first, a page at a time (a short read per page); at most
    ``max_codes`` of them (codes created after the count come last: those are left out)."""
    cursor = None
    left = max_codes
    while True:
        try:
            async with engine.connect() as conn:
                page = await codes.list_codes(
                    conn, filters, limit=PAGE if left is None else max(1, min(PAGE, left)), cursor=cursor
                )
        except faults as exc:
            log.error("print export cut short: the database failed", extra={"error": type(exc).__name__})
            return
        items = page.items if left is None else page.items[:left]
        if items:
            yield items
        if left is not None:
            left -= len(items)
            if left <= 0 and page.next_cursor is not None:
                log.warning("print export ends at EXPORT_MAX_CODES: codes were added after the count")
                return
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class Progress:
    """How far an export got, for the log line when its client goes away."""

    def __init__(self, kind: str, codes: int) -> None:
        self.kind = kind
        self.codes = codes
        self.done = 0

    def stopped(self) -> None:
        log.warning(
            "export stopped: the client went away",
            extra={"export": self.kind, "codes_done": self.done, "codes": self.codes},
        )
