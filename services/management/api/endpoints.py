"""The management API's endpoints (``/api/v1``), health and metrics.

Each endpoint reads its input through the models of :mod:`services.management.schemas` (the same
ones the OpenAPI document is generated from), calls one operation of
:mod:`services.management.service` with the caller's identity, and answers through a model too.
Nothing here opens a transaction, writes a history entry or counts a change: the operations do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.management import bulk, schemas
from services.management.api.answers import answer, error_bytes, json_bytes
from services.management.auth.identity import identity_of
from services.management.codes import Filters
from services.management.errors import DomainError
from services.management.images import MEDIA_TYPES
from services.management.logos import LOGO_TYPES
from services.management.openapi import document
from services.management.rendering import Format
from services.management.requests import read_body, read_json, read_query
from services.management.service import Service
from services.management.service.bulk import REFUSALS
from shared.errors import NotFound
from shared.ids import is_well_formed
from shared.metrics import exposition

HEALTH_TIMEOUT = 2.0
IMAGE_QUERIES: dict[str, type[schemas.ImageQuery]] = {"png": schemas.PngQuery, "svg": schemas.SvgQuery}


class ManagementApi:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.settings = service.settings

    async def create_code(self, request: Request) -> JSONResponse:
        read_query(request, schemas.NoQuery)
        new = await read_json(
            request, schemas.NewQRCode, max_bytes=self.settings.max_body_bytes, context=self.service.context
        )
        code = await self.service.codes.create(new, identity_of(request.scope))
        return answer(code, status_code=201, headers={"Location": f"/api/v1/qr/{code.id}"})

    async def bulk_create(self, request: Request) -> Response:
        partial = read_query(request, schemas.BulkQuery).partial
        key = bulk.idempotency_key(request.headers.get("idempotency-key"))
        content_type, body = await read_body(
            request, accepted=("application/json", "text/csv"), max_bytes=self.settings.bulk_max_body_bytes
        )
        identity = identity_of(request.scope)
        if key is not None:
            kept = await self.service.bulk.create_once(
                key, _bulk_answer, content_type, body, partial=partial, identity=identity
            )
            replayed = {"Idempotent-Replayed": "true"} if kept.replayed else None
            return Response(kept.content, kept.status, media_type="application/json", headers=replayed)
        try:
            result = await self.service.bulk.create(content_type, body, partial=partial, identity=identity)
        except REFUSALS as exc:
            status, content = error_bytes(exc)  # as an answer kept under a key says it
        else:
            status, content = await _bulk_answer(result)
        return Response(content, status_code=status, media_type="application/json")

    async def list_codes(self, request: Request) -> JSONResponse:
        query = read_query(request, schemas.ListQuery)
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids, order=query.order)
        return answer(await self.service.codes.page(filters, limit=query.limit, cursor=query.cursor))

    async def export_csv(self, request: Request) -> Response:
        query = read_query(request, schemas.ExportQuery)
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        return _file(self.service.exports.codes_csv(filters), "text/csv; charset=utf-8", "qr-codes.csv")

    async def export_zip(self, request: Request) -> Response:
        image_format: Format
        query: schemas.ZipPngQuery | schemas.ZipSvgQuery
        if request.query_params.get("format", "png") == "svg":
            image_format, query = "svg", read_query(request, schemas.ZipSvgQuery)
        else:  # png, or a format read_query refuses by name
            image_format, query = "png", read_query(request, schemas.ZipPngQuery)
        options = query.options(image_format)
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        pieces = await self.service.exports.images_zip(filters, image_format, options)
        return _file(pieces, "application/zip", f"{_named('qr-codes', query.tag)}.zip")

    async def export_pdf(self, request: Request) -> Response:
        query = read_query(request, schemas.PdfQuery)
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        pieces = await self.service.exports.label_sheets(filters, query)
        return _file(pieces, "application/pdf", f"{_named('qr-labels', query.tag)}.pdf")

    async def get_code(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        return answer(await self.service.codes.get(code_id))

    async def update_code(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        body = await read_json(
            request,
            schemas.QRCodeChanges,
            max_bytes=self.settings.max_body_bytes,
            context=self.service.context,
            patch=True,
        )
        return answer(await self.service.codes.update(code_id, body.changes(), identity_of(request.scope)))

    async def delete_code(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        await self.service.codes.delete(code_id, identity_of(request.scope))
        return Response(status_code=204)

    async def history(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        query = read_query(request, schemas.HistoryQuery)
        return answer(await self.service.codes.history(code_id, limit=query.limit, cursor=query.cursor))

    async def scans(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        query = read_query(request, schemas.ScanQuery)
        return answer(await self.service.analytics.report(code_id, query))

    async def all_scans(self, request: Request) -> JSONResponse:
        query = read_query(request, schemas.ScanQuery)
        return answer(await self.service.analytics.report(None, query))

    async def erase_scans(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        await self.service.analytics.erase(code_id, identity_of(request.scope))
        return Response(status_code=204)

    async def scans_csv(self, request: Request) -> Response:
        code_id = _code_id(request)
        query = read_query(request, schemas.RawScansQuery)
        rows = await self.service.exports.raw_scans(code_id, query)
        return _file(rows, "text/csv; charset=utf-8", f"scans-{code_id}.csv")

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
        image = await self.service.images.request(code_id, image_format, options)
        etag = f'"{image.key[:32]}"'
        # no-cache: a browser asks again every time (a cheap 304), so a new logo shows at once.
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _if_none_match(request) & {etag, "*"}:
            return Response(status_code=304, headers=headers)
        data = await self.service.images.image(image, code_id=code_id)
        if image_format == "svg":
            headers["Content-Security-Policy"] = (
                "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
            )
        return Response(data, media_type=MEDIA_TYPES[image_format], headers=headers)

    async def put_logo(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        content_type, body = await read_body(
            request, accepted=tuple(LOGO_TYPES), max_bytes=self.settings.logo_max_bytes
        )
        return answer(
            await self.service.images.set_logo(code_id, body, content_type, identity_of(request.scope))
        )

    async def get_logo(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        logo = await self.service.images.logo(code_id)
        return Response(logo.png, media_type="image/png", headers={"ETag": f'"{logo.sha256[:32]}"'})

    async def delete_logo(self, request: Request) -> Response:
        code_id = _code_id(request)
        read_query(request, schemas.NoQuery)
        await self.service.images.remove_logo(code_id, identity_of(request.scope))
        return Response(status_code=204)

    async def health(self, request: Request) -> JSONResponse:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                await self.service.database.ping()
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
        metrics = self.service.metrics
        metrics.image_memory_bytes.set(self.service.images.pipeline.memory.size)
        await anyio.to_thread.run_sync(metrics.observe_backups, self.settings.backup_dir)
        body, content_type = exposition(metrics.registry)
        return Response(body, media_type=content_type)


async def _bulk_answer(outcome: schemas.BulkResult | DomainError) -> tuple[int, bytes]:
    """A bulk request's answer as kept for a retry with its Idempotency-Key (and given now)."""
    if isinstance(outcome, DomainError):
        return error_bytes(outcome)
    return 201, await anyio.to_thread.run_sync(json_bytes, outcome)


def _file(pieces: AsyncIterator[bytes], media_type: str, filename: str) -> StreamingResponse:
    return StreamingResponse(
        pieces,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _named(stem: str, tag: str | None) -> str:
    """An export's file name: the stem, and the tag it holds (when one) in safe characters."""
    return stem + (f"-{re.sub(r'[^A-Za-z0-9_-]', '_', tag)}" if tag else "")


def _code_id(request: Request) -> str:
    code_id: str = request.path_params["code_id"]
    if not is_well_formed(code_id):
        raise NotFound("no QR code with that id")
    return code_id


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
