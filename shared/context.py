"""The outermost wrapper of every request off the redirect hot path: request id, metrics, access line.

Both services use it (the redirect service for everything but ``/r/``, which does the same inline at
a fraction of the cost), so that every answer carries ``X-Request-ID``, even a crash answer, and is
counted under its route template, and carries a content security policy that allows nothing.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logging import accept_request_id, request_id
from shared.metrics import UNMATCHED_ROUTE, HttpMetrics, method_label

access_log = logging.getLogger("qr.access")
# JSON, text and images only: nothing may run, load or frame. The edge adds the other headers.
CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
log = logging.getLogger(__name__)


class RequestContext:
    def __init__(self, app: ASGIApp, http: HttpMetrics, *, log_requests: bool = True) -> None:
        self.app = app
        self.http = http
        self.log_requests = log_requests

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
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                if not any(name == b"content-security-policy" for name, _ in headers):
                    headers.append(CSP)
                message["headers"] = headers
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
            method = method_label(scope["method"])
            self.http.in_progress.labels("other").dec()
            self.http.requests.labels(method, route, str(status)).inc()
            self.http.duration.labels(method, route).observe(elapsed)
            if self.log_requests:
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )
            request_id.reset(token)
