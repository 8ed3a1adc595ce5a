"""Codes: create, change, delete and read them; each write's transaction, history entry, metric
and log line, here and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from services.management import audit, codes, history
from services.management.auth.identity import Identity
from services.management.codes import Filters
from services.management.metrics import ManagementMetrics
from services.management.schemas import History, NewQRCode, QRCode, QRCodeList
from services.management.service.database import Database

log = logging.getLogger(__name__)


class CodeService:
    def __init__(self, database: Database, metrics: ManagementMetrics, *, public_base_url: str) -> None:
        self.database = database
        self.metrics = metrics
        self.public_base_url = public_base_url

    async def create(self, new: NewQRCode, identity: Identity) -> QRCode:
        """A new code; :class:`SlugTaken` when its slug is or ever was an id, in any case."""
        async with self.database.connect(write=True) as conn:
            code, fields = await codes.create_code(conn, new, public_base_url=self.public_base_url)
            await history.record(conn, code.id, "create", fields, identity)
            await audit.record(
                conn, identity, "code.create", target=code.id, detail={"fields": sorted(fields)}
            )
        self.metrics.code_changes.labels("create").inc()
        log.info("code created", extra={"code_id": code.id})
        return code

    async def update(self, code_id: str, changes: Mapping[str, Any], identity: Identity) -> QRCode:
        """The code with ``changes`` (validated values of writable fields); the history records
        the fields whose values really changed."""
        async with self.database.connect(write=True) as conn:
            code, changed = await codes.update_code(conn, code_id, changes)
            if changed:
                await history.record(conn, code_id, "update", changed, identity)
                await audit.record(
                    conn, identity, "code.update", target=code_id, detail={"fields": sorted(changed)}
                )
        self.metrics.code_changes.labels("update").inc()
        log.info("code updated", extra={"code_id": code_id, "fields": sorted(changes)})
        return code

    async def delete(self, code_id: str, identity: Identity) -> None:
        async with self.database.connect(write=True) as conn:
            changed = await codes.delete_code(conn, code_id)
            await history.record(conn, code_id, "delete", changed, identity)
            await audit.record(conn, identity, "code.delete", target=code_id)
        self.metrics.code_changes.labels("delete").inc()
        log.info("code deleted", extra={"code_id": code_id})

    async def get(self, code_id: str) -> QRCode:
        async with self.database.connect() as conn:
            return await codes.get_code(conn, code_id)

    async def page(self, filters: Filters, *, limit: int, cursor: str | None) -> QRCodeList:
        async with self.database.connect() as conn:
            return await codes.list_codes(conn, filters, limit=limit, cursor=cursor)

    async def history(self, code_id: str, *, limit: int, cursor: str | None = None) -> History:
        async with self.database.connect() as conn:
            return await history.page(conn, code_id, limit=limit, cursor=cursor)

    async def with_history(self, code_id: str, *, limit: int) -> tuple[QRCode, History]:
        """The code and its latest changes, read together."""
        async with self.database.connect() as conn:
            code = await codes.get_code(conn, code_id)
            return code, await history.page(conn, code_id, limit=limit, cursor=None)

    async def known_tags(self) -> list[str]:
        async with self.database.connect() as conn:
            return await codes.known_tags(conn)
