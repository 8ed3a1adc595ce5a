"""The management API, operation by operation: the one table that both the router
(:mod:`.routes`) and the OpenAPI document (:mod:`.openapi`) are built from.

An entry names its path and method, the endpoint that serves it, the models its query and JSON
body are read with (before the endpoint runs, which is then handed them), its answers, and the
role its caller needs (``role``, required: the router refuses an entry without one, and checks it
before reading the request; docs/roles.md is the matrix, made from this table). A route exists
exactly when an entry does; tests/management/test_operations.py walks the app's routes against the
document without a server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from services.management import bulk, limits, schemas
from services.management.api.endpoints import Call, ManagementApi
from services.management.auth.roles import Role
from services.management.schemas.rules_try import RulesTrial, RulesTried

REF = "#/components/schemas/{model}"
# An endpoint: a method of ManagementApi that takes the call as read for its operation.
Endpoint = Callable[[ManagementApi, Call[Any, Any]], Awaitable[Response]]


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
    endpoint: Endpoint = field(kw_only=True)
    # The role its caller needs (ADMIN_AUTH=network: every caller is an admin).
    role: Role = field(kw_only=True)
    # The query string's model (None: not read at all, for the probes and metrics).
    query: type[schemas.Query] | None = schemas.NoQuery
    # (parameter, value, model): the query is read with this other model when the parameter has
    # this value (export.zip's image options with format=svg); the document shows ``query``.
    query_when: tuple[str, str, type[schemas.Query]] | None = None
    body: type[schemas.RequestBody] | None = None  # a JSON object, read with this model
    body_media: tuple[str, ...] = ("application/json",)
    binary_body: bool = False
    body_schemas: dict[str, dict[str, Any]] | None = None  # a body of other shapes, by media type
    description: str | None = None
    headers: tuple[str, ...] = ()  # request headers it reads
    links: dict[str, str] = field(default_factory=dict)  # link name -> operationId, by the new id
    max_codes: int | None = None  # an export's bound: x-max-codes


BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
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


AUDIT_DESCRIPTION = (
    "Every admin write (the code's id as target), token change, sign-in (a refused one with outcome "
    "refused) and sign-out: who (a token's name, or a person's e-mail and the provider's subject), "
    "the role, the client's address, the request id, what and when. Entries are written in the "
    "transaction of the change they record, kept AUDIT_RETENTION_DAYS, and never hold a secret. "
    "Admins only."
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


def error_answer(description: str, *headers: str) -> Answer:
    return Answer(description, schemas.Error, headers=headers)


# Answers every admin route may give, whatever it does.
_ADMIN = {
    401: error_answer(
        "A bearer token is required (ADMIN_AUTH=identity) and was missing, unknown, expired or revoked.",
        "WWW-Authenticate",
    ),
    403: error_answer(
        "The caller's role is too low for this operation (x-role names the one it needs), the client "
        "address is outside ADMIN_ALLOWLIST, or a page of another site made the request "
        "(Sec-Fetch-Site: cross-site or same-site; tools send no such header)."
    ),
    405: error_answer("The method is not allowed on this path.", "Allow"),
    421: error_answer("The Host header names a host outside ADMIN_HOSTS."),
    429: Answer(
        "Too many requests (from the edge's rate limit); retry after Retry-After seconds.",
        headers=("Retry-After",),
    ),
    503: error_answer("The database cannot be reached; retry after Retry-After seconds.", "Retry-After"),
}
_BODY = {
    400: error_answer("The body is not a JSON object, or did not arrive whole."),
    413: error_answer("The body is larger than MAX_BODY_BYTES."),
    415: error_answer("The body is not sent as JSON."),
}
_422 = {422: error_answer("A field or parameter has a bad value; details.field names it.")}
_404 = {404: error_answer("No such code (or it was deleted, or it carries none of the token's tags).")}
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


def _image(image_format: str, media_type: str, query: type[schemas.Query], endpoint: Endpoint) -> Operation:
    return Operation(
        f"/api/v1/qr/{{code_id}}/image.{image_format}",
        "get",
        f"getImage{image_format.capitalize()}",
        f"The code as {image_format.upper()}; it decodes to its short_url (checked before it is served)",
        {
            200: Answer("The image.", media={media_type: BINARY}, headers=("ETag",)),
            304: Answer("Not modified (If-None-Match matched the ETag)."),
            **_404,
            **_422,
            **_ADMIN,
        },
        query=query,
        headers=("If-None-Match",),
        endpoint=endpoint,
        role=Role.viewer,
    )


OPERATIONS = (
    Operation(
        "/api/v1/qr",
        "get",
        "listCodes",
        "List and search codes, oldest first, a page at a time",
        {200: Answer("A page of codes.", schemas.QRCodeList), **_422, **_ADMIN},
        query=schemas.ListQuery,
        endpoint=ManagementApi.list_codes,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/qr",
        "post",
        "createCode",
        "Create a code",
        {
            201: Answer("The new code.", schemas.QRCode, headers=("Location",)),
            409: error_answer("The slug is taken, or was used before, in any case."),
            **_BODY,
            **_422,
            **_ADMIN,
        },
        body=schemas.NewQRCode,
        links=_CODE_LINKS,
        endpoint=ManagementApi.create_code,
        role=Role.editor,
    ),
    Operation(
        "/api/v1/qr/{code_id}",
        "get",
        "getCode",
        "One code",
        {200: Answer("The code.", schemas.QRCode), **_404, **_422, **_ADMIN},
        endpoint=ManagementApi.get_code,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/qr/{code_id}",
        "patch",
        "updateCode",
        "Change writable fields; every redirect process follows within a second",
        {200: Answer("The changed code.", schemas.QRCode), **_404, **_BODY, **_422, **_ADMIN},
        body=schemas.QRCodeChanges,
        body_media=("application/json", "application/merge-patch+json"),
        endpoint=ManagementApi.update_code,
        role=Role.editor,
    ),
    Operation(
        "/api/v1/qr/{code_id}",
        "delete",
        "deleteCode",
        "Delete a code: /r/ answers 404, the id is never handed out again, scans stay",
        {204: Answer("Deleted."), **_404, **_422, **_ADMIN},
        endpoint=ManagementApi.delete_code,
        role=Role.admin,
    ),
    Operation(
        "/api/v1/qr/{code_id}/rules/try",
        "post",
        "tryRules",
        "What the code's redirect rules would give a made-up scanner: agent, language, country, moment",
        {
            200: Answer("What would serve the scan, and where it would go.", RulesTried),
            **_404,
            **_BODY,
            **_422,
            **_ADMIN,
        },
        body=RulesTrial,
        endpoint=ManagementApi.try_rules,
        role=Role.editor,
    ),
    Operation(
        "/api/v1/qr/{code_id}/history",
        "get",
        "getHistory",
        "Every change of the code, newest first (kept after deletion)",
        {200: Answer("A page of changes.", schemas.History), **_404, **_422, **_ADMIN},
        query=schemas.HistoryQuery,
        endpoint=ManagementApi.history,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/qr/{code_id}/scans",
        "get",
        "getScans",
        "The code's scans over a range: totals, a series in a time zone's buckets, top lists",
        {200: Answer("The statistics.", schemas.ScanReport), **_404, **_422, **_ADMIN},
        query=schemas.ScanQuery,
        description=SCANS_DESCRIPTION,
        endpoint=ManagementApi.scans,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/qr/{code_id}/scans",
        "delete",
        "eraseScans",
        "Erase the code's scans, counters and rollups (a privacy request); recorded in its history",
        {204: Answer("Erased."), **_404, **_422, **_ADMIN},
        endpoint=ManagementApi.erase_scans,
        role=Role.admin,
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
        endpoint=ManagementApi.scans_csv,
        role=Role.viewer,
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
            400: error_answer("The body is not a JSON array, or a CSV that can be read (not UTF-8, say)."),
            413: error_answer("The body is larger than BULK_MAX_BODY_BYTES."),
            415: error_answer("The body is neither JSON nor text/csv."),
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
        body_media=("application/json", "text/csv"),
        endpoint=ManagementApi.bulk_create,
        role=Role.editor,
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
        endpoint=ManagementApi.export_csv,
        role=Role.viewer,
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
                media={"application/zip": BINARY},
                headers=("Content-Disposition",),
            ),
            **_422,
            **_ADMIN,
        },
        query=schemas.ZipPngQuery,
        description="The image options are image.png's (with format=svg, image.svg's: size_mm up to "
        f"{limits.MAX_SIZE_MM:g}).",
        query_when=("format", "svg", schemas.ZipSvgQuery),
        endpoint=ManagementApi.export_zip,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/qr/export.pdf",
        "get",
        "exportCodesPdf",
        "Every code the filters keep on PDF label sheets: vector codes, title and short link beneath",
        {
            200: Answer(
                "The sheets: codes as vector squares, text in an embedded font, cut marks.",
                media={"application/pdf": BINARY},
                headers=("Content-Disposition",),
            ),
            **_422,
            **_ADMIN,
        },
        query=schemas.PdfQuery,
        description="size_mm is each code with its quiet zone, as image.svg's size_mm. The grid spreads "
        "over the page inside a 10 mm margin: as many labels as fit unless columns and rows say.",
        endpoint=ManagementApi.export_pdf,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/scans",
        "get",
        "getAllScans",
        "Every code's scans together over a range, with totals per tag",
        {200: Answer("The statistics.", schemas.ScanReport), **_422, **_ADMIN},
        query=schemas.ScanQuery,
        description=SCANS_DESCRIPTION,
        endpoint=ManagementApi.all_scans,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/audit",
        "get",
        "getAudit",
        "The audit log, newest first: admin writes, token changes, sign-ins and sign-outs",
        {200: Answer("A page of entries.", schemas.AuditPage), **_422, **_ADMIN},
        query=schemas.AuditQuery,
        description=AUDIT_DESCRIPTION,
        endpoint=ManagementApi.audit,
        role=Role.admin,
    ),
    Operation(
        "/api/v1/audit.csv",
        "get",
        "getAuditCsv",
        "The audit log's entries as CSV, oldest first, streamed (formula-safe cells)",
        {
            200: Answer(
                "The entries.", media={"text/csv": {"type": "string"}}, headers=("Content-Disposition",)
            ),
            **_422,
            **_ADMIN,
        },
        query=schemas.AuditFilters,
        description=AUDIT_DESCRIPTION,
        endpoint=ManagementApi.audit_csv,
        role=Role.admin,
    ),
    _image("png", "image/png", schemas.PngQuery, ManagementApi.get_png),
    _image("svg", "image/svg+xml", schemas.SvgQuery, ManagementApi.get_svg),
    Operation(
        "/api/v1/qr/{code_id}/logo",
        "get",
        "getLogo",
        "The code's logo as stored",
        {200: Answer("The logo.", media={"image/png": BINARY}, headers=("ETag",)), **_404, **_422, **_ADMIN},
        endpoint=ManagementApi.get_logo,
        role=Role.viewer,
    ),
    Operation(
        "/api/v1/qr/{code_id}/logo",
        "put",
        "putLogo",
        "Show a logo in the middle of the code's images (they then use ECC H)",
        {
            200: Answer("The code, with its logo_sha256.", schemas.QRCode),
            400: error_answer("The body did not arrive whole."),
            413: error_answer("The body is larger than LOGO_MAX_BYTES."),
            415: error_answer("The body is not sent as image/png or image/jpeg."),
            **_404,
            **_422,
            **_ADMIN,
        },
        body_media=("image/png", "image/jpeg"),
        binary_body=True,
        description=f"A PNG or JPEG of {limits.LOGO_MIN_SIDE} to {limits.LOGO_MAX_SIDE} "
        f"px a side, at most LOGO_MAX_BYTES; stored in the database (normalised to PNG, at most "
        f"{limits.LOGO_STORED_SIDE} px a side), so images stay derivable.",
        endpoint=ManagementApi.put_logo,
        role=Role.editor,
    ),
    Operation(
        "/api/v1/qr/{code_id}/logo",
        "delete",
        "deleteLogo",
        "Remove the code's logo (nothing to do if it has none)",
        {204: Answer("Removed."), **_404, **_422, **_ADMIN},
        endpoint=ManagementApi.delete_logo,
        role=Role.editor,
    ),
    Operation(
        "/api/v1/tokens",
        "get",
        "listTokens",
        "Every token the service made, revoked ones too (never a token itself)",
        {200: Answer("The tokens.", schemas.TokenList), **_422, **_ADMIN},
        endpoint=ManagementApi.list_tokens,
        role=Role.admin,
    ),
    Operation(
        "/api/v1/tokens",
        "post",
        "createToken",
        "Make a bearer token with a role and, optionally, tags and an end; shown once in the answer",
        {
            201: Answer("The token, in token: shown this once.", schemas.NewTokenMade),
            409: error_answer("A token has, or had, that name: names are never reused."),
            **_BODY,
            **_422,
            **_ADMIN,
        },
        body=schemas.NewToken,
        endpoint=ManagementApi.create_token,
        role=Role.admin,
    ),
    Operation(
        "/api/v1/tokens/{name}",
        "delete",
        "revokeToken",
        "Revoke a token: it opens nothing from then on, in every process within a few seconds",
        {204: Answer("Revoked."), 404: error_answer("No such token, or it is revoked already."), **_ADMIN},
        endpoint=ManagementApi.revoke_token,
        role=Role.admin,
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
        endpoint=ManagementApi.openapi,
        role=Role.viewer,
    ),
    Operation(
        "/health",
        "get",
        "getHealth",
        "Whether the service can serve (database reachable); public",
        {200: Answer("It can serve.", schemas.Health), 503: Answer("It cannot.", schemas.Health)},
        query=None,
        endpoint=ManagementApi.health,
        role=Role.viewer,
    ),
    Operation(
        "/livez",
        "get",
        "getLiveness",
        "The process answers (never touches the database); public",
        {200: Answer("Alive.", schemas.Liveness)},
        query=None,
        endpoint=ManagementApi.livez,
        role=Role.viewer,
    ),
    Operation(
        "/metrics",
        "get",
        "getMetrics",
        "Prometheus metrics, on the service's own port (the edge does not route it)",
        {200: Answer("The exposition.", media={"text/plain": {"type": "string"}})},
        query=None,
        endpoint=ManagementApi.scrape,
        role=Role.viewer,
    ),
)
