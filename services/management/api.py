"""The management API's endpoints (``/api/v1``), health, and the resources they share.

Each endpoint reads its input through the models of :mod:`services.management.schemas` (the same
ones the OpenAPI document is generated from), does its work in :mod:`services.management.codes`,
and answers through a model too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.management import analytics, bulk, codes, exports, labels, limits, prints, schemas
from services.management.auth.identity import Identity, identity_of
from services.management.images import MEDIA_TYPES, ImageRequest, Images
from services.management.logos import LOGO_TYPES, Logo, normalise_logo
from services.management.metrics import ManagementMetrics
from services.management.openapi import document
from services.management.rendering import Format, ImageOptions, RenderRefused
from services.management.requests import read_body, read_json, read_query
from services.management.settings import ManagementSettings
from services.management.storage import LocalImageStore
from shared.database import TRANSIENT, sqlalchemy_url
from shared.errors import BadRequest, InvalidField, NotFound, Unavailable
from shared.ids import is_well_formed
from shared.metrics import exposition

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
DB_TIMEOUT = 10.0
# The database away, as SQLAlchemy passes it on: asyncpg's own faults wrapped in its classes.
DATABASE_FAULTS = (
    *TRANSIENT,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)
IMAGE_QUERIES: dict[str, type[schemas.ImageQuery]] = {"png": schemas.PngQuery, "svg": schemas.SvgQuery}


class ManagementApi:
    def __init__(self, settings: ManagementSettings, metrics: ManagementMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.images = Images(
            LocalImageStore(settings.qr_data_dir, max_bytes=settings.qr_data_max_bytes),
            concurrency=settings.render_concurrency,
            memory_bytes=settings.image_cache_bytes,
            metrics=metrics,
        )
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "the lifespan has not opened the engine"
        return self._engine

    async def open(self) -> None:
        self._engine = create_async_engine(
            sqlalchemy_url(self.settings.database_url),
            pool_size=self.settings.db_pool_size,
            max_overflow=self.settings.db_max_overflow,
            pool_timeout=DB_TIMEOUT,
            pool_pre_ping=True,
            connect_args={
                "timeout": DB_TIMEOUT,
                "command_timeout": DB_TIMEOUT,
                # Plan each statement for its actual values: a generic plan of the search's
                # LIKE $1 cannot use the trigram index and walks every row instead (13x slower
                # in make bench). Planning costs well under a millisecond here.
                "server_settings": {"plan_cache_mode": "force_custom_plan"},
            },
        )

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def database(self, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection (in a transaction when ``write``); an unreachable database becomes a 503."""
        try:
            async with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
        except DATABASE_FAULTS as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise Unavailable("the database is unavailable; try again shortly") from exc

    # -- endpoints ---------------------------------------------------------------------------

    def _context(self) -> dict[str, Any]:
        return {"own_hosts": self.settings.own_hosts}

    async def create_code(self, request: Request) -> JSONResponse:
        read_query(request, schemas.NoQuery)
        new = await read_json(
            request, schemas.NewQRCode, max_bytes=self.settings.max_body_bytes, context=self._context()
        )
        async with self.database(write=True) as conn:
            resource = await codes.create_code(
                conn, new, public_base_url=self.settings.public_base_url, identity=identity_of(request.scope)
            )
        self.metrics.code_changes.labels("create").inc()
        log.info("code created", extra={"code_id": resource.id})
        return answer(resource, status_code=201, headers={"Location": f"/api/v1/qr/{resource.id}"})

    async def bulk_create(self, request: Request) -> Response:
        partial = read_query(request, schemas.BulkQuery).partial
        key = bulk.idempotency_key(request.headers.get("idempotency-key"))
        content_type, body = await read_body(
            request, accepted=("application/json", "text/csv"), max_bytes=self.settings.bulk_max_body_bytes
        )
        async with self.database(write=True) as conn:
            if key is not None:
                stored = await bulk.claim(conn, key, bulk.fingerprint(content_type, partial, body))
                if stored is not None:
                    status, content = stored
                    return Response(
                        content,
                        status_code=status,
                        media_type="application/json",
                        headers={"Idempotent-Replayed": "true"},
                    )
            try:
                created, refused = await self.create_in_bulk(
                    conn, content_type, body, partial=partial, identity=identity_of(request.scope)
                )
                result = schemas.BulkResult(
                    created=created,
                    errors=[schemas.RowProblem(**e.to_dict()) for e in refused.errors],
                    errors_omitted=refused.omitted,
                )
                status, content = 201, await anyio.to_thread.run_sync(_json_bytes, result)
            except (InvalidField, BadRequest, bulk.RowsRefused) as exc:
                # Refusals are answers too: a retry with the key gets the same one.
                status, content = exc.status, json.dumps(exc.to_dict()).encode()
            if key is not None:
                await bulk.remember(conn, key, status, content)
        if status == 201:
            self.metrics.code_changes.labels("create").inc(len(created))
            log.info("codes created in bulk", extra={"codes": len(created), "rows_refused": refused.rows})
        return Response(content, status_code=status, media_type="application/json")

    async def create_in_bulk(
        self, conn: AsyncConnection, content_type: str, body: bytes, *, partial: bool, identity: Identity
    ) -> tuple[list[schemas.QRCode], bulk.Refusals]:
        """The codes a JSON array or CSV file asks for, and the rows refused (``partial``); without
        ``partial``, :class:`bulk.RowsRefused` with the rows' errors and nothing created. For the
        API's bulk endpoint and the console's CSV upload."""
        parsed = await anyio.to_thread.run_sync(
            functools.partial(bulk.parse, content_type, body, context=self._context())
        )
        if parsed.refused and not partial:
            raise bulk.RowsRefused(parsed.refused)
        created, taken = await codes.create_codes(
            conn,
            parsed.rows,
            public_base_url=self.settings.public_base_url,
            identity=identity,
            partial=partial,
        )
        refused = parsed.refused.with_rows(bulk.RowError(row, "slug", message) for row, message in taken)
        if refused and not created:
            raise bulk.RowsRefused(refused)
        return created, refused

    async def list_codes(self, request: Request) -> JSONResponse:
        query = read_query(request, schemas.ListQuery)
        filters = codes.Filters(
            q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids, order=query.order
        )
        async with self.database() as conn:
            page = await codes.list_codes(conn, filters, limit=query.limit, cursor=query.cursor)
        return answer(page)

    async def export_csv(self, request: Request) -> Response:
        query = read_query(request, schemas.ExportQuery)
        filters = codes.Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        return StreamingResponse(
            exports.codes_csv(self.engine, filters, faults=DATABASE_FAULTS),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="qr-codes.csv"',
                "Cache-Control": "no-store",
            },
        )

    async def export_zip(self, request: Request) -> Response:
        image_format: Format
        query: schemas.ZipPngQuery | schemas.ZipSvgQuery
        if request.query_params.get("format", "png") == "svg":
            image_format, query = "svg", read_query(request, schemas.ZipSvgQuery)
        else:  # png, or a format read_query refuses by name
            image_format, query = "png", read_query(request, schemas.ZipPngQuery)
        options = query.options(image_format)
        filters = codes.Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        max_codes = self.settings.export_max_codes
        async with self.database() as conn:
            count = await prints.check_size(conn, filters, max_codes=max_codes)
        pieces = prints.zip_of_images(
            prints.pages(self.engine, filters, faults=DATABASE_FAULTS, max_codes=max_codes),
            self.images,
            self._load_logo,
            image_format=image_format,
            options=options,
            progress=prints.Progress("zip", count),
        )
        name = "qr-codes" + (f"-{re.sub(r'[^A-Za-z0-9_-]', '_', query.tag)}" if query.tag else "")
        return StreamingResponse(
            pieces,
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="{name}.zip"',
                "Cache-Control": "no-store",
            },
        )

    async def export_pdf(self, request: Request) -> Response:
        query = read_query(request, schemas.PdfQuery)
        layout = labels.sheet(query.paper, query.size_mm, query.columns, query.rows)
        options = ImageOptions(
            size=limits.DEFAULT_SIZE, border=query.border, ecc=query.ecc.upper(), fg="#000000", bg="#ffffff"
        )
        filters = codes.Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        max_codes = self.settings.export_max_codes
        async with self.database() as conn:
            count = await prints.check_size(conn, filters, max_codes=max_codes)
        progress = prints.Progress("pdf", count)
        limiter = self.images.export_limiter

        async def draw(sheets: labels.Sheets, page: list[schemas.QRCode], logos: dict[str, Logo]) -> None:
            await anyio.to_thread.run_sync(sheets.page, page, logos, limiter=limiter)
            progress.done += len(page)

        async def body() -> AsyncIterator[bytes]:
            # The answer starts at once; the file follows when drawn, a page at a time in the
            # exports' render slot (a client that goes away stops it between labels).
            try:
                sheets = await anyio.to_thread.run_sync(
                    functools.partial(
                        labels.Sheets, layout, options, between_labels=anyio.from_thread.check_cancelled
                    ),
                    limiter=limiter,
                )
                pending: list[schemas.QRCode] = []
                logos: dict[str, Logo] = {}
                selected = prints.pages(self.engine, filters, faults=DATABASE_FAULTS, max_codes=max_codes)
                async for page in selected:
                    for sha in {c.logo_sha256 for c in page if c.logo_sha256} - logos.keys():
                        logos[sha] = await self._load_logo(sha)
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

        name = "qr-labels" + (f"-{re.sub(r'[^A-Za-z0-9_-]', '_', query.tag)}" if query.tag else "")
        return StreamingResponse(
            body(),
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'attachment; filename="{name}.pdf"',
                "Cache-Control": "no-store",
            },
        )

    async def get_code(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        async with self.database() as conn:
            return answer(await codes.get_code(conn, code_id))

    async def update_code(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        body = await read_json(
            request,
            schemas.QRCodeChanges,
            max_bytes=self.settings.max_body_bytes,
            context=self._context(),
            patch=True,
        )
        changes = body.changes()
        async with self.database(write=True) as conn:
            resource = await codes.update_code(conn, code_id, changes, identity=identity_of(request.scope))
        self.metrics.code_changes.labels("update").inc()
        log.info("code updated", extra={"code_id": code_id, "fields": sorted(changes)})
        return answer(resource)

    async def delete_code(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        async with self.database(write=True) as conn:
            await codes.delete_code(conn, code_id, identity=identity_of(request.scope))
        self.metrics.code_changes.labels("delete").inc()
        log.info("code deleted", extra={"code_id": code_id})
        return Response(status_code=204)

    async def history(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        query = read_query(request, schemas.HistoryQuery)
        async with self.database() as conn:
            return answer(await codes.code_history(conn, code_id, limit=query.limit, cursor=query.cursor))

    async def scans(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        return await self._report(request, code_id)

    async def all_scans(self, request: Request) -> JSONResponse:
        return await self._report(request, None)

    async def _report(self, request: Request, code_id: str | None) -> JSONResponse:
        query = read_query(request, schemas.ScanQuery)
        async with self.database() as conn:
            return answer(
                await analytics.report(
                    conn, code_id, query, now=datetime.now(UTC), countries=self.settings.geoip_configured
                )
            )

    async def erase_scans(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        async with self.database(write=True) as conn:
            erased = await codes.erase_scans(conn, code_id, identity=identity_of(request.scope))
        self.metrics.code_changes.labels("erase").inc()
        log.info("scans erased", extra={"code_id": code_id, "scans": erased})
        return Response(status_code=204)

    async def scans_csv(self, request: Request) -> Response:
        code_id = _code_id(request)
        query = read_query(request, schemas.RawScansQuery)
        async with self.database() as conn:
            await codes.get_code_or_deleted(conn, code_id)
        rows = exports.raw_scans(self.engine, code_id, query, faults=DATABASE_FAULTS)
        filename = f"scans-{code_id}.csv"
        return StreamingResponse(
            rows,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )

    async def openapi(self, request: Request) -> JSONResponse:
        read_query(request, schemas.NoQuery)
        return JSONResponse(document(self.settings.export_max_codes))

    async def get_png(self, request: Request) -> Response:
        return await self._image(request, "png")

    async def get_svg(self, request: Request) -> Response:
        return await self._image(request, "svg")

    async def _image(self, request: Request, image_format: Format) -> Response:
        code_id = _code_id(request)
        options = read_query(request, IMAGE_QUERIES[image_format]).options(image_format)
        async with self.database() as conn:
            short_url, logo_sha256 = await codes.image_source(conn, code_id)
        image = ImageRequest(short_url, image_format, options.for_logo(logo_sha256 is not None), logo_sha256)
        etag = f'"{image.key[:32]}"'
        # no-cache: a browser asks again every time (a cheap 304), so a new logo shows at once.
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _if_none_match(request) & {etag, "*"}:
            return Response(status_code=304, headers=headers)
        try:
            data = await self.images.get(image, self._load_logo)
        except RenderRefused as exc:
            log.error("render refused", extra={"code_id": code_id, "reason": str(exc)})
            raise InvalidField("image", f"this combination of options does not scan reliably: {exc}") from exc
        if image_format == "svg":
            headers["Content-Security-Policy"] = (
                "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
            )
        return Response(data, media_type=MEDIA_TYPES[image_format], headers=headers)

    async def _load_logo(self, sha256: str) -> Logo:
        async with self.database() as conn:
            return await codes.load_logo(conn, sha256)

    async def put_logo(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        content_type, body = await read_body(
            request, accepted=tuple(LOGO_TYPES), max_bytes=self.settings.logo_max_bytes
        )
        stored = await anyio.to_thread.run_sync(
            normalise_logo, body, content_type, limiter=self.images.limiter
        )
        async with self.database(write=True) as conn:
            resource = await codes.set_logo(conn, code_id, stored, identity=identity_of(request.scope))
        self.metrics.code_changes.labels("update").inc()
        log.info("logo set", extra={"code_id": code_id, "sha256": stored.logo.sha256})
        return answer(resource)

    async def get_logo(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        async with self.database() as conn:
            _, sha256 = await codes.image_source(conn, code_id)
            if sha256 is None:
                raise NotFound(f"the code '{code_id}' has no logo")
            logo = await codes.load_logo(conn, sha256)
        return Response(logo.png, media_type="image/png", headers={"ETag": f'"{sha256[:32]}"'})

    async def delete_logo(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        async with self.database(write=True) as conn:
            await codes.set_logo(conn, code_id, None, identity=identity_of(request.scope))
        log.info("logo removed", extra={"code_id": code_id})
        return Response(status_code=204)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def health(self, request: Request) -> JSONResponse:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                await self.ping()
        except Exception as exc:  # any failure to answer is the finding
            unreachable = f"unreachable ({type(exc).__name__})"
            return answer(
                schemas.Health(status="unavailable", service="management", database=unreachable),
                status_code=503,
            )
        return answer(schemas.Health(status="ok", service="management", database="ok"))

    async def livez(self, request: Request) -> JSONResponse:
        return answer(schemas.Liveness(status="ok"))

    async def scrape(self, request: Request) -> Response:
        self.metrics.image_memory_bytes.set(self.images.memory.size)
        await anyio.to_thread.run_sync(self.metrics.observe_backups, self.settings.backup_dir)
        body, content_type = exposition(self.metrics.registry)
        return Response(body, media_type=content_type)


def _code_id(request: Request) -> str:
    code_id: str = request.path_params["code_id"]
    if not is_well_formed(code_id):
        raise NotFound("no QR code with that id")
    return code_id


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _json_bytes(model: schemas.Answer) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


def answer(
    model: schemas.Answer, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        model.model_dump(mode="json", by_alias=True), status_code=status_code, headers=headers
    )
