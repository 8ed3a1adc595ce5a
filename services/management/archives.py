"""The ZIP export: every code of a selection as an image in a ZIP archive, with ``manifest.csv``,
streamed.

Its images are made as ``image.png``/``image.svg`` makes them (the same cache, the same check by
decoding), in the exports' own render slot (images.py), and each is sent as soon as it is made: the
memory a ZIP of 2,000 images needs is that of a few images. Entries are stored as they are (a PNG
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

import anyio

from services.management import contents, exports
from services.management.errors import InvalidValue
from services.management.images import ImageRequest, Images
from services.management.logos import Logo
from services.management.rendering import Format, ImageOptions, RenderRefused
from services.management.schemas import QRCode
from services.management.selections import Progress

log = logging.getLogger(__name__)

AT_ONCE = 4  # images being made (or read from the store) while the last ones are sent
MANIFEST_COLUMNS = ("id", "short_url", "target_url", "title", "file")


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
        drawn = options.for_code(code.design).for_logo(code.logo_sha256 is not None)
        request = ImageRequest(contents.encoded_by(code), image_format, drawn, code.logo_sha256)
        return await images.get(request, load_logo, export=True)

    try:
        async for page in code_pages:
            for start in range(0, len(page), AT_ONCE):
                batch = page[start : start + AT_ONCE]
                made = await asyncio.gather(*(image(code) for code in batch), return_exceptions=True)
                for code, data in zip(batch, made, strict=True):
                    # This code's logo at this size, say, or its saved frame without a border: no file.
                    if isinstance(data, RenderRefused | InvalidValue):
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
