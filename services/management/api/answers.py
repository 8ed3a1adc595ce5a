"""What the management API answers: a model as JSON, and every error in its one JSON shape,
domain errors mapped to their HTTP status here and nowhere else."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from services.management.errors import (
    BulkRefused,
    CodeNotFound,
    DomainError,
    InvalidValue,
    LogoNotFound,
    NotPermitted,
    SlugTaken,
    TokenNameTaken,
    TokenNotFound,
    TryAgain,
    Unreadable,
)
from services.management.schemas import Answer
from shared.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidField,
    NotFound,
    ServiceError,
    Unavailable,
    for_status,
)
from shared.logging import request_id


def http_error(error: DomainError) -> ServiceError:
    """A domain error as the API answers it (a bulk refusal: see :func:`error_body`)."""
    if isinstance(error, CodeNotFound | LogoNotFound | TokenNotFound):
        return NotFound(error.message)
    if isinstance(error, NotPermitted):
        return Forbidden(error.message)
    if isinstance(error, SlugTaken | TokenNameTaken):
        return Conflict(error.message, details={"field": error.field})
    if isinstance(error, InvalidValue):
        return InvalidField(error.field, error.reason)
    if isinstance(error, Unreadable):
        return BadRequest(error.message)
    if isinstance(error, TryAgain):
        return Unavailable(error.message, retry_after=error.retry_after)
    raise TypeError(f"no answer for {type(error).__name__}")


def answer(model: Answer, *, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        model.model_dump(mode="json", by_alias=True), status_code=status_code, headers=headers
    )


def json_bytes(model: Answer) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


def error_body(error: DomainError | ServiceError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An error's status, body and headers. A bulk refusal is a 422 ``invalid_rows`` with the rows'
    errors beside the error (the document's ``RowsRefused``)."""
    if isinstance(error, BulkRefused):
        body = {
            "error": {"code": "invalid_rows", "message": error.message},
            "errors": [e.to_dict() for e in error.errors],
            "errors_omitted": error.omitted,
        }
        return 422, body, {}
    refusal = http_error(error) if isinstance(error, DomainError) else error
    return refusal.status, refusal.to_dict(), refusal.headers


def error_bytes(error: DomainError | ServiceError) -> tuple[int, bytes]:
    """An error's status and body as bytes (an answer kept, to be given again the same)."""
    status, body, _ = error_body(error)
    return status, json.dumps(body).encode()


def error_response(error: DomainError | ServiceError) -> JSONResponse:
    status, body, headers = error_body(error)
    return JSONResponse(body, status_code=status, headers=headers)


async def _on_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError | DomainError)
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
    ServiceError: _on_error,
    DomainError: _on_error,
    HTTPException: _on_http_exception,
    Exception: _on_unexpected,
}
