"""Errors as the management API answers them: one JSON shape, rendered in one place."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.errors import ServiceError, for_status
from shared.logging import request_id


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


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: _on_service_error,
    HTTPException: _on_http_exception,
    Exception: _on_unexpected,
}
