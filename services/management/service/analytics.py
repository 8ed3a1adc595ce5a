"""Scans: a code's statistics (or every code's) over a range, and erasing a code's scans."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from services.management import analytics, audit, codes, history
from services.management.auth.identity import Identity
from services.management.metrics import ManagementMetrics
from services.management.schemas import ScanQuery, ScanReport
from services.management.service.database import Database

log = logging.getLogger(__name__)


class AnalyticsService:
    def __init__(self, database: Database, metrics: ManagementMetrics, *, countries: bool) -> None:
        self.database = database
        self.metrics = metrics
        self.countries = countries  # GEOIP_DATABASE is configured: top lists have countries

    async def report(self, code_id: str | None, query: ScanQuery, identity: Identity) -> ScanReport:
        """The statistics of one code (``code_id``) or of every code (``None``): every code the
        caller's tags reach, for a token limited to tags."""
        async with self.database.connect() as conn:
            if code_id is not None:
                await codes.check_scope(conn, code_id, identity.tags)
            return await analytics.report(
                conn, code_id, query, now=datetime.now(UTC), countries=self.countries, scope=identity.tags
            )

    async def erase(self, code_id: str, identity: Identity) -> None:
        """Erase every scan of the code (a deleted one's too), its counters and rollups; recorded
        in its history (a privacy request)."""
        async with self.database.connect(write=True) as conn:
            await codes.check_scope(conn, code_id, identity.tags)
            changed = await codes.erase_scans(conn, code_id)
            await history.record(conn, code_id, "erase", changed, identity)
            await audit.record(
                conn, identity, "scans.erase", target=code_id, detail={"scans": changed["scans"]["old"]}
            )
        self.metrics.code_changes.labels("erase").inc()
        log.info("scans erased", extra={"code_id": code_id, "scans": changed["scans"]["old"]})
