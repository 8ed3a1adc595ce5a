"""The management API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Generated: every schema, parameter and bound comes from the pydantic models the service validates
and answers with (:mod:`services.management.schemas`), and every path from the table of operations
(:mod:`.operations`) the router is built from too. A test walks the document and sends every bound
it states (accepted) and one past it (refused), and a schemathesis run checks the live service
against it, so the two cannot drift.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from services.management import schemas
from services.management.api.operations import BINARY, OPERATIONS, REF, Answer, Operation, error_answer
from services.management.images import EXPORT_RENDERS
from services.management.settings import ManagementSettings
from shared.ids import ID_PATTERN

# The exports bounded by EXPORT_MAX_CODES; the document states the bound in force.
BOUNDED_EXPORTS = ("exportCodesZip", "exportCodesPdf")


def _bounded(operation: Operation, max_codes: int) -> Operation:
    """A ZIP or PDF export's operation, saying how many codes it holds at most."""
    if operation.operation_id not in BOUNDED_EXPORTS:
        return operation
    bounds = (
        f"At most {max_codes:,} codes (EXPORT_MAX_CODES): the selection is counted first, and a larger "
        "one is refused with 422 (details.field: selection) before any work starts. Exports render "
        f"{EXPORT_RENDERS} image at a time among them, apart from the image endpoints' renders, and an "
        "export stops when its client goes away."
    )
    refused = error_answer(
        "A field or parameter has a bad value (details.field names it), or the selection holds more "
        f"than {max_codes:,} codes (EXPORT_MAX_CODES; details.field: selection)."
    )
    return replace(
        operation,
        description=f"{operation.description} {bounds}" if operation.description else bounds,
        answers={**operation.answers, 422: refused},
        max_codes=max_codes,
    )


_HEADER_DESCRIPTIONS = {
    "ETag": "The image's version; send it back as If-None-Match.",
    "Location": "The new code's path.",
    "Content-Disposition": "The file name a browser saves it under.",
    "Allow": "The methods this path answers.",
    "Retry-After": "Seconds to wait before trying again.",
    "WWW-Authenticate": "The authentication scheme (Bearer).",
    "X-Request-ID": "The request's id, as in the server's log.",
    "Idempotent-Replayed": "true: this is the stored answer of an earlier request with the key.",
}


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a parameter is absent or has a value, never null."""
    variants = schema.get("anyOf")
    if variants and {"type": "null"} in variants:
        rest = [variant for variant in variants if variant != {"type": "null"}]
        outer = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        schema = {**outer, **rest[0]} if len(rest) == 1 else {**outer, "anyOf": rest}
    return schema


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    query = operation.query or schemas.NoQuery  # a query not read has no parameters either
    properties = query.model_json_schema(ref_template=REF)["properties"]
    for name, schema in properties.items():
        description = schema.pop("description", None)
        schema.pop("title", None)
        parameter = {"name": name, "in": "query", "required": False, "schema": _parameter_schema(schema)}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    parameters += [
        {"name": header, "in": "header", "required": False, "schema": {"type": "string"}}
        for header in operation.headers
    ]
    return parameters


def _answer(answer: Answer, operation: Operation) -> dict[str, Any]:
    result: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        result["content"] = {
            "application/json": {"schema": {"$ref": REF.format(model=answer.model.__name__)}}
        }
    elif answer.media:
        result["content"] = {media: {"schema": schema} for media, schema in answer.media.items()}
    result["headers"] = {
        name: {"description": _HEADER_DESCRIPTIONS[name], "schema": {"type": "string"}}
        for name in (*answer.headers, "X-Request-ID")
    }
    if operation.links and result.get("content") and answer.model is schemas.QRCode:
        result["links"] = {
            name: {"operationId": target, "parameters": {"code_id": "$response.body#/id"}}
            for name, target in operation.links.items()
        }
    return result


def _operation(operation: Operation) -> dict[str, Any]:
    result: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "parameters": _parameters(operation),
        "responses": {str(status): _answer(a, operation) for status, a in sorted(operation.answers.items())},
        # The role its caller needs with ADMIN_AUTH=identity (docs/roles.md).
        "x-role": operation.role.value,
    }
    if operation.description:
        result["description"] = operation.description
    if operation.max_codes is not None:
        result["x-max-codes"] = operation.max_codes
    if operation.body_schemas is not None:
        result["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media, schema in operation.body_schemas.items()},
        }
    elif operation.body is not None or operation.binary_body:
        schema = BINARY if operation.binary_body else {"$ref": REF.format(model=operation.body.__name__)}  # type: ignore[union-attr]
        result["requestBody"] = {
            "required": True,
            "content": {media: {"schema": schema} for media in operation.body_media},
        }
    return result


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for operation in OPERATIONS:
        if operation.body is not None:
            models.append((operation.body, "validation"))
        models += [(a.model, "serialization") for a in operation.answers.values() if a.model is not None]
    return list(dict.fromkeys(models))


def _tidy(schemas_by_name: dict[str, Any]) -> None:
    """No title on every property (pydantic's spelling of its name), and no default on a field that
    may be left out but not be null (PATCH's target_url)."""
    for schema in schemas_by_name.values():
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
            nullable = prop.get("type") == "null" or {"type": "null"} in prop.get("anyOf", [])
            if "default" in prop and prop["default"] is None and not nullable:
                del prop["default"]


@functools.cache
def document(export_max_codes: int = ManagementSettings.export_max_codes) -> dict[str, Any]:
    """The document, stating the EXPORT_MAX_CODES in force."""
    _, definitions = models_json_schema(_models(), ref_template=REF)
    components = definitions.get("$defs", {})
    _tidy(components)
    paths: dict[str, Any] = {}
    for operation in (_bounded(operation, export_max_codes) for operation in OPERATIONS):
        item = paths.setdefault(operation.path, {})
        if "{code_id}" in operation.path:
            item["parameters"] = [
                {
                    "name": "code_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": ID_PATTERN},
                    "description": "The code's id (generated, or its slug).",
                }
            ]
        if "{name}" in operation.path:
            item["parameters"] = [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "The token's name.",
                }
            ]
        item[operation.method] = _operation(operation)
    for item in paths.values():
        item.setdefault("parameters", []).append({"$ref": "#/components/parameters/RequestId"})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "QR service management API",
            "version": "1",
            "description": 'Create and manage dynamic QR codes. Errors are always {"error": {"code", '
            '"message", "details"}}; a bad field or parameter is 422 with details.field naming it.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "parameters": {
                "RequestId": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Kept when well formed ([A-Za-z0-9._:-], up to 128), else replaced.",
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "With ADMIN_AUTH=identity (or ADMIN_TOKENS_FILE set): a token from "
                    "qr-manage token create or POST /api/v1/tokens, or from the tokens file; with "
                    "ADMIN_AUTH=network the allowlist alone.",
                }
            },
        },
        # Either no authentication (the network allowlist) or a bearer token.
        "security": [{}, {"bearer": []}],
    }
