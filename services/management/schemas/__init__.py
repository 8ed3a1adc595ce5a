"""The management API's shapes, declared once: every request body, query and answer as a pydantic model.

The service validates what a client sends with these models, answers through them, and the OpenAPI
document (:mod:`services.management.api.openapi`) is generated from them, so a bound the service
enforces is the bound the document states. The numbers themselves live in
:mod:`services.management.limits`, where qrctl reads them too.

Requests are strict, as a script's mistakes should be heard: unknown fields are refused, and nothing
is coerced (``"302"`` is not 302, ``true`` is not 1, ``302.0`` is not 302). Query strings are text
by nature; each parameter's type says exactly which text it takes (``limit=5``, not ``+5``, ``5.0``
or an Arabic-Indic five). Rules a schema cannot state (a destination's safety, printable text, the
contrast of two colours) run as validators beside the declared bounds, with reasons of their own;
:mod:`services.management.inputs` turns every refusal into the API's one error shape.

::

    fields.py   a code's fields' and the parameters' types, the rules beside them, how a field is shown
    bodies.py   request bodies: a code as created (the one list of a code's fields), its changes
    queries.py  query strings: filters, pages, image options, export layouts, scan ranges
    answers.py  answers: a code, lists, history, bulk results, scan reports, health, errors
"""

from __future__ import annotations

from services.management.schemas.answers import (
    Answer,
    AuditEntry,
    AuditPage,
    Bucket,
    BulkResult,
    Change,
    Error,
    ErrorBody,
    FieldChange,
    Health,
    History,
    Liveness,
    QRCode,
    QRCodeList,
    RowProblem,
    RowsRefused,
    RuleSeries,
    ScanReport,
    TagTotals,
    TopEntry,
    TopLists,
)
from services.management.schemas.bodies import (
    NewQRCode,
    QRCodeChanges,
    RequestBody,
)
from services.management.schemas.fields import (
    PATTERN_REASONS,
    EccLevel,
    Interval,
    Kind,
    RedirectStatus,
    Shown,
    choices_of,
    kind_of,
    shown,
    validation_context,
)
from services.management.schemas.queries import (
    AuditFilters,
    AuditQuery,
    BulkQuery,
    CodeFilters,
    ExportQuery,
    HistoryQuery,
    ImageQuery,
    ListQuery,
    NoQuery,
    Page,
    PdfQuery,
    PngQuery,
    Query,
    RawScansQuery,
    ScanQuery,
    SvgQuery,
    ZipPngQuery,
    ZipSvgQuery,
)
from services.management.schemas.tokens import NewToken, NewTokenMade, TokenInfo, TokenList

__all__ = [
    "PATTERN_REASONS",
    "Answer",
    "AuditEntry",
    "AuditFilters",
    "AuditPage",
    "AuditQuery",
    "Bucket",
    "BulkQuery",
    "BulkResult",
    "Change",
    "CodeFilters",
    "EccLevel",
    "Error",
    "ErrorBody",
    "ExportQuery",
    "FieldChange",
    "Health",
    "History",
    "HistoryQuery",
    "ImageQuery",
    "Interval",
    "Kind",
    "ListQuery",
    "Liveness",
    "NewQRCode",
    "NewToken",
    "NewTokenMade",
    "NoQuery",
    "Page",
    "PdfQuery",
    "PngQuery",
    "QRCode",
    "QRCodeChanges",
    "QRCodeList",
    "Query",
    "RawScansQuery",
    "RedirectStatus",
    "RequestBody",
    "RowProblem",
    "RowsRefused",
    "RuleSeries",
    "ScanQuery",
    "ScanReport",
    "Shown",
    "SvgQuery",
    "TagTotals",
    "TokenInfo",
    "TokenList",
    "TopEntry",
    "TopLists",
    "ZipPngQuery",
    "ZipSvgQuery",
    "choices_of",
    "kind_of",
    "shown",
    "validation_context",
]
