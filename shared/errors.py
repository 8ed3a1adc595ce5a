"""The errors a client can cause, and their one JSON shape.

::

    ServiceError                 status and machine-readable code travel with the class
    ├── BadRequest           400 the request cannot be read (malformed JSON, bad query string)
    ├── Unauthorized         401 a bearer token is required and missing or wrong
    ├── Forbidden            403 the client address is not allowed
    ├── NotFound             404 no such code (or route)
    ├── MethodNotAllowed     405
    ├── Conflict             409 the slug is taken or was ever used
    ├── MisdirectedRequest   421 a host name the API does not answer to (ADMIN_HOSTS)
    ├── PayloadTooLarge      413
    ├── UnsupportedMediaType 415
    ├── InvalidField         422 a field has a bad value; ``details`` names it
    ├── TooManyRequests      429 a rate limit (the edge's); ``retry_after`` seconds
    ├── Unavailable          503 the database cannot be reached; ``retry_after`` seconds
    ├── BadGateway           502 the edge could not reach the service behind it
    └── GatewayTimeout       504 the service behind the edge did not answer in time

Each service translates driver exceptions into these at its edge and renders them in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer must carry besides the body."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="qr-management"'}


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class MethodNotAllowed(ServiceError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)} if self.allow else {}


class Conflict(ServiceError):
    status, code = 409, "conflict"


class MisdirectedRequest(ServiceError):
    status, code = 421, "misdirected_request"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidField(ServiceError):
    """A bad value for one field; ``details`` is ``{"field": name}``."""

    status, code = 422, "invalid_field"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", details={"field": field})
        self.field = field


class Unavailable(ServiceError):
    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(Unavailable):
    status, code = 429, "too_many_requests"


class BadGateway(ServiceError):
    status, code = 502, "bad_gateway"


class GatewayTimeout(ServiceError):
    status, code = 504, "gateway_timeout"


def edge_refusal(status: int) -> ServiceError | None:
    """What the edge answers when it refuses a request itself (Traefik's errors middleware fetches
    it), or ``None`` for a status the edge does not answer with. The rate limits count per second,
    so a client past one may try again after a second."""
    refusals: dict[int, ServiceError] = {
        403: Forbidden("this client address may not use the admin API (ADMIN_ALLOWLIST)"),
        404: NotFound("nothing is served here: not under this host name, or not at this path"),
        413: PayloadTooLarge("the body is larger than this path takes"),
        429: TooManyRequests("too many requests from this address; retry after a second", retry_after=1),
        502: BadGateway("the service behind the edge cannot be reached; try again shortly"),
        503: Unavailable("short links cannot be answered at the moment; try again shortly"),
        504: GatewayTimeout("the service behind the edge did not answer in time; try again shortly"),
    }
    return refusals.get(status)


_BY_STATUS: dict[int, type[ServiceError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        MisdirectedRequest,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable,
    )
}


def for_status(status: int, message: str) -> ServiceError:
    """The error for a bare HTTP status (a framework-level 404 or 405, say)."""
    return _BY_STATUS.get(status, ServiceError)(message)
