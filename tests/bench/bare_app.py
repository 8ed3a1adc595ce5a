"""The baselines the redirect service is measured against (``make bench``).

``app``: a bare Starlette app whose one route answers a constant 302, the ordinary way (a
``Response``). ``raw``: the same answer from a plain ASGI function, no framework at all: the
ceiling, for the record.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

_LOCATION = "https://example.org/menu"


async def _redirect(request: Request) -> Response:
    return Response(status_code=302, headers={"location": _LOCATION, "cache-control": "no-store"})


async def _alive(request: Request) -> Response:
    return Response(b'{"status": "ok"}', media_type="application/json")


# /livez: the edge's health check of its backends, so that the project's Traefik routes to it too.
app = Starlette(routes=[Route("/r/{code_id}", _redirect), Route("/livez", _alive)])

_HEADERS = [(b"location", _LOCATION.encode()), (b"cache-control", b"no-store"), (b"content-length", b"0")]


async def raw(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 302, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b""})
