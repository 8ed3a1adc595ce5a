"""The management service's app factory: the door, the routes (the console's pages, the API's
operations, the edge's refusal pages), error rendering, lifespan."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Route

from services.management.api import openapi
from services.management.api.answers import EXCEPTION_HANDLERS, error_response
from services.management.api.endpoints import ManagementApi
from services.management.api.routes import routes
from services.management.auth.door import Door, DoorRules
from services.management.auth.network import NetworkRule
from services.management.auth.oidc import Provider
from services.management.auth.sessions import Sessions
from services.management.console.routes import routes as console_routes
from services.management.metrics import ManagementMetrics
from services.management.service import Service
from services.management.settings import ManagementSettings
from shared.clients import NetworkSet
from shared.context import RequestContext
from shared.edge_pages import edge_error
from shared.metrics import DatabaseWatch


def create_app(settings: ManagementSettings, *, registry: CollectorRegistry | None = None) -> RequestContext:
    """The app, wrapped in the request context and the door; :class:`ConfigError` when the tokens
    file cannot be used."""
    metrics = ManagementMetrics(registry or CollectorRegistry())
    service = Service(settings, metrics)
    watch = DatabaseWatch(metrics.registry, service.database.ping)
    # The identity provider (OIDC_ISSUER): people's sign-in, and its JWT access tokens on the API.
    oidc = Provider(settings.oidc) if settings.oidc is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.open()
        watch.start()
        try:
            yield
        finally:
            await watch.stop()
            await service.close()
            if oidc is not None:
                await oidc.close()

    tokens = service.token_store if settings.admin_auth == "identity" else None
    sessions = Sessions.in_folder(
        settings.qr_data_dir,
        tokens,
        database=service.database.connect,
        trusted=NetworkSet(settings.trusted_proxies),
        people=oidc is not None,
    )
    api = ManagementApi(service, document=functools.partial(openapi.document, settings.export_max_codes))
    app = Starlette(
        routes=[
            *console_routes(service, sessions, oidc),
            *routes(api, max_body_bytes=settings.max_body_bytes, context=service.context),
            # The edge's own refusals, as the redirect service serves them too (shared/edge_pages.py).
            Route("/edge-error/{status:int}", edge_error, methods=["GET"]),
        ],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    # No trailing-slash redirects: they answer a bare 307 to a Location built from the Host header.
    app.router.redirect_slashes = False
    app.state.service = service
    network = NetworkRule(
        allowlist=NetworkSet(settings.admin_allowlist),
        trusted_proxies=NetworkSet(settings.trusted_proxies),
        hosts=settings.admin_hosts,
    )
    door = Door(
        app, DoorRules(network, tokens, sessions, oidc), refuse=error_response
    )  # refusals in the API's shape
    return RequestContext(door, metrics.http)
