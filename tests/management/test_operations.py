"""Each route declared once: the router and the OpenAPI document are both built from the table of
operations (services/management/api/operations.py). Walked here without a server: every route of
the app has its operation in the document and every operation of the document its route, and every
endpoint takes the models its operation declares."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from services.management.api.endpoints import Call, ManagementApi
from services.management.api.openapi import document
from services.management.api.operations import OPERATIONS
from services.management.api.routes import PathOperations, routes
from services.management.app import create_app
from services.management.auth.roles import Role
from services.management.settings import ManagementSettings


def starlette_of(app: Any) -> Starlette:
    """The Starlette app inside the request context and the door."""
    while not isinstance(app, Starlette):
        app = app.app
    return app


def app_routes() -> list[BaseRoute]:
    settings = ManagementSettings.from_env({"DATABASE_URL": "postgresql://unused@/x"})
    return list(starlette_of(create_app(settings)).routes)


def unmatched(routes: Iterable[BaseRoute], described: dict[str, Any]) -> list[str]:
    """What is served and not described, or described and not served; and any route that is
    neither the API's (built from an operation) nor the console's or the edge's pages."""
    served, problems = set(), []
    for route in routes:
        app = getattr(route, "app", None)
        if isinstance(app, PathOperations):
            served |= {(route.path, method.lower()) for method in app.operations}  # type: ignore[attr-defined]
        elif not route.path.startswith(("/console", "/edge-error/")) and route.path != "/":  # type: ignore[attr-defined]
            problems.append(f"{route.path}: a route without an operation")  # type: ignore[attr-defined]
    documented = {
        (path, method)
        for path, item in described["paths"].items()
        for method in item
        if method != "parameters"
    }
    problems += [
        f"{method.upper()} {path}: served, not in the document" for path, method in served - documented
    ]
    problems += [
        f"{method.upper()} {path}: in the document, not served" for path, method in documented - served
    ]
    return sorted(problems)


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    routes = app_routes()
    assert unmatched(routes, document()) == []
    assert len({(o.path, o.method) for o in OPERATIONS}) == len(OPERATIONS) == 29


def test_the_walk_finds_a_route_without_an_operation_and_an_operation_without_a_route() -> None:
    routes = app_routes()
    stray = Route("/api/v1/qr/{code_id}/stray", lambda request: None)
    assert unmatched([*routes, stray], document()) == [
        "/api/v1/qr/{code_id}/stray: a route without an operation"
    ]
    doctored = document()
    missing = {**doctored, "paths": {k: v for k, v in doctored["paths"].items() if k != "/livez"}}
    assert unmatched(routes, missing) == ["GET /livez: served, not in the document"]
    extra = {**doctored, "paths": {**doctored["paths"], "/api/v1/extra": {"get": {}}}}
    assert unmatched(routes, extra) == ["GET /api/v1/extra: in the document, not served"]


def _models(annotation: Any) -> set[Any]:
    """``X | Y`` -> {X, Y}; ``None`` -> {None}."""
    return {None if each is type(None) else each for each in typing.get_args(annotation) or (annotation,)}


def test_each_endpoint_takes_the_models_its_operation_declares() -> None:
    """The endpoint's ``Call[query, body]`` names the models the router reads its call with."""
    for operation in OPERATIONS:
        call = typing.get_type_hints(operation.endpoint)["call"]
        assert typing.get_origin(call) is Call, operation.operation_id
        query, body = typing.get_args(call)
        declared = {operation.query} | ({operation.query_when[2]} if operation.query_when else set())
        assert _models(query) == declared, operation.operation_id
        assert _models(body) == {operation.body}, operation.operation_id


def test_every_operation_declares_a_role_and_one_without_gets_no_route() -> None:
    assert all(isinstance(operation.role, Role) for operation in OPERATIONS)
    roleless = dataclasses.replace(OPERATIONS[0], role=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="listCodes declares no role"):
        routes(typing.cast(ManagementApi, object()), max_body_bytes=1024, context={}, operations=[roleless])
