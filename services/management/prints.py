"""Files for print: every code of a selection as images in a ZIP (with ``manifest.csv``), streamed.

Codes are read a page at a time in the listing's order (each code once, however the list changes
meanwhile), their images made as ``image.png``/``image.svg`` makes them (the same cache, the same
check by decoding, the same bound on renders at once), and each is sent as soon as it is made: the
memory a ZIP of 2,000 images needs is that of a few images. Entries are stored as they are (a PNG
is compressed already); an SVG is deflated.

A PDF or ZIP export holds at most ``EXPORT_MAX_CODES`` codes: the selection is counted first (up to
one past the bound) and a larger one refused with 422 before any work starts. Its renders take the
exports' own slot (images.py), and a client that goes away stops it between codes: Starlette
cancels the response's body when the server reports the disconnect, and the log says how far it got.
"""

from __future__ import annotations

import asyncio
import io
import logging
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.management import codes, exports
from services.management.errors import InvalidValue
from services.management.images import ImageRequest, Images
from services.management.logos import Logo
from services.management.rendering import Format, ImageOptions, RenderRefused
from services.management.schemas import QRCode

log = logging.getLogger(__name__)

PAGE = 500
AT_ONCE = 4  # images being made (or read from the store) while the last ones are sent
MANIFEST_COLUMNS = ("id", "short_url", "target_url", "title", "file")


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
    progress: Progress | None = None,
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
        return await images.get(request, load_logo, export=True)

    try:
        async for page in code_pages:
            for start in range(0, len(page), AT_ONCE):
                batch = page[start : start + AT_ONCE]
                made = await asyncio.gather(*(image(code) for code in batch), return_exceptions=True)
                for code, data in zip(batch, made, strict=True):
                    if isinstance(data, RenderRefused):  # this code's logo at this size, say: no file
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
                if progress is not None:
                    progress.done += len(batch)
                yield sink.take()
        entry = zipfile.ZipInfo("manifest.csv", date_time=stamp)
        entry.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(entry, exports.lines(manifest))
    except (anyio.get_cancelled_exc_class(), GeneratorExit):
        # Cancelled inside (a render under way), or closed between pieces (while one was sent).
        if progress is not None:
            progress.stopped()
        raise
    finally:
        archive.close()  # now: left open, the collector would close it into a sink closed before it
    yield sink.take()
