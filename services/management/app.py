"""The management service's app factory: routes, error rendering, lifespan."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from services.management.access import AccessControl, AccessRules, TokenFile
from services.management.api import ManagementApi
from services.management.middleware import RequestContext
from services.management.settings import ManagementSettings
from shared import logging as qrlog
from shared.errors import MethodNotAllowed, ServiceError, for_status
from shared.logging import request_id

log = logging.getLogger(__name__)


def error_response(error: ServiceError) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=error.status, headers=error.headers)


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
    """The app, wrapped in the request context and the access rules; :class:`ConfigError` when the
    tokens file cannot be used."""
    api = ManagementApi(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.open()
        try:
            yield
        finally:
            await api.close()

    routes = [
        Route("/api/v1/openapi.json", by_method(GET=api.openapi)),
        Route("/api/v1/qr", by_method(GET=api.list_codes, POST=api.create_code)),
        Route(
            "/api/v1/qr/{code_id}", by_method(GET=api.get_code, PATCH=api.update_code, DELETE=api.delete_code)
        ),
        Route("/api/v1/qr/{code_id}/history", by_method(GET=api.history)),
        Route("/api/v1/qr/{code_id}/image.png", by_method(GET=api.get_png)),
        Route("/health", by_method(GET=api.health)),
        Route("/livez", by_method(GET=api.livez)),
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
    tokens = TokenFile(settings.admin_tokens_file) if settings.admin_tokens_file else None
    rules = AccessRules(
        allowlist=settings.admin_allowlist, trusted_proxies=settings.trusted_proxies, tokens=tokens
    )
    return RequestContext(AccessControl(app, rules))


Endpoint = Callable[[Request], Awaitable[Response]]


class by_method:
    """One endpoint per path, dispatching on the method, so that a 405 names every method allowed.

    An ASGI callable rather than a function: Starlette then passes every method through to it.
    """

    def __init__(self, **handlers: Endpoint) -> None:
        self.handlers = handlers
        self.allowed = tuple(sorted({*handlers, "HEAD"} if "GET" in handlers else set(handlers)))
        self._app = request_response(self._dispatch)

    async def _dispatch(self, request: Request) -> Response:
        handler = self.handlers.get("GET" if request.method == "HEAD" else request.method)
        if handler is None:
            raise MethodNotAllowed(f"{request.method} is not allowed here", allow=self.allowed)
        return await handler(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def app_from_env() -> RequestContext:
    settings = ManagementSettings.from_env(os.environ)
    qrlog.configure(settings.log_level)
    return create_app(settings)
