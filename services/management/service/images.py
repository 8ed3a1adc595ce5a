"""A code's images and its logo: what an image encodes, the image itself (from memory, the store or
a render, see :mod:`services.management.images`), and setting or removing the logo in its middle."""

from __future__ import annotations

import logging

import anyio.to_thread
from sqlalchemy import select

from services.management import audit, codes, contents, history
from services.management.auth.identity import Identity
from services.management.codes import check_scope
from services.management.errors import InvalidValue, LogoNotFound
from services.management.images import ImageRequest, Images
from services.management.logos import Logo, normalise_logo
from services.management.metrics import ManagementMetrics
from services.management.models import qr_codes
from services.management.rendering import Format, ImageOptions, RenderRefused
from services.management.schemas import QRCode
from services.management.service.database import Database

log = logging.getLogger(__name__)


class ImageService:
    def __init__(self, database: Database, pipeline: Images, metrics: ManagementMetrics) -> None:
        self.database = database
        self.pipeline = pipeline
        self.metrics = metrics

    async def request(
        self, code_id: str, image_format: Format, options: ImageOptions, identity: Identity
    ) -> ImageRequest:
        """What the code's image in these options is made of (its short URL, its logo); its key
        names it, whatever the options' spelling."""
        async with self.database.connect() as conn:
            await check_scope(conn, code_id, identity.tags)
            short_url, logo_sha256 = await codes.image_source(conn, code_id)
            if options.saved_design:  # no design asked for: the code's own
                saved = await conn.scalar(select(qr_codes.c.design).where(qr_codes.c.id == code_id))
                options = options.for_code(saved)
        options = options.for_logo(logo_sha256 is not None)
        contents.check_capacity(short_url, options.ecc)  # a static code's payload may not fit at H
        return ImageRequest(short_url, image_format, options, logo_sha256)

    async def image(self, request: ImageRequest, *, code_id: str) -> bytes:
        """The image, checked by decoding; :class:`InvalidValue` (``image``) for options whose image
        does not decode reliably."""
        try:
            return await self.pipeline.get(request, self.load_logo)
        except RenderRefused as exc:
            log.error("render refused", extra={"code_id": code_id, "reason": str(exc)})
            raise InvalidValue("image", f"this combination of options does not scan reliably: {exc}") from exc

    async def load_logo(self, sha256: str) -> Logo:
        async with self.database.connect() as conn:
            return await codes.load_logo(conn, sha256)

    async def logo(self, code_id: str, identity: Identity) -> Logo:
        """The code's logo as stored; :class:`LogoNotFound` when it has none."""
        async with self.database.connect() as conn:
            await check_scope(conn, code_id, identity.tags)
            _, sha256 = await codes.image_source(conn, code_id)
            if sha256 is None:
                raise LogoNotFound(code_id)
            return await codes.load_logo(conn, sha256)

    async def set_logo(self, code_id: str, upload: bytes, content_type: str, identity: Identity) -> QRCode:
        """Show ``upload`` (a PNG or JPEG, checked and normalised first: :class:`InvalidValue`
        naming ``logo``) in the middle of the code's images from now on."""
        stored = await anyio.to_thread.run_sync(
            normalise_logo, upload, content_type, limiter=self.pipeline.limiter
        )
        async with self.database.connect(write=True) as conn:
            await check_scope(conn, code_id, identity.tags)
            payload, _ = await codes.image_source(conn, code_id)
            try:  # a logo asks for H: a long static payload may not fit there
                contents.check_capacity(payload, "H")
            except InvalidValue as exc:
                raise InvalidValue("logo", f"a logo needs error correction H, and {exc.reason}") from None
            code, changed = await codes.set_logo(conn, code_id, stored)
            if changed:
                await history.record(conn, code_id, "update", changed, identity)
                await audit.record(
                    conn, identity, "logo.set", target=code_id, detail={"sha256": stored.logo.sha256}
                )
        self.metrics.code_changes.labels("update").inc()
        log.info("logo set", extra={"code_id": code_id, "sha256": stored.logo.sha256})
        return code

    async def remove_logo(self, code_id: str, identity: Identity) -> None:
        """No logo in the code's images any more (nothing to do when it has none)."""
        async with self.database.connect(write=True) as conn:
            await check_scope(conn, code_id, identity.tags)
            _, changed = await codes.set_logo(conn, code_id, None)
            if changed:
                await history.record(conn, code_id, "update", changed, identity)
                await audit.record(conn, identity, "logo.remove", target=code_id)
        log.info("logo removed", extra={"code_id": code_id})
