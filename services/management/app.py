"""The management service's app factory: routes, error rendering, lifespan."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.management.api import ManagementApi
from services.management.middleware import RequestContext
from services.management.settings import ManagementSettings
from shared import logging as qrlog
from shared.errors import ServiceError, Unavailable, for_status
from shared.logging import request_id

log = logging.getLogger(__name__)


def error_response(error: ServiceError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if isinstance(error, Unavailable) else None
    return JSONResponse(error.to_dict(), status_code=error.status, headers=headers)


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    response = error_response(for_status(exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)  # Allow on a 405, for one
    return response


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id.get() or "unknown"
    return JSONResponse(
        {"error": {"code": "internal_error", "message": f"internal error; the server log has request {rid}"}},
        status_code=500,
    )


def create_app(settings: ManagementSettings) -> RequestContext:
    api = ManagementApi(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.open()
        try:
            yield
        finally:
            await api.close()

    routes = [
        Route("/api/v1/qr", api.create_code, methods=["POST"]),
        Route("/api/v1/qr/{code_id}", api.get_code, methods=["GET"]),
        Route("/api/v1/qr/{code_id}/image.png", api.get_png, methods=["GET"]),
        Route("/health", api.health, methods=["GET"]),
        Route("/livez", api.livez, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ServiceError: _on_service_error,
            HTTPException: _on_http_exception,
            Exception: _on_unexpected,
        },
    )
    app.state.api = api
    return RequestContext(app)


def app_from_env() -> RequestContext:
    settings = ManagementSettings.from_env(os.environ)
    qrlog.configure(settings.log_level)
    return create_app(settings)
