"""The management service's operations, under both of its front ends (the API and the console).

One object per capability; each write's transaction, history entry, metric and log line live in its
method, once. Each takes the caller's :class:`~services.management.auth.identity.Identity` where it
records a change, and raises :mod:`services.management.errors` (never an HTTP status), which each
front end turns into its own answer.

::

    Service      all of them, over one database and one image pipeline (made by the app factory)
    codes        CodeService: create, change, delete and read codes, and their history
    images       ImageService: a code's images, and the logo in their middle
    bulk         BulkService: many codes at once (JSON or CSV), under an Idempotency-Key or not
    exports      ExportService: the codes as CSV, images in a ZIP, label sheets; a code's raw scans
    analytics    AnalyticsService: scan statistics, and erasing a code's scans
    audit        AuditService: the audit log, a page at a time or as CSV
    tokens       TokenService: the service's bearer tokens, made, listed, revoked
    database     Database: the engine, connections, the database away as TryAgain
"""

from __future__ import annotations

from typing import Any

from services.management.auth.tokens import TokenFile, TokenStore
from services.management.images import Images
from services.management.metrics import ManagementMetrics
from services.management.schemas import validation_context
from services.management.service.analytics import AnalyticsService
from services.management.service.audit import AuditService
from services.management.service.bulk import BulkService
from services.management.service.codes import CodeService
from services.management.service.database import Database
from services.management.service.exports import ExportService
from services.management.service.images import ImageService
from services.management.service.tokens import TokenService
from services.management.settings import ManagementSettings
from services.management.storage import LocalImageStore


class Service:
    def __init__(self, settings: ManagementSettings, metrics: ManagementMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.database = Database(settings)
        # What a code's fields are validated against: this service's own hosts (links there loop).
        self.context: dict[str, Any] = validation_context(settings.own_hosts)
        pipeline = Images(
            LocalImageStore(settings.qr_data_dir, max_bytes=settings.qr_data_max_bytes),
            concurrency=settings.render_concurrency,
            memory_bytes=settings.image_cache_bytes,
            metrics=metrics,
        )
        base_url = settings.public_base_url
        self.codes = CodeService(
            self.database, metrics, public_base_url=base_url, countries=settings.geoip_configured
        )
        self.images = ImageService(self.database, pipeline, metrics)
        self.bulk = BulkService(self.database, metrics, public_base_url=base_url, context=self.context)
        self.exports = ExportService(self.database, self.images, max_codes=settings.export_max_codes)
        self.analytics = AnalyticsService(self.database, metrics, countries=settings.geoip_configured)
        # Every token accepted (the door uses it with ADMIN_AUTH=identity); ConfigError for a tokens
        # file that cannot be used.
        tokens_file = TokenFile(settings.admin_tokens_file) if settings.admin_tokens_file else None
        self.token_store = TokenStore(self.database, settings.qr_data_dir, tokens_file)
        self.tokens = TokenService(self.database, self.token_store)
        self.audit = AuditService(self.database)

    async def open(self) -> None:
        await self.database.open()

    async def close(self) -> None:
        await self.database.close()
