"""The audit log, read: a page of entries, or all of them as CSV (admins only: api/operations.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.management import audit
from services.management.schemas import AuditFilters, AuditPage
from services.management.service.database import DATABASE_FAULTS, Database


class AuditService:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def page(self, filters: AuditFilters, *, limit: int, cursor: str | None) -> AuditPage:
        async with self.database.connect() as conn:
            return await audit.page(conn, filters, limit=limit, cursor=cursor)

    def csv(self, filters: AuditFilters) -> AsyncIterator[bytes]:
        return audit.as_csv(self.database.engine, filters, faults=DATABASE_FAULTS)
