"""Files for print: every code of a selection as images in a ZIP (with ``manifest.csv``), streamed.

Codes are read a page at a time in the listing's order (each code once, however the list changes
meanwhile), their images made as ``image.png``/``image.svg`` makes them (the same cache, the same
check by decoding, the same bound on renders at once), and each is sent as soon as it is made: the
memory a ZIP of 10,000 images needs is that of a few images. Entries are stored as they are (a PNG
is compressed already); an SVG is deflated.
"""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.management import codes, exports
from services.management.images import ImageRequest, Images
from services.management.logos import Logo
from services.management.rendering import Format, ImageOptions, RenderRefused
from services.management.schemas import QRCode

log = logging.getLogger(__name__)

PAGE = 500
AT_ONCE = 8  # images being made while the last ones are sent
MANIFEST_COLUMNS = ("id", "short_url", "target_url", "title", "file")


async def pages(
    engine: AsyncEngine, filters: codes.Filters, *, faults: tuple[type[BaseException], ...]
) -> AsyncIterator[list[QRCode]]:
    """The codes the filters keep, oldest first, a page at a time (a short read per page)."""
    cursor = None
    while True:
        try:
            async with engine.connect() as conn:
                page = await codes.list_codes(conn, filters, limit=PAGE, cursor=cursor)
        except faults as exc:
            log.error("print export cut short: the database failed", extra={"error": type(exc).__name__})
            return
        if page.items:
            yield page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class _Sink(io.RawIOBase):
    """Where the ZIP writer writes; what it wrote is taken away after each entry."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


async def zip_of_images(
    code_pages: AsyncIterator[list[QRCode]],
    images: Images,
    load_logo: Callable[[str], Awaitable[Logo]],
    *,
    image_format: Format,
    options: ImageOptions,
) -> AsyncIterator[bytes]:
    """A ZIP with ``{id}.{format}`` per code and ``manifest.csv``, in pieces as they are made."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w")
    stamp = datetime.now(UTC).timetuple()[:6]
    compression = zipfile.ZIP_DEFLATED if image_format == "svg" else zipfile.ZIP_STORED
    manifest: list[tuple[str, ...]] = [MANIFEST_COLUMNS]

    async def image(code: QRCode) -> bytes:
        request = ImageRequest(
            code.short_url, image_format, options.for_logo(code.logo_sha256 is not None), code.logo_sha256
        )
        return await images.get(request, load_logo)

    async for page in code_pages:
        for start in range(0, len(page), AT_ONCE):
            batch = page[start : start + AT_ONCE]
            made = await asyncio.gather(*(image(code) for code in batch), return_exceptions=True)
            for code, data in zip(batch, made, strict=True):
                if isinstance(data, RenderRefused):  # this code's logo at this size, say: listed, no file
                    log.error("export: image refused", extra={"code_id": code.id, "reason": str(data)})
                    manifest.append((code.id, code.short_url, code.target_url, code.title or "", ""))
                    continue
                if isinstance(data, BaseException):
                    raise data
                name = f"{code.id}.{image_format}"
                entry = zipfile.ZipInfo(name, date_time=stamp)
                entry.compress_type = compression
                archive.writestr(entry, data)
                manifest.append((code.id, code.short_url, code.target_url, code.title or "", name))
            yield sink.take()
    entry = zipfile.ZipInfo("manifest.csv", date_time=stamp)
    entry.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(entry, exports.lines(manifest))
    archive.close()
    yield sink.take()
