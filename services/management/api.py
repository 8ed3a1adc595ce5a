"""The management API's endpoints (``/api/v1``), health, and the resources they share."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from services.management import codes
from services.management.fields import parse_changes, parse_new_code
from services.management.images import (
    IMAGE_PARAMETERS,
    LOGO_TYPES,
    Format,
    ImageOptions,
    Logo,
    RenderRefused,
    normalise_logo,
    parse_options,
    render_png,
    render_svg,
)
from services.management.metrics import ManagementMetrics
from services.management.openapi import OPENAPI
from services.management.params import Params
from services.management.settings import ManagementSettings
from services.management.storage import ImageStore, LocalImageStore, MemoryCache
from shared.database import sqlalchemy_url
from shared.errors import (
    BadRequest,
    InvalidField,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from shared.ids import is_well_formed
from shared.logging import request_id
from shared.metrics import exposition
from shared.singleflight import SingleFlight

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
DB_TIMEOUT = 10.0
# What a database that is down, restarting or overloaded raises through SQLAlchemy and asyncpg
# (a refused or missing socket comes through as a bare OSError).
DATABASE_FAULTS = (
    OSError,
    TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


class Images:
    """Images of codes: from memory, else from the store, else rendered off the event loop.

    At most ``concurrency`` renders run at once (other requests go on meanwhile), and one key is
    never rendered twice at the same time.
    """

    def __init__(
        self, store: ImageStore, *, concurrency: int, memory_bytes: int, metrics: ManagementMetrics
    ) -> None:
        self.store = store
        self.memory = MemoryCache(memory_bytes)
        self._metrics = metrics
        self.limiter = anyio.CapacityLimiter(concurrency)  # renders, and logos being normalised
        self._flights: SingleFlight[str, bytes] = SingleFlight()

    async def get(self, request: ImageRequest, load_logo: Callable[[str], Awaitable[Logo]]) -> bytes:
        data = self.memory.get(request.key)
        if data is not None:
            self._metrics.image_memory_hits.inc()
            return data
        return await self._flights.run(request.key, functools.partial(self._produce, request, load_logo))

    async def _produce(self, request: ImageRequest, load_logo: Callable[[str], Awaitable[Logo]]) -> bytes:
        data = await anyio.to_thread.run_sync(self._stored, request)
        if data is not None:
            self._metrics.image_store_hits.inc()
        else:
            logo = await load_logo(request.logo_sha256) if request.logo_sha256 else None
            data = await anyio.to_thread.run_sync(
                functools.partial(self._render, request, logo), limiter=self.limiter
            )
            await anyio.to_thread.run_sync(self._keep, request.key, data)
        self.memory.put(request.key, data)
        return data

    def _stored(self, request: ImageRequest) -> bytes | None:
        """The stored image, or None: the store is only a cache, so a file that cannot be read or is
        not an image of the right kind (a disk fault, a crash mid-write) is a miss, never an error."""
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


@dataclass(frozen=True)
class ImageRequest:
    payload: str
    image_format: Format
    options: ImageOptions
    logo_sha256: str | None

    @property
    def key(self) -> str:
        return self.options.cache_key(self.payload, self.image_format, self.logo_sha256)


RENDERERS: dict[str, Callable[[str, ImageOptions, Logo | None], bytes]] = {
    "png": render_png,
    "svg": render_svg,
}
MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
# How a stored image of each format starts (anything else in the store is damaged).
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml "}


class ManagementApi:
    def __init__(self, settings: ManagementSettings, metrics: ManagementMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.images = Images(
            LocalImageStore(settings.qr_data_dir),
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

    async def create_code(self, request: Request) -> JSONResponse:
        body = await read_json_object(request, max_bytes=self.settings.max_body_bytes)
        new = parse_new_code(body, own_hosts=self.settings.own_hosts)
        async with self.database(write=True) as conn:
            resource = await codes.create_code(
                conn, new, public_base_url=self.settings.public_base_url, actor=_actor(request)
            )
        self.metrics.code_changes.labels("create").inc()
        log.info("code created", extra={"code_id": resource["id"]})
        return JSONResponse(resource, status_code=201, headers={"Location": f"/api/v1/qr/{resource['id']}"})

    async def list_codes(self, request: Request) -> JSONResponse:
        params = Params(request.query_params, allowed=("limit", "cursor", "q", "tag", "enabled"))
        filters = codes.Filters(
            q=params.text("q", maximum=200),
            tag=params.text("tag", maximum=40),
            enabled=params.boolean("enabled"),
        )
        limit = params.integer("limit", default=50, minimum=1, maximum=500)
        async with self.database() as conn:
            items, next_cursor = await codes.list_codes(
                conn, filters, limit=limit, cursor=params.get("cursor")
            )
        return JSONResponse({"items": items, "next_cursor": next_cursor})

    async def get_code(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        async with self.database() as conn:
            return JSONResponse(await codes.get_code(conn, code_id))

    async def update_code(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        body = await read_json_object(request, max_bytes=self.settings.max_body_bytes, patch=True)
        changes = parse_changes(body, own_hosts=self.settings.own_hosts)
        async with self.database(write=True) as conn:
            resource = await codes.update_code(conn, code_id, changes, actor=_actor(request))
        self.metrics.code_changes.labels("update").inc()
        log.info("code updated", extra={"code_id": code_id, "fields": sorted(changes)})
        return JSONResponse(resource)

    async def delete_code(self, request: Request) -> Response:
        code_id = _code_id(request)
        async with self.database(write=True) as conn:
            await codes.delete_code(conn, code_id, actor=_actor(request))
        self.metrics.code_changes.labels("delete").inc()
        log.info("code deleted", extra={"code_id": code_id})
        return Response(status_code=204)

    async def history(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        params = Params(request.query_params, allowed=("limit", "cursor"))
        limit = params.integer("limit", default=100, minimum=1, maximum=500)
        async with self.database() as conn:
            items, next_cursor = await codes.code_history(
                conn, code_id, limit=limit, cursor=params.get("cursor")
            )
        return JSONResponse({"items": items, "next_cursor": next_cursor})

    async def scans(self, request: Request) -> JSONResponse:
        code_id = _code_id(request)
        Params(request.query_params, allowed=())
        async with self.database() as conn:
            return JSONResponse(await codes.scan_totals(conn, code_id))

    async def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(OPENAPI)

    async def get_png(self, request: Request) -> Response:
        return await self._image(request, "png")

    async def get_svg(self, request: Request) -> Response:
        return await self._image(request, "svg")

    async def _image(self, request: Request, image_format: Format) -> Response:
        code_id = _code_id(request)
        options = parse_options(Params(request.query_params, allowed=IMAGE_PARAMETERS), image_format)
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
        Params(request.query_params, allowed=())
        content_type, body = await read_body(
            request, accepted=tuple(LOGO_TYPES), max_bytes=self.settings.logo_max_bytes
        )
        stored = await anyio.to_thread.run_sync(
            normalise_logo, body, content_type, limiter=self.images.limiter
        )
        async with self.database(write=True) as conn:
            resource = await codes.set_logo(conn, code_id, stored, actor=_actor(request))
        self.metrics.code_changes.labels("update").inc()
        log.info("logo set", extra={"code_id": code_id, "sha256": stored.logo.sha256})
        return JSONResponse(resource)

    async def get_logo(self, request: Request) -> Response:
        code_id = _code_id(request)
        Params(request.query_params, allowed=())
        async with self.database() as conn:
            _, sha256 = await codes.image_source(conn, code_id)
            if sha256 is None:
                raise NotFound(f"the code '{code_id}' has no logo")
            logo = await codes.load_logo(conn, sha256)
        return Response(logo.png, media_type="image/png", headers={"ETag": f'"{sha256[:32]}"'})

    async def delete_logo(self, request: Request) -> Response:
        code_id = _code_id(request)
        Params(request.query_params, allowed=())
        async with self.database(write=True) as conn:
            await codes.set_logo(conn, code_id, None, actor=_actor(request))
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
            return JSONResponse(
                {
                    "status": "unavailable",
                    "service": "management",
                    "database": f"unreachable ({type(exc).__name__})",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "service": "management", "database": "ok"})

    async def livez(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

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


def _actor(request: Request) -> codes.Actor:
    state = request.scope.get("state", {})
    return codes.Actor(
        client_address=state.get("client_address"),
        request_id=request_id.get(),
        token_name=state.get("token_name"),
    )


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: Request, *, accepted: tuple[str, ...], max_bytes: int) -> tuple[str, bytes]:
    """The request's content type (one of ``accepted``) and body, refused early when too large."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in accepted:
        raise UnsupportedMediaType(f"send the body as {' or '.join(accepted)}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body must be at most {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"the body must be at most {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to read the answer; the access line still shows what happened.
        raise BadRequest("the client went away before sending the whole body") from None
    return content_type, b"".join(chunks)


async def read_json_object(request: Request, *, max_bytes: int, patch: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, refused early when too large or not JSON."""
    accepted = ("application/json", "application/merge-patch+json") if patch else ("application/json",)
    _, raw = await read_body(request, accepted=accepted, max_bytes=max_bytes)
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    try:  # JSON may escape lone surrogates (\ud800), which no text column or answer can hold
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the body contains an unpaired UTF-16 surrogate escape") from None
    return body
