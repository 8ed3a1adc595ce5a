"""Files of many codes, or of one code's scans, streamed as they are made: the codes as CSV, their
images in a ZIP, their label sheets as PDF (at most ``EXPORT_MAX_CODES`` codes, counted before any
work starts), a code's raw scans as CSV."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import anyio
import anyio.from_thread
import anyio.to_thread

from services.management import archives, codes, exports, labels, selections
from services.management.auth.identity import Identity
from services.management.codes import Filters
from services.management.logos import Logo
from services.management.rendering import Format, ImageOptions
from services.management.schemas import PdfQuery, QRCode, RawScansQuery
from services.management.service.codes import scoped
from services.management.service.database import DATABASE_FAULTS, Database
from services.management.service.images import ImageService


class ExportService:
    def __init__(self, database: Database, images: ImageService, *, max_codes: int) -> None:
        self.database = database
        self.images = images
        self.max_codes = max_codes

    def codes_csv(self, filters: Filters, identity: Identity) -> AsyncIterator[bytes]:
        """Every code the filters keep (within the caller's tags), oldest first, in the columns a
        bulk upload takes back."""
        return exports.codes_csv(self.database.engine, scoped(filters, identity), faults=DATABASE_FAULTS)

    async def raw_scans(self, code_id: str, query: RawScansQuery, identity: Identity) -> AsyncIterator[bytes]:
        """The code's raw scans (a deleted code's too) as CSV; :class:`CodeNotFound` first."""
        async with self.database.connect() as conn:
            await codes.check_scope(conn, code_id, identity.tags)
            await codes.get_code_or_deleted(conn, code_id)
        return exports.raw_scans(self.database.engine, code_id, query, faults=DATABASE_FAULTS)

    async def images_zip(
        self, filters: Filters, identity: Identity, image_format: Format, options: ImageOptions
    ) -> AsyncIterator[bytes]:
        """A ZIP of the codes' images and a manifest (within the caller's tags); :class:`InvalidValue`
        (``selection``) for more than ``max_codes`` codes, before any work starts."""
        filters = scoped(filters, identity)
        count = await self._count(filters)
        return archives.zip_of_images(
            selections.pages(self.database.engine, filters, faults=DATABASE_FAULTS, max_codes=self.max_codes),
            self.images.pipeline,
            self.images.load_logo,
            image_format=image_format,
            options=options,
            progress=selections.Progress("zip", count),
        )

    async def label_sheets(
        self, filters: Filters, identity: Identity, query: PdfQuery
    ) -> AsyncIterator[bytes]:
        """The codes on PDF label sheets laid out as ``query`` says (:class:`InvalidValue` naming
        what does not fit), at most ``max_codes`` of them (as :meth:`images_zip`)."""
        filters = scoped(filters, identity)
        layout = labels.sheet(query.paper, query.size_mm, query.columns, query.rows)
        options = query.options()
        count = await self._count(filters)
        return self._sheets(filters, layout, options, selections.Progress("pdf", count))

    async def _count(self, filters: Filters) -> int:
        async with self.database.connect() as conn:
            return await selections.check_size(conn, filters, max_codes=self.max_codes)

    async def _sheets(
        self, filters: Filters, layout: labels.Sheet, options: ImageOptions, progress: selections.Progress
    ) -> AsyncIterator[bytes]:
        """The file, drawn a page at a time in the exports' render slot (a client that goes away
        stops it between labels), then sent."""
        limiter = self.images.pipeline.export_limiter

        async def draw(sheets: labels.Sheets, page: list[QRCode], logos: dict[str, Logo]) -> None:
            await anyio.to_thread.run_sync(sheets.page, page, logos, limiter=limiter)
            progress.done += len(page)

        try:
            sheets = await anyio.to_thread.run_sync(
                functools.partial(
                    labels.Sheets, layout, options, between_labels=anyio.from_thread.check_cancelled
                ),
                limiter=limiter,
            )
            pending: list[QRCode] = []
            logos: dict[str, Logo] = {}
            selected = selections.pages(
                self.database.engine, filters, faults=DATABASE_FAULTS, max_codes=self.max_codes
            )
            async for page in selected:
                for sha in {c.logo_sha256 for c in page if c.logo_sha256} - logos.keys():
                    logos[sha] = await self.images.load_logo(sha)
                pending += page
                while len(pending) >= layout.per_page:
                    await draw(sheets, pending[: layout.per_page], logos)
                    del pending[: layout.per_page]
            if pending:
                await draw(sheets, pending, logos)
            data = await anyio.to_thread.run_sync(sheets.finish, limiter=limiter)
        except anyio.get_cancelled_exc_class():
            progress.stopped()
            raise
        for start in range(0, len(data), 1 << 16):
            yield data[start : start + (1 << 16)]
