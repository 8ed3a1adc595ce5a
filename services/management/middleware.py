"""Request context for every management request: the request id, and one access line when done."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logging import accept_request_id, request_id
from shared.metrics import UNMATCHED_ROUTE, HttpMetrics

access_log = logging.getLogger("qr.access")
log = logging.getLogger(__name__)


class RequestContext:
    """Outermost ASGI wrapper, so that even a crash answer carries ``X-Request-ID`` and is logged."""

    def __init__(self, app: ASGIApp, http: HttpMetrics) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = accept_request_id(header.decode("latin-1") if header is not None else None)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.http.in_progress.labels("other").inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette has already answered 500 (JSON, without details); the traceback goes to
            # the log under this request id instead of to the client.
            log.exception("unhandled error")
            if not response_started:
                raise
        finally:
            route = getattr(scope.get("route"), "path", UNMATCHED_ROUTE)
            elapsed = time.perf_counter() - started
            self.http.in_progress.labels("other").dec()
            self.http.requests.labels(scope["method"], route, str(status)).inc()
            self.http.duration.labels(scope["method"], route).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            request_id.reset(token)
