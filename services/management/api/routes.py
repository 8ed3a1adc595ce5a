"""The API's routes, built from the table of operations (:mod:`.operations`): one route per path,
dispatching on the method, and, before each endpoint runs, the caller's role checked against the one
its operation needs (403 before anything is read), then the request read as its operation says (the
code its path names, its query, its JSON body). An operation that declares no role gets no route:
building the routes fails."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import Receive, Scope, Send

from services.management.api.endpoints import Call, ManagementApi
from services.management.api.operations import OPERATIONS, Operation
from services.management.auth.identity import identity_of
from services.management.auth.roles import Role
from services.management.inputs import read_json, read_query
from shared.errors import Forbidden, MethodNotAllowed, NotFound
from shared.ids import is_well_formed

Endpoint = Callable[[Request], Awaitable[Response]]


class PathOperations:
    """The operations of one path, dispatching on the method, so that a 405 names every method
    allowed (HEAD is GET without the body).

    An ASGI callable rather than a function: Starlette then passes every method through to it.
    """

    def __init__(self, operations: dict[str, Operation], endpoints: dict[str, Endpoint]) -> None:
        self.operations = operations  # by method, upper case
        self.endpoints = endpoints
        self.allowed = tuple(sorted({*endpoints, "HEAD"} if "GET" in endpoints else set(endpoints)))
        self._app = request_response(self._dispatch)

    async def _dispatch(self, request: Request) -> Response:
        endpoint = self.endpoints.get("GET" if request.method == "HEAD" else request.method)
        if endpoint is None:
            raise MethodNotAllowed(f"{request.method} is not allowed here", allow=self.allowed)
        return await endpoint(request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def routes(
    api: ManagementApi,
    *,
    max_body_bytes: int,
    context: dict[str, Any],
    operations: Sequence[Operation] = OPERATIONS,
) -> list[Route]:
    """A route for every path of ``operations``: paths without parameters first (``/api/v1/qr/bulk``
    before ``/api/v1/qr/{code_id}``), each in the table's order."""
    by_path: dict[str, dict[str, Operation]] = {}
    for operation in operations:
        if not isinstance(getattr(operation, "role", None), Role):
            raise TypeError(f"{operation.operation_id} declares no role: every operation needs one")
        by_path.setdefault(operation.path, {})[operation.method.upper()] = operation
    paths = sorted(by_path, key=lambda path: "{" in path)  # stable: the table's order otherwise
    return [
        Route(
            path,
            PathOperations(
                by_path[path],
                {
                    method: _reader(operation, api, max_body_bytes=max_body_bytes, context=context)
                    for method, operation in by_path[path].items()
                },
            ),
        )
        for path in paths
    ]


def _reader(
    operation: Operation, api: ManagementApi, *, max_body_bytes: int, context: dict[str, Any]
) -> Endpoint:
    """The endpoint of ``operation``, behind the reading of the request its entry declares: the
    code id (404 when malformed), then the query string, then the JSON body, each refused in the
    API's error shape before the endpoint runs."""
    code_in_path = "{code_id}" in operation.path
    variant = operation.query_when
    needed = operation.role
    too_low = f"this needs the {needed.value} role"

    async def serve(request: Request) -> Response:
        identity = identity_of(request.scope)
        if not identity.role.allows(needed):
            raise Forbidden(too_low)
        code_id = _code_id(request) if code_in_path else None
        query: Any = None
        if operation.query is not None:
            model = operation.query
            if variant is not None and request.query_params.get(variant[0]) == variant[1]:
                model = variant[2]
            query = read_query(request, model)
        body: Any = None
        if operation.body is not None:
            body = await read_json(
                request,
                operation.body,
                accepted=operation.body_media,
                max_bytes=max_body_bytes,
                context=context,
            )
        call = Call(request, identity, query, body, code_id, operation.body_media)
        return await operation.endpoint(api, call)

    return serve


def _code_id(request: Request) -> str:
    code_id: str = request.path_params["code_id"]
    if not is_well_formed(code_id):
        raise NotFound("no QR code with that id")
    return code_id
