"""The management API's OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Generated: every schema, parameter and bound comes from the pydantic models the service validates
and answers with (:mod:`services.management.schemas`); only the table of operations below is
written by hand. A test walks the document and sends every bound it states (accepted) and one past
it (refused), and a schemathesis run checks the live service against it, so the two cannot drift.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from services.management import bulk, limits, schemas
from services.management.images import EXPORT_RENDERS
from services.management.settings import ManagementSettings
from shared.ids import ID_PATTERN

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Answer:
    description: str
    model: type[BaseModel] | None = None  # a JSON answer of this shape
    media: dict[str, dict[str, Any]] | None = None  # any other content, by media type
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    operation_id: str
    summary: str
    answers: dict[int, Answer]
    query: type[schemas.Query] = schemas.NoQuery
    body: type[BaseModel] | None = None
    body_media: tuple[str, ...] = ("application/json",)
    binary_body: bool = False
    body_schemas: dict[str, dict[str, Any]] | None = None  # a body of other shapes, by media type
    description: str | None = None
    headers: tuple[str, ...] = ()  # request headers it reads
    links: dict[str, str] = field(default_factory=dict)  # link name -> operationId, by the new id
    max_codes: int | None = None  # an export's bound: x-max-codes


_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
SCANS_DESCRIPTION = (
    "Totals, series and top lists come from rollups the scan writer keeps (nothing counts raw scans), "
    "exact in every time zone: buckets follow the zone's calendar, days of 23 and 25 hours and "
    "half-hour offsets included. People and bots are apart: bots are crawlers, link previews of chat "
    "and mail apps, uptime monitors and HTTP libraries, flagged with the reason. Unique visitors are "
    "distinct visitor hashes among people. The hash's key changes at 00:00 UTC, so visitors are counted "
    "exactly per UTC day: an hour bucket counts the distinct visitors of its raw scans; a day bucket in "
    "UTC is its day's count; a day bucket in another zone, a week or a month sums the daily counts of "
    "the UTC days whose noon falls in it, at most its people (a visitor back on another day counts "
    "again), as does the total. Top lists (ten each) count the same UTC days; a code keeps at most "
    "a bounded number of distinct user agents and referrer hosts a day, the rest counted as Other. "
    "Raw scans, and the top lists' daily tallies with them, are kept SCAN_RETENTION_DAYS (raw_since "
    "says from when); the rollups of series and totals for ever."
)


BULK_DESCRIPTION = (
    "Rows are numbered from 1 as a spreadsheet shows them (the CSV header not counted; an empty "
    "line is skipped but counted). Every row is checked before anything is written; any bad row "
    f"refuses them all with the first {limits.MAX_ROW_ERRORS:,} problems listed (errors_omitted "
    "counts the rest; a row's unknown fields are named at the first), unless partial=true, which "
    "creates the valid rows and lists the others. Slugs are checked against every id ever used and "
    "against each other. "
    "With an Idempotency-Key (kept 24 hours), a retry gets the first answer (Idempotent-Replayed: "
    "true) instead of creating the codes again, even while the first is still running; the same key "
    "with a different request is a 422."
)


def _error(description: str, *headers: str) -> Answer:
    return Answer(description, schemas.Error, headers=headers)


# Answers every admin route may give, whatever it does.
_ADMIN = {
    401: _error(
        "A bearer token is required and was missing or wrong (only with ADMIN_TOKENS_FILE).",
        "WWW-Authenticate",
    ),
    403: _error(
        "The client address is outside ADMIN_ALLOWLIST, or a page of another site made the request "
        "(Sec-Fetch-Site: cross-site or same-site; tools send no such header)."
    ),
    405: _error("The method is not allowed on this path.", "Allow"),
    421: _error("The Host header names a host outside ADMIN_HOSTS."),
    429: Answer(
        "Too many requests (from the edge's rate limit); retry after Retry-After seconds.",
        headers=("Retry-After",),
    ),
    503: _error("The database cannot be reached; retry after Retry-After seconds.", "Retry-After"),
}
_BODY = {
    400: _error("The body is not a JSON object, or did not arrive whole."),
    413: _error("The body is larger than MAX_BODY_BYTES."),
    415: _error("The body is not sent as JSON."),
}
_422 = {422: _error("A field or parameter has a bad value; details.field names it.")}
_404 = {404: _error("No such code (or it was deleted).")}
_CODE_LINKS = {
    "GetCode": "getCode",
    "UpdateCode": "updateCode",
    "DeleteCode": "deleteCode",
    "CodeImage": "getImagePng",
    "CodeImageSvg": "getImageSvg",
    "CodeHistory": "getHistory",
    "CodeScans": "getScans",
    "CodeScansCsv": "getScansCsv",
}


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
    refused = _error(
        "A field or parameter has a bad value (details.field names it), or the selection holds more "
        f"than {max_codes:,} codes (EXPORT_MAX_CODES; details.field: selection)."
    )
    return replace(
        operation,
        description=f"{operation.description} {bounds}" if operation.description else bounds,
        answers={**operation.answers, 422: refused},
        max_codes=max_codes,
    )


def _image(image_format: str, media_type: str, query: type[schemas.Query]) -> Operation:
    return Operation(
        f"/api/v1/qr/{{code_id}}/image.{image_format}",
        "get",
        f"getImage{image_format.capitalize()}",
        f"The code as {image_format.upper()}; it decodes to its short_url (checked before it is served)",
        {
            200: Answer("The image.", media={media_type: _BINARY}, headers=("ETag",)),
            304: Answer("Not modified (If-None-Match matched the ETag)."),
            **_404,
            **_422,
            **_ADMIN,
        },
        query=query,
        headers=("If-None-Match",),
    )


OPERATIONS = (
    Operation(
        "/api/v1/qr",
        "get",
        "listCodes",
        "List and search codes, oldest first, a page at a time",
        {200: Answer("A page of codes.", schemas.QRCodeList), **_422, **_ADMIN},
        query=schemas.ListQuery,
    ),
    Operation(
        "/api/v1/qr",
        "post",
        "createCode",
        "Create a code",
        {
            201: Answer("The new code.", schemas.QRCode, headers=("Location",)),
            409: _error("The slug is taken, or was used before, in any case."),
            **_BODY,
            **_422,
            **_ADMIN,
        },
        body=schemas.NewQRCode,
        links=_CODE_LINKS,
    ),
    Operation(
        "/api/v1/qr/{code_id}",
        "get",
        "getCode",
        "One code",
        {200: Answer("The code.", schemas.QRCode), **_404, **_422, **_ADMIN},
    ),
    Operation(
        "/api/v1/qr/{code_id}",
        "patch",
        "updateCode",
        "Change writable fields; every redirect process follows within a second",
        {200: Answer("The changed code.", schemas.QRCode), **_404, **_BODY, **_422, **_ADMIN},
        body=schemas.QRCodeChanges,
        body_media=("application/json", "application/merge-patch+json"),
    ),
    Operation(
        "/api/v1/qr/{code_id}",
        "delete",
        "deleteCode",
        "Delete a code: /r/ answers 404, the id is never handed out again, scans stay",
        {204: Answer("Deleted."), **_404, **_422, **_ADMIN},
    ),
    Operation(
        "/api/v1/qr/{code_id}/history",
        "get",
        "getHistory",
        "Every change of the code, newest first (kept after deletion)",
        {200: Answer("A page of changes.", schemas.History), **_404, **_422, **_ADMIN},
        query=schemas.HistoryQuery,
    ),
    Operation(
        "/api/v1/qr/{code_id}/scans",
        "get",
        "getScans",
        "The code's scans over a range: totals, a series in a time zone's buckets, top lists",
        {200: Answer("The statistics.", schemas.ScanReport), **_404, **_422, **_ADMIN},
        query=schemas.ScanQuery,
        description=SCANS_DESCRIPTION,
    ),
    Operation(
        "/api/v1/qr/{code_id}/scans",
        "delete",
        "eraseScans",
        "Erase the code's scans, counters and rollups (a privacy request); recorded in its history",
        {204: Answer("Erased."), **_404, **_422, **_ADMIN},
    ),
    Operation(
        "/api/v1/qr/{code_id}/scans.csv",
        "get",
        "getScansCsv",
        "The code's raw scans as CSV, oldest first, streamed (no visitor hash; formula-safe cells)",
        {
            200: Answer(
                "The scans.", media={"text/csv": {"type": "string"}}, headers=("Content-Disposition",)
            ),
            **_404,
            **_422,
            **_ADMIN,
        },
        query=schemas.RawScansQuery,
    ),
    Operation(
        "/api/v1/qr/bulk",
        "post",
        "createCodes",
        "Create up to 10,000 codes from a JSON array or a CSV, all or nothing (or partially)",
        {
            201: Answer(
                "The codes made, in the order of the rows.",
                schemas.BulkResult,
                headers=("Idempotent-Replayed",),
            ),
            400: _error("The body is not a JSON array, or a CSV that can be read (not UTF-8, say)."),
            413: _error("The body is larger than BULK_MAX_BODY_BYTES."),
            415: _error("The body is neither JSON nor text/csv."),
            422: Answer(
                "Rows with errors, nothing created (with partial=true: none was valid); or a bad "
                "parameter, CSV header or Idempotency-Key (details.field names it).",
                schemas.RowsRefused,
            ),
            **_ADMIN,
        },
        query=schemas.BulkQuery,
        headers=("Idempotency-Key",),
        body_schemas={
            "application/json": {
                "type": "array",
                "maxItems": bulk.MAX_ROWS,
                "description": f"At most {bulk.MAX_VALUES:,} JSON values in all (what {bulk.MAX_ROWS:,} "
                "codes with every field and all their tags have); more is a 422 before any row is read.",
                # With partial=true a row that is no NewQRCode is reported, not refused: the
                # body is then valid whatever its rows hold, and the schema says so.
                "items": {
                    "anyOf": [{"$ref": REF.format(model="NewQRCode")}, {}],
                    "description": "A code as POST /api/v1/qr takes it.",
                },
            },
            "text/csv": {
                "type": "string",
                "description": "A header of field names (" + ", ".join(bulk.COLUMNS) + "; target_url "
                "required), then a code per line; tags separated by |; UTF-8.",
            },
        },
        description=BULK_DESCRIPTION,
    ),
    Operation(
        "/api/v1/qr/export.csv",
        "get",
        "exportCodesCsv",
        "Every code the filters keep as CSV, oldest first, streamed (formula-safe cells)",
        {
            200: Answer(
                "The codes, in the columns a bulk upload takes back.",
                media={"text/csv": {"type": "string"}},
                headers=("Content-Disposition",),
            ),
            **_422,
            **_ADMIN,
        },
        query=schemas.ExportQuery,
    ),
    Operation(
        "/api/v1/qr/export.zip",
        "get",
        "exportCodesZip",
        "Every code the filters keep as an image in a ZIP, with manifest.csv, streamed",
        {
            200: Answer(
                "The images ({id}.png or {id}.svg, each checked by decoding) and manifest.csv "
                "(id, short_url, target_url, title, file).",
                media={"application/zip": _BINARY},
                headers=("Content-Disposition",),
            ),
            **_422,
            **_ADMIN,
        },
        query=schemas.ZipPngQuery,
        description="The image options are image.png's (with format=svg, image.svg's: size_mm up to "
        f"{limits.MAX_SIZE_MM:g}).",
    ),
    Operation(
        "/api/v1/qr/export.pdf",
        "get",
        "exportCodesPdf",
        "Every code the filters keep on PDF label sheets: vector codes, title and short link beneath",
        {
            200: Answer(
                "The sheets: codes as vector squares, text in an embedded font, cut marks.",
                media={"application/pdf": _BINARY},
                headers=("Content-Disposition",),
            ),
            **_422,
            **_ADMIN,
        },
        query=schemas.PdfQuery,
        description="size_mm is each code with its quiet zone, as image.svg's size_mm. The grid spreads "
        "over the page inside a 10 mm margin: as many labels as fit unless columns and rows say.",
    ),
    Operation(
        "/api/v1/scans",
        "get",
        "getAllScans",
        "Every code's scans together over a range, with totals per tag",
        {200: Answer("The statistics.", schemas.ScanReport), **_422, **_ADMIN},
        query=schemas.ScanQuery,
        description=SCANS_DESCRIPTION,
    ),
    _image("png", "image/png", schemas.PngQuery),
    _image("svg", "image/svg+xml", schemas.SvgQuery),
    Operation(
        "/api/v1/qr/{code_id}/logo",
        "get",
        "getLogo",
        "The code's logo as stored",
        {200: Answer("The logo.", media={"image/png": _BINARY}, headers=("ETag",)), **_404, **_422, **_ADMIN},
    ),
    Operation(
        "/api/v1/qr/{code_id}/logo",
        "put",
        "putLogo",
        "Show a logo in the middle of the code's images (they then use ECC H)",
        {
            200: Answer("The code, with its logo_sha256.", schemas.QRCode),
            400: _error("The body did not arrive whole."),
            413: _error("The body is larger than LOGO_MAX_BYTES."),
            415: _error("The body is not sent as image/png or image/jpeg."),
            **_404,
            **_422,
            **_ADMIN,
        },
        body_media=("image/png", "image/jpeg"),
        binary_body=True,
        description=f"A PNG or JPEG of {limits.LOGO_MIN_SIDE} to {limits.LOGO_MAX_SIDE} "
        f"px a side, at most LOGO_MAX_BYTES; stored in the database (normalised to PNG, at most "
        f"{limits.LOGO_STORED_SIDE} px a side), so images stay derivable.",
    ),
    Operation(
        "/api/v1/qr/{code_id}/logo",
        "delete",
        "deleteLogo",
        "Remove the code's logo (nothing to do if it has none)",
        {204: Answer("Removed."), **_404, **_422, **_ADMIN},
    ),
    Operation(
        "/api/v1/openapi.json",
        "get",
        "getOpenApi",
        "This document",
        {
            200: Answer("The OpenAPI document.", media={"application/json": {"type": "object"}}),
            **_422,
            **_ADMIN,
        },
    ),
    Operation(
        "/health",
        "get",
        "getHealth",
        "Whether the service can serve (database reachable); public",
        {200: Answer("It can serve.", schemas.Health), 503: Answer("It cannot.", schemas.Health)},
    ),
    Operation(
        "/livez",
        "get",
        "getLiveness",
        "The process answers (never touches the database); public",
        {200: Answer("Alive.", schemas.Liveness)},
    ),
    Operation(
        "/metrics",
        "get",
        "getMetrics",
        "Prometheus metrics, on the service's own port (the edge does not route it)",
        {200: Answer("The exposition.", media={"text/plain": {"type": "string"}})},
    ),
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
    properties = operation.query.model_json_schema(ref_template=REF)["properties"]
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
        schema = _BINARY if operation.binary_body else {"$ref": REF.format(model=operation.body.__name__)}  # type: ignore[union-attr]
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
                    "description": "Only with ADMIN_TOKENS_FILE set; otherwise the allowlist alone.",
                }
            },
        },
        # Either no authentication (the network allowlist) or a bearer token.
        "security": [{}, {"bearer": []}],
    }
