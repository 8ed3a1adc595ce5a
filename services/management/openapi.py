"""The management API's OpenAPI 3 document, served at ``/api/v1/openapi.json``.

Written by hand rather than generated, so that it says exactly what the service does: every
endpoint, parameter, body and error shape. A schemathesis run against the live service (in the
tests) checks the service against it.
"""

from __future__ import annotations

from typing import Any

from shared.ids import SLUG_MAX, SLUG_MIN

_ID_PATTERN = f"^[A-Za-z0-9_-]{{{SLUG_MIN},{SLUG_MAX}}}$"
_URL = {
    "type": "string",
    "minLength": 1,
    "maxLength": 2048,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s\\\\@]+$",
}
_TIMESTAMP = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "401": {
        **_error("A bearer token is required and was missing or wrong (only with ADMIN_TOKENS_FILE)."),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "403": _error("The client address is outside ADMIN_ALLOWLIST."),
    "405": {
        **_error("The method is not allowed on this path."),
        "headers": {"Allow": {"schema": {"type": "string"}}},
    },
    "421": _error("The Host header names a host outside ADMIN_HOSTS."),
    "429": {"description": "Too many requests (from the edge's rate limit)."},
    "503": _error("The database cannot be reached; retry after Retry-After seconds."),
}
_BODY_ERRORS = {
    "400": _error("The body is not a JSON object."),
    "413": _error("The body is larger than MAX_BODY_BYTES."),
    "415": _error("The body is not sent as JSON."),
}
_422 = {"422": _error("A field or parameter has a bad value; details.field names it.")}
_404 = {"404": _error("No such code (or it was deleted).")}


def _image_path(image_format: str, media_type: str) -> dict[str, Any]:
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, "description": description}

    colour = {"type": "string", "pattern": "^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$"}
    return {
        "parameters": [_CODE_ID],
        "get": {
            "operationId": f"getImage{image_format.capitalize()}",
            "summary": f"The code as {image_format.upper()}; it decodes to its short_url (checked before "
            "it is served)",
            "parameters": [
                query(
                    "size",
                    {"type": "integer", "minimum": 64, "maximum": 4096},
                    "Pixels (default 400); a PNG is drawn at whole pixels per module, within 10%.",
                ),
                query("border", {"type": "integer", "minimum": 0, "maximum": 16}, "Quiet-zone modules (4)."),
                query(
                    "ecc",
                    {"type": "string", "enum": ["L", "M", "Q", "H", "l", "m", "q", "h"]},
                    "Error correction (M); always H with a logo.",
                ),
                query("fg", colour, "Module colour, hex (000000); must be darker than bg, contrast 4.5:1."),
                query("bg", colour, "Ground colour, hex (ffffff)."),
                query(
                    "dpi",
                    {"type": "integer", "minimum": 72, "maximum": 2400},
                    "Recorded in the PNG; with size_mm, the pixels per millimetre (300).",
                ),
                query(
                    "size_mm",
                    {"type": "number", "minimum": 5, "maximum": 2000},
                    "Printed size in millimetres, instead of size; the SVG is sized in mm.",
                ),
                {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The image.",
                    "headers": {"ETag": {"schema": {"type": "string"}}},
                    "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
                },
                "304": {"description": "Not modified (If-None-Match matched the ETag)."},
                **_404,
                **_422,
                **_ERRORS,
            },
        },
    }


_CODE_ID = {
    "name": "code_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": _ID_PATTERN},
    "description": "The code's id (generated or a slug).",
}
_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string", "maxLength": 512, "pattern": "^[A-Za-z0-9_-]+$"},
        "description": "next_cursor of the previous page.",
    },
]

_WRITABLE_PROPERTIES: dict[str, Any] = {
    "target_url": {**_URL, "description": "Where the code sends people: an absolute http(s) URL."},
    "title": {"type": "string", "maxLength": 200, "nullable": True},
    "tags": {
        "type": "array",
        "nullable": True,
        "description": "null means no tags.",
        "maxItems": 20,
        "items": {"type": "string", "minLength": 1, "maxLength": 40, "pattern": "\\S"},
    },
    "redirect_status": {"type": "integer", "enum": [301, 302, 307, 308]},
    "enabled": {"type": "boolean"},
    "expires_at": {
        **_TIMESTAMP,
        "nullable": True,
        "description": "With a time zone; after it the code answers 410.",
    },
    "fallback_url": {
        **_URL,
        "nullable": True,
        "description": "Where a disabled or expired code sends people.",
    },
    "forward_query": {"type": "boolean", "description": "Append the scan's query string to the target."},
}

_QR_CODE_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "pattern": _ID_PATTERN},
    "short_url": {"type": "string", "description": "What the images encode; fixed at creation."},
    "target_url": {"type": "string"},
    "target_host_ascii": {
        "type": "string",
        "nullable": True,
        "description": "The target's host in ASCII (punycode): shows a homograph.",
    },
    "title": {"type": "string", "nullable": True},
    "tags": {"type": "array", "items": {"type": "string"}},
    "redirect_status": {"type": "integer", "enum": [301, 302, 307, 308]},
    "enabled": {"type": "boolean"},
    "expires_at": {**_TIMESTAMP, "nullable": True},
    "fallback_url": {"type": "string", "nullable": True},
    "forward_query": {"type": "boolean"},
    "logo_sha256": {
        "type": "string",
        "nullable": True,
        "pattern": "^[0-9a-f]{64}$",
        "description": "The logo in the middle of the code's images (PUT .../logo), by its digest.",
    },
    "created_at": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
    "scan_count": {"type": "integer", "minimum": 0},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    },
    "QRCode": {
        "type": "object",
        "additionalProperties": False,
        "required": list(_QR_CODE_PROPERTIES),  # every field, always present (null when unset)
        "properties": _QR_CODE_PROPERTIES,
    },
    "NewQRCode": {
        "type": "object",
        "additionalProperties": False,
        "required": ["target_url"],
        "properties": {
            **_WRITABLE_PROPERTIES,
            "slug": {
                "type": "string",
                "nullable": True,
                "pattern": _ID_PATTERN,
                "description": "A custom id; refused (409) if it is or ever was in use, 422 if reserved.",
            },
        },
    },
    "QRCodeChanges": {
        "type": "object",
        "additionalProperties": False,
        "properties": _WRITABLE_PROPERTIES,
        "description": "Any writable fields; null clears title, expires_at and fallback_url.",
    },
    "QRCodeList": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("QRCode")},
            "next_cursor": {"type": "string", "nullable": True},
        },
    },
    "Change": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "changed_at", "action", "changes", "client_address", "request_id", "token_name"],
        "properties": {
            "id": {"type": "integer"},
            "changed_at": _TIMESTAMP,
            "action": {"type": "string", "enum": ["create", "update", "delete"]},
            "changes": {
                "type": "object",
                "description": "Each changed field with its old and new value.",
                "additionalProperties": {"type": "object", "required": ["old", "new"]},
            },
            "client_address": {"type": "string", "nullable": True},
            "request_id": {"type": "string", "nullable": True},
            "token_name": {"type": "string", "nullable": True},
        },
    },
    "History": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Change")},
            "next_cursor": {"type": "string", "nullable": True},
        },
    },
    "ScanTotals": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code_id", "total", "people", "bots"],
        "properties": {
            "code_id": {"type": "string"},
            "total": {"type": "integer", "minimum": 0, "description": "Every recorded scan."},
            "people": {"type": "integer", "minimum": 0},
            "bots": {"type": "integer", "minimum": 0, "description": "Crawlers, previews, monitors, tools."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "database"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "database": {"type": "string"},
            "service": {"type": "string"},
        },
    },
}

_CODE_LINKS = {
    name: {"operationId": operation, "parameters": {"code_id": "$response.body#/id"}}
    for name, operation in (
        ("GetCode", "getCode"),
        ("UpdateCode", "updateCode"),
        ("DeleteCode", "deleteCode"),
        ("CodeImage", "getImagePng"),
        ("CodeScans", "getScans"),
    )
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "QR service management API",
        "version": "1",
        "description": "Create and manage dynamic QR codes. Errors are always "
        '{"error": {"code", "message", "details"}}.',
    },
    "paths": {
        "/api/v1/qr": {
            "get": {
                "operationId": "listCodes",
                "summary": "List and search codes, oldest first, a page at a time",
                "parameters": [
                    *_PAGE,
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "Case-insensitive substring of id, title or target.",
                    },
                    {
                        "name": "tag",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 40},
                    },
                    {"name": "enabled", "in": "query", "schema": {"type": "boolean"}},
                ],
                "responses": {"200": _json(_ref("QRCodeList"), "A page of codes."), **_422, **_ERRORS},
            },
            "post": {
                "operationId": "createCode",
                "summary": "Create a code",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewQRCode")}},
                },
                "responses": {
                    "201": {
                        **_json(_ref("QRCode"), "The new code."),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "links": _CODE_LINKS,
                    },
                    "409": _error("The slug is taken or was used before."),
                    **_BODY_ERRORS,
                    **_422,
                    **_ERRORS,
                },
            },
        },
        "/api/v1/qr/{code_id}": {
            "parameters": [_CODE_ID],
            "get": {
                "operationId": "getCode",
                "summary": "One code",
                "responses": {"200": _json(_ref("QRCode"), "The code."), **_404, **_ERRORS},
            },
            "patch": {
                "operationId": "updateCode",
                "summary": "Change writable fields; every redirect process follows within a second",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("QRCodeChanges")},
                        "application/merge-patch+json": {"schema": _ref("QRCodeChanges")},
                    },
                },
                "responses": {
                    "200": _json(_ref("QRCode"), "The changed code."),
                    **_404,
                    **_BODY_ERRORS,
                    **_422,
                    **_ERRORS,
                },
            },
            "delete": {
                "operationId": "deleteCode",
                "summary": "Delete a code: /r/ answers 404, the id is never handed out again, scans stay",
                "responses": {"204": {"description": "Deleted."}, **_404, **_ERRORS},
            },
        },
        "/api/v1/qr/{code_id}/history": {
            "parameters": [_CODE_ID],
            "get": {
                "operationId": "getHistory",
                "summary": "Every change of the code, newest first (kept after deletion)",
                "parameters": _PAGE,
                "responses": {"200": _json(_ref("History"), "A page of changes."), **_404, **_422, **_ERRORS},
            },
        },
        "/api/v1/qr/{code_id}/scans": {
            "parameters": [_CODE_ID],
            "get": {
                "operationId": "getScans",
                "summary": "Scans recorded for the code, people and bots apart (kept after deletion)",
                "responses": {"200": _json(_ref("ScanTotals"), "The totals."), **_404, **_422, **_ERRORS},
            },
        },
        "/api/v1/qr/{code_id}/image.png": _image_path("png", "image/png"),
        "/api/v1/qr/{code_id}/image.svg": _image_path("svg", "image/svg+xml"),
        "/api/v1/qr/{code_id}/logo": {
            "parameters": [_CODE_ID],
            "get": {
                "operationId": "getLogo",
                "summary": "The code's logo as stored (PNG, at most 512 px a side)",
                "responses": {
                    "200": {
                        "description": "The logo.",
                        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_404,
                    **_ERRORS,
                },
            },
            "put": {
                "operationId": "putLogo",
                "summary": "Show a logo in the middle of the code's images (they then use ECC H)",
                "description": "A PNG or JPEG of 16 to 4096 px a side, at most LOGO_MAX_BYTES; stored "
                "in the database (normalised to PNG, at most 512 px a side), so images stay derivable.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "200": _json(_ref("QRCode"), "The code, with its logo_sha256."),
                    "400": _error("The body did not arrive whole."),
                    "413": _error("The body is larger than LOGO_MAX_BYTES."),
                    "415": _error("The body is not sent as image/png or image/jpeg."),
                    **_404,
                    **_422,
                    **_ERRORS,
                },
            },
            "delete": {
                "operationId": "deleteLogo",
                "summary": "Remove the code's logo (nothing to do if it has none)",
                "responses": {"204": {"description": "Removed."}, **_404, **_ERRORS},
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document."), **_ERRORS},
            }
        },
        "/health": {
            "get": {
                "operationId": "getHealth",
                "summary": "Whether the service can serve (database reachable); public",
                "responses": {
                    "200": _json(_ref("Health"), "It can serve."),
                    "503": _json(_ref("Health"), "It cannot."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics, on the service's own port (the edge does not route it)",
                "responses": {
                    "200": {
                        "description": "The exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/livez": {
            "get": {
                "operationId": "getLiveness",
                "summary": "The process answers (never touches the database); public",
                "responses": {"200": _json({"type": "object"}, "Alive.")},
            }
        },
    },
    "components": {
        "schemas": _SCHEMAS,
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


def _with_request_ids(document: dict[str, Any]) -> dict[str, Any]:
    """Every operation takes an optional X-Request-ID and every answer carries one."""
    document["components"]["parameters"] = {
        "RequestId": {
            "name": "X-Request-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Kept when well formed ([A-Za-z0-9._:-], up to 128), else replaced.",
        }
    }
    header = {"description": "The request's id, as in the server's log.", "schema": {"type": "string"}}
    for item in document["paths"].values():
        item.setdefault("parameters", []).append({"$ref": "#/components/parameters/RequestId"})
        for name, operation in item.items():
            if name == "parameters":
                continue
            for response in operation["responses"].values():
                response.setdefault("headers", {})["X-Request-ID"] = header
    return document


OPENAPI = _with_request_ids(OPENAPI)
