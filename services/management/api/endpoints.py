"""The management API's endpoints (``/api/v1``), health and metrics.

The router (:mod:`.routes`) reads each request as its operation's entry in :mod:`.operations` says
(the code its path names, its query, its JSON body, through the models of
:mod:`services.management.schemas`, the same ones the OpenAPI document is generated from) and hands
the endpoint a :class:`Call`. An endpoint calls one operation of :mod:`services.management.service`
with the caller's identity and answers through a model too. Nothing here opens a transaction,
writes a history entry or counts a change: the operations do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.management import bulk, schemas
from services.management.api.answers import answer, error_bytes, json_bytes
from services.management.auth.identity import Identity
from services.management.codes import Filters
from services.management.errors import DomainError
from services.management.images import MEDIA_TYPES
from services.management.inputs import read_body
from services.management.rendering import Format
from services.management.schemas.rules_try import RulesTrial
from services.management.service import Service
from services.management.service.bulk import REFUSALS
from services.management.service.tokens import require_every_code
from shared.metrics import exposition

HEALTH_TIMEOUT = 2.0
Q = TypeVar("Q", covariant=True)
B = TypeVar("B", covariant=True)


@dataclass(frozen=True)
class Call(Generic[Q, B]):
    """A request to one operation, read as its entry says: who is calling, the code its path names
    (well formed), the query and the JSON body as the operation's models, and the media types its
    body may have."""

    request: Request
    identity: Identity
    query: Q
    body: B
    path_code_id: str | None = None
    body_media: tuple[str, ...] = ()

    @property
    def code_id(self) -> str:
        assert self.path_code_id is not None, "the operation's path names no code"
        return self.path_code_id

    async def raw_body(self, *, max_bytes: int) -> tuple[str, bytes]:
        """A body that is no JSON object (a CSV, an image): its media type and its bytes."""
        return await read_body(self.request, accepted=self.body_media, max_bytes=max_bytes)


class ManagementApi:
    def __init__(self, service: Service, document: Callable[[], dict[str, Any]]) -> None:
        self.service = service
        self.settings = service.settings
        self.document = document

    async def create_code(self, call: Call[schemas.NoQuery, schemas.NewQRCode]) -> JSONResponse:
        code = await self.service.codes.create(call.body, call.identity)
        return answer(code, status_code=201, headers={"Location": f"/api/v1/qr/{code.id}"})

    async def bulk_create(self, call: Call[schemas.BulkQuery, None]) -> Response:
        key = bulk.idempotency_key(call.request.headers.get("idempotency-key"))
        content_type, body = await call.raw_body(max_bytes=self.settings.bulk_max_body_bytes)
        partial, identity = call.query.partial, call.identity
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

    async def list_codes(self, call: Call[schemas.ListQuery, None]) -> JSONResponse:
        query = call.query
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids, order=query.order)
        return answer(
            await self.service.codes.page(filters, call.identity, limit=query.limit, cursor=query.cursor)
        )

    async def export_csv(self, call: Call[schemas.ExportQuery, None]) -> Response:
        query = call.query
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        pieces = self.service.exports.codes_csv(filters, call.identity)
        return _file(pieces, "text/csv; charset=utf-8", "qr-codes.csv")

    async def export_zip(self, call: Call[schemas.ZipPngQuery | schemas.ZipSvgQuery, None]) -> Response:
        query = call.query
        image_format: Format = query.format
        options = query.options(image_format)
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        pieces = await self.service.exports.images_zip(filters, call.identity, image_format, options)
        return _file(pieces, "application/zip", f"{_named('qr-codes', query.tag)}.zip")

    async def export_pdf(self, call: Call[schemas.PdfQuery, None]) -> Response:
        query = call.query
        filters = Filters(q=query.q, tag=query.tag, enabled=query.enabled, ids=query.ids)
        pieces = await self.service.exports.label_sheets(filters, call.identity, query)
        return _file(pieces, "application/pdf", f"{_named('qr-labels', query.tag)}.pdf")

    async def get_code(self, call: Call[schemas.NoQuery, None]) -> JSONResponse:
        return answer(await self.service.codes.get(call.code_id, call.identity))

    async def update_code(self, call: Call[schemas.NoQuery, schemas.QRCodeChanges]) -> JSONResponse:
        return answer(await self.service.codes.update(call.code_id, call.body.changes(), call.identity))

    async def try_rules(self, call: Call[schemas.NoQuery, RulesTrial]) -> JSONResponse:
        return answer(await self.service.codes.try_rules(call.code_id, call.body, call.identity))

    async def delete_code(self, call: Call[schemas.NoQuery, None]) -> Response:
        await self.service.codes.delete(call.code_id, call.identity)
        return Response(status_code=204)

    async def history(self, call: Call[schemas.HistoryQuery, None]) -> JSONResponse:
        query = call.query
        history = await self.service.codes.history(
            call.code_id, call.identity, limit=query.limit, cursor=query.cursor
        )
        return answer(history)

    async def scans(self, call: Call[schemas.ScanQuery, None]) -> JSONResponse:
        return answer(await self.service.analytics.report(call.code_id, call.query, call.identity))

    async def all_scans(self, call: Call[schemas.ScanQuery, None]) -> JSONResponse:
        return answer(await self.service.analytics.report(None, call.query, call.identity))

    async def erase_scans(self, call: Call[schemas.NoQuery, None]) -> Response:
        await self.service.analytics.erase(call.code_id, call.identity)
        return Response(status_code=204)

    async def scans_csv(self, call: Call[schemas.RawScansQuery, None]) -> Response:
        rows = await self.service.exports.raw_scans(call.code_id, call.query, call.identity)
        return _file(rows, "text/csv; charset=utf-8", f"scans-{call.code_id}.csv")

    async def audit(self, call: Call[schemas.AuditQuery, None]) -> JSONResponse:
        query = call.query
        require_every_code(call.identity)  # the log names every tag's codes
        return answer(await self.service.audit.page(query, limit=query.limit, cursor=query.cursor))

    async def audit_csv(self, call: Call[schemas.AuditFilters, None]) -> Response:
        require_every_code(call.identity)
        return _file(self.service.audit.csv(call.query), "text/csv; charset=utf-8", "audit.csv")

    async def openapi(self, call: Call[schemas.NoQuery, None]) -> JSONResponse:
        return JSONResponse(self.document())

    async def get_png(self, call: Call[schemas.PngQuery, None]) -> Response:
        return await self._image(call, "png")

    async def get_svg(self, call: Call[schemas.SvgQuery, None]) -> Response:
        return await self._image(call, "svg")

    async def _image(self, call: Call[schemas.ImageQuery, None], image_format: Format) -> Response:
        code_id = call.code_id
        options = call.query.options(image_format)
        image = await self.service.images.request(code_id, image_format, options, call.identity)
        etag = f'"{image.key[:32]}"'
        # no-cache: a browser asks again every time (a cheap 304), so a new logo shows at once.
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if _if_none_match(call.request) & {etag, "*"}:
            return Response(status_code=304, headers=headers)
        data = await self.service.images.image(image, code_id=code_id)
        if image_format == "svg":
            headers["Content-Security-Policy"] = (
                "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
            )
        return Response(data, media_type=MEDIA_TYPES[image_format], headers=headers)

    async def put_logo(self, call: Call[schemas.NoQuery, None]) -> JSONResponse:
        content_type, body = await call.raw_body(max_bytes=self.settings.logo_max_bytes)
        return answer(await self.service.images.set_logo(call.code_id, body, content_type, call.identity))

    async def get_logo(self, call: Call[schemas.NoQuery, None]) -> Response:
        logo = await self.service.images.logo(call.code_id, call.identity)
        return Response(logo.png, media_type="image/png", headers={"ETag": f'"{logo.sha256[:32]}"'})

    async def delete_logo(self, call: Call[schemas.NoQuery, None]) -> Response:
        await self.service.images.remove_logo(call.code_id, call.identity)
        return Response(status_code=204)

    async def list_tokens(self, call: Call[schemas.NoQuery, None]) -> JSONResponse:
        return answer(await self.service.tokens.listing(call.identity))

    async def create_token(self, call: Call[schemas.NoQuery, schemas.NewToken]) -> JSONResponse:
        made = await self.service.tokens.create(call.body, call.identity)
        # The answer holds the token itself: no cache may keep it.
        return answer(made, status_code=201, headers={"Cache-Control": "no-store"})

    async def revoke_token(self, call: Call[schemas.NoQuery, None]) -> Response:
        await self.service.tokens.revoke(call.request.path_params["name"], call.identity)
        return Response(status_code=204)

    async def health(self, call: Call[None, None]) -> JSONResponse:
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

    async def livez(self, call: Call[None, None]) -> JSONResponse:
        return answer(schemas.Liveness(status="ok"))

    async def scrape(self, call: Call[None, None]) -> Response:
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


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
