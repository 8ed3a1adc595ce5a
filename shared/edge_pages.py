"""The pages of the edge's own refusals: Traefik's errors middleware fetches ``/edge-error/{status}``
when the allowlist or a rate limit refuses a request, or a backend fails (502, 504); its catch-all
router sends whatever no other router takes to ``/edge-error/404``, and ``/r/`` to
``/edge-error/503`` while no redirect process is up.

Both services serve them, without the database: the edge asks the management service, and the
redirect service while the management service is down (its ``edge-pages`` service), so the 502 for
a stopped management service still has its page, and with every redirect container stopped the
allowlist's 403 and the 503 of ``/r/`` still have theirs. An API client gets the API's JSON error
shape; a browser asking for a page outside ``/api/`` gets a short HTML page.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.errors import NotFound, edge_refusal

_HTML = (
    "<!doctype html><html lang=en><meta charset=utf-8>"
    '<meta name=viewport content="width=device-width,initial-scale=1">'
    "<title>{title}</title><h1>{title}</h1><p>{text}</p></html>\n"
)


def _original_path(request: Request) -> str:
    """The path of the request that was refused: the catch-all router's X-Replaced-Path, else the
    errors middleware's ``url`` parameter."""
    replaced = request.headers.get("x-replaced-path")
    if replaced:
        return replaced
    try:
        return urlsplit(request.query_params.get("url", "")).path
    except ValueError:
        return ""


async def edge_error(request: Request) -> Response:
    status: int = request.path_params["status"]
    refusal = edge_refusal(status) or NotFound("no such page")
    headers = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", **refusal.headers}
    if "text/html" in request.headers.get("accept", "") and not _original_path(request).startswith("/api/"):
        title = {403: "Forbidden", 404: "Not found", 429: "Too many requests"}.get(
            refusal.status, "Unavailable"
        )
        page = _HTML.format(
            title=html.escape(title),
            text=html.escape(refusal.message[:1].upper() + refusal.message[1:] + "."),
        )
        headers["Content-Security-Policy"] = "default-src 'none'"
        return Response(page, status_code=refusal.status, media_type="text/html", headers=headers)
    return JSONResponse(refusal.to_dict(), status_code=refusal.status, headers=headers)
