"""Many codes at once, from a JSON array or a CSV (the rules of :mod:`services.management.bulk`),
in one transaction with their history; and, under an ``Idempotency-Key``, the answer kept for a
retry."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management import audit, bulk, codes, history
from services.management.auth.identity import Identity
from services.management.errors import BulkRefused, DomainError, InvalidValue, RowError, Unreadable
from services.management.metrics import ManagementMetrics
from services.management.schemas import BulkResult, RowProblem
from services.management.service.codes import outside_scope
from services.management.service.database import Database

log = logging.getLogger(__name__)

# What a bulk request may be refused for: an answer too, kept with its key like a success.
REFUSALS = (InvalidValue, Unreadable, BulkRefused)
# How a front end answers a bulk request (its status and body), for the idempotency store.
Answer = Callable[[BulkResult | DomainError], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True)
class Kept:
    """The answer given under an Idempotency-Key; ``replayed``: an earlier request's."""

    status: int
    content: bytes
    replayed: bool


class BulkService:
    def __init__(
        self, database: Database, metrics: ManagementMetrics, *, public_base_url: str, context: dict[str, Any]
    ) -> None:
        self.database = database
        self.metrics = metrics
        self.public_base_url = public_base_url
        self.context = context

    async def create(
        self, content_type: str, body: bytes, *, partial: bool, identity: Identity
    ) -> BulkResult:
        """The codes a JSON array or CSV file asks for, and the rows refused (``partial``); without
        ``partial``, :class:`BulkRefused` with the rows' errors and nothing created (also with
        ``partial`` when no row could be). :class:`Unreadable` or :class:`InvalidValue` for a body
        that is not one (not UTF-8, a header naming no field, too many rows)."""
        async with self.database.connect(write=True) as conn:
            result, rows_refused = await self._create(conn, content_type, body, partial, identity)
        self._count(result, rows_refused)
        return result

    async def create_once(
        self, key: str, answer: Answer, content_type: str, body: bytes, *, partial: bool, identity: Identity
    ) -> Kept:
        """:meth:`create` under an Idempotency-Key: the answer ``answer`` makes of what happened
        (refusals too), kept with the key for IDEMPOTENCY_HOURS in the same transaction. A retry
        with the key gets that very answer, even while the first request runs (it waits for it);
        the key with a different request is :class:`InvalidValue`."""
        caller = f"{identity.kind}:{identity.actor or ''}:{','.join(sorted(identity.tags or ()))}"
        fingerprint = bulk.fingerprint(content_type, partial, body, caller)
        result = None
        async with self.database.connect(write=True) as conn:
            kept = await bulk.claim(conn, key, fingerprint)
            if kept is not None:
                return Kept(*kept, replayed=True)
            try:
                result, rows_refused = await self._create(conn, content_type, body, partial, identity)
                status, content = await answer(result)
            except REFUSALS as exc:
                status, content = await answer(exc)
            await bulk.remember(conn, key, status, content)
        if result is not None:
            self._count(result, rows_refused)
        return Kept(status, content, replayed=False)

    async def _create(
        self, conn: AsyncConnection, content_type: str, body: bytes, partial: bool, identity: Identity
    ) -> tuple[BulkResult, int]:
        parsed = await anyio.to_thread.run_sync(
            functools.partial(bulk.parse, content_type, body, context=self.context)
        )
        # A token limited to tags creates only codes carrying one of them: every other row is refused.
        outside = [(row, reason) for row, new in parsed.rows if (reason := outside_scope(identity, new.tags))]
        refusals = parsed.refused.with_rows(RowError(row, "tags", reason) for row, reason in outside)
        if refusals and not partial:
            raise BulkRefused(refusals)
        skipped = {row for row, _ in outside}
        rows = [(row, new) for row, new in parsed.rows if row not in skipped]
        created, fields, taken = await codes.create_codes(
            conn, rows, public_base_url=self.public_base_url, partial=partial
        )
        refused = refusals.with_rows(RowError(row, "slug", message) for row, message in taken)
        if refused and not created:
            raise BulkRefused(refused)
        if created:
            await history.record_created(
                conn, [(c.id, f) for c, f in zip(created, fields, strict=True)], identity
            )
            await audit.record(
                conn,
                identity,
                "code.bulk",
                target=created[0].id,
                detail={
                    "created": len(created),
                    "rows_refused": refused.rows,
                    "ids": [c.id for c in created[:20]],
                },
            )
        result = BulkResult(
            created=created,
            errors=[RowProblem(row=e.row, field=e.field, message=e.message) for e in refused.errors],
            errors_omitted=refused.omitted,
        )
        return result, refused.rows

    def _count(self, result: BulkResult, rows_refused: int) -> None:
        self.metrics.code_changes.labels("create").inc(len(result.created))
        log.info("codes created in bulk", extra={"codes": len(result.created), "rows_refused": rows_refused})
