"""The management service's app factory: routes, error rendering, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from services.management.api.answers import EXCEPTION_HANDLERS
from services.management.api.endpoints import ManagementApi
from services.management.auth.door import Door, DoorRules
from services.management.auth.network import NetworkRule
from services.management.auth.sessions import Sessions
from services.management.auth.tokens import TokenFile
from services.management.console.views import Console
from services.management.metrics import ManagementMetrics
from services.management.service import Service
from services.management.settings import ManagementSettings
from shared.clients import NetworkSet
from shared.context import RequestContext
from shared.edge_pages import edge_error
from shared.errors import MethodNotAllowed
from shared.metrics import DatabaseWatch

log = logging.getLogger(__name__)


def create_app(settings: ManagementSettings, *, registry: CollectorRegistry | None = None) -> RequestContext:
    """The app, wrapped in the request context and the door; :class:`ConfigError` when the tokens
    file cannot be used."""
    metrics = ManagementMetrics(registry or CollectorRegistry())
    service = Service(settings, metrics)
    api = ManagementApi(service)
    watch = DatabaseWatch(metrics.registry, service.database.ping)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.open()
        watch.start()
        try:
            yield
        finally:
            await watch.stop()
            await service.close()

    tokens = TokenFile(settings.admin_tokens_file) if settings.admin_tokens_file else None
    sessions = Sessions.in_folder(
        settings.qr_data_dir,
        tokens,
        database=service.database.connect,
        trusted=NetworkSet(settings.trusted_proxies),
    )
    console = Console(service, sessions)
    routes = [
        *console.routes(),
        Route("/api/v1/openapi.json", by_method(GET=api.openapi)),
        Route("/api/v1/qr", by_method(GET=api.list_codes, POST=api.create_code)),
        Route("/api/v1/qr/bulk", by_method(POST=api.bulk_create)),
        Route("/api/v1/qr/export.csv", by_method(GET=api.export_csv)),
        Route("/api/v1/qr/export.zip", by_method(GET=api.export_zip)),
        Route("/api/v1/qr/export.pdf", by_method(GET=api.export_pdf)),
        Route(
            "/api/v1/qr/{code_id}", by_method(GET=api.get_code, PATCH=api.update_code, DELETE=api.delete_code)
        ),
        Route("/api/v1/qr/{code_id}/history", by_method(GET=api.history)),
        Route("/api/v1/qr/{code_id}/scans", by_method(GET=api.scans, DELETE=api.erase_scans)),
        Route("/api/v1/qr/{code_id}/scans.csv", by_method(GET=api.scans_csv)),
        Route("/api/v1/scans", by_method(GET=api.all_scans)),
        Route("/api/v1/qr/{code_id}/image.png", by_method(GET=api.get_png)),
        Route("/api/v1/qr/{code_id}/image.svg", by_method(GET=api.get_svg)),
        Route(
            "/api/v1/qr/{code_id}/logo", by_method(GET=api.get_logo, PUT=api.put_logo, DELETE=api.delete_logo)
        ),
        Route("/health", by_method(GET=api.health)),
        Route("/livez", by_method(GET=api.livez)),
        Route("/metrics", by_method(GET=api.scrape)),
        # The edge's own refusals, as the redirect service serves them too (shared/edge_pages.py).
        Route("/edge-error/{status:int}", edge_error, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    # No trailing-slash redirects: they answer a bare 307 to a Location built from the Host header.
    app.router.redirect_slashes = False
    app.state.service = service
    network = NetworkRule(
        allowlist=NetworkSet(settings.admin_allowlist),
        trusted_proxies=NetworkSet(settings.trusted_proxies),
        hosts=settings.admin_hosts,
    )
    return RequestContext(Door(app, DoorRules(network, tokens, sessions)), metrics.http)


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
