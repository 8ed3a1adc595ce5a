"""The image pipeline: a code's image from memory, else from the store, else rendered off the event loop.

At most ``concurrency`` renders run at once (other requests go on meanwhile), and one key is never
rendered twice at the same time. The store is only a cache: a file that cannot be read, or is not an
image of the right kind, is a miss, and a store that cannot be written to is skipped.

Exports render apart: in a slot of their own (``EXPORT_RENDERS``, shared by every export running),
never in the ``concurrency`` slots that image requests wait for, so a ZIP of 2,000 codes cannot make
the console's previews queue behind it. A separate bound rather than export renders that give their
slot back between codes: the limiter is fair (first come, first served), so an export queueing its
next code at once would still put a render ahead of every image request that arrived meanwhile.
An export's render also runs in the export's own task rather than as a shared flight, so a client
that goes away cancels what it had queued; the render under way finishes and is dropped.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread

from services.management.logos import Logo
from services.management.metrics import ManagementMetrics
from services.management.rendering import Format, ImageOptions, RenderRefused, render_png, render_svg
from services.management.storage import ImageStore, MemoryCache
from shared.singleflight import SingleFlight

log = logging.getLogger(__name__)

RENDERERS: dict[str, Callable[[str, ImageOptions, Logo | None], bytes]] = {
    "png": render_png,
    "svg": render_svg,
}
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
# How a stored image of each format starts (anything else in the store is damaged).
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml "}
# Renders for exports at once, whatever the number of exports: a third thread of work beside the
# image requests' two (RENDER_CONCURRENCY) on the two cores this is sized for.
EXPORT_RENDERS = 1


@dataclass(frozen=True)
class ImageRequest:
    payload: str
    image_format: Format
    options: ImageOptions
    logo_sha256: str | None

    @property
    def key(self) -> str:
        return self.options.cache_key(self.payload, self.image_format, self.logo_sha256)


class Images:
    def __init__(
        self, store: ImageStore, *, concurrency: int, memory_bytes: int, metrics: ManagementMetrics
    ) -> None:
        self.store = store
        self.memory = MemoryCache(memory_bytes)
        self._metrics = metrics
        self.limiter = anyio.CapacityLimiter(concurrency)  # renders, and logos being normalised
        self.export_limiter = anyio.CapacityLimiter(EXPORT_RENDERS)  # every export's renders and PDFs
        self._flights: SingleFlight[str, bytes] = SingleFlight()

    async def get(
        self, request: ImageRequest, load_logo: Callable[[str], Awaitable[Logo]], *, export: bool = False
    ) -> bytes:
        """The image, from memory, the store or a render; ``export``: for an export (its own render
        slot; cancelled with the export, see the module's docstring)."""
        data = self.memory.get(request.key)
        if data is not None:
            self._metrics.image_memory_hits.inc()
            self.store.touch(request.key)
            return data
        if export:
            return await self._produce(request, load_logo, self.export_limiter)
        return await self._flights.run(
            request.key, functools.partial(self._produce, request, load_logo, self.limiter)
        )

    async def _produce(
        self,
        request: ImageRequest,
        load_logo: Callable[[str], Awaitable[Logo]],
        limiter: anyio.CapacityLimiter,
    ) -> bytes:
        data = await anyio.to_thread.run_sync(self._stored, request)
        if data is not None:
            self._metrics.image_store_hits.inc()
        else:
            logo = await load_logo(request.logo_sha256) if request.logo_sha256 else None
            data = await anyio.to_thread.run_sync(
                functools.partial(self._render, request, logo), limiter=limiter
            )
            await anyio.to_thread.run_sync(self._keep, request.key, data)
        self.memory.put(request.key, data)
        return data

    def _stored(self, request: ImageRequest) -> bytes | None:
        try:
            data = self.store.get(request.key)
        except OSError as exc:
            log.warning("image store unreadable: %s", exc)
            return None
        if data is not None and not data.startswith(MAGIC[request.image_format]):
            log.warning("stored image damaged: rendering it again", extra={"key": request.key})
            return None
        return data

    def _keep(self, key: str, data: bytes) -> None:
        try:
            self.store.put(key, data)
        except OSError as exc:  # full or read-only: serve the image anyway, it is rendered again later
            log.warning("image store not writable: %s", exc)

    def _render(self, request: ImageRequest, logo: Logo | None) -> bytes:
        fmt = request.image_format
        started = time.perf_counter()
        try:
            data = RENDERERS[fmt](request.payload, request.options, logo)
        except RenderRefused:
            self._metrics.renders.labels(fmt, "refused").inc()
            self._metrics.decode_failures.inc()
            raise
        self._metrics.renders.labels(fmt, "ok").inc()
        self._metrics.render_duration.labels(fmt).observe(time.perf_counter() - started)
        log.info("rendered", extra={"format": fmt, "bytes": len(data)})  # under the request's id
        return data
