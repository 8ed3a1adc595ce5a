"""Answers: a code, pages of codes, its history, a bulk request's result, scan reports, health,
and the error shapes. Every field is always present (null when unset)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.management import limits
from services.management.schemas.fields import SHA256, Interval, RedirectStatus
from services.management.schemas.rules import Rules, Split
from shared.ids import ID_PATTERN


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


CodeState = Literal["on", "off", "expired", "not_yet", "static", "deleted"]
CODE_STATES: tuple[CodeState, ...] = ("on", "off", "expired", "not_yet", "static", "deleted")


class QRCode(Answer):
    """A QR code. Every field is always present (null when unset)."""

    id: str = Field(pattern=ID_PATTERN, description="Generated, or the slug it was created with.")
    short_url: str = Field(description="What the images encode; fixed at creation.")
    target_url: str = Field(description="A non-ASCII host is stored in its ASCII (punycode) form.")
    target_host_ascii: str | None = Field(description="The target's host as a browser looks it up.")
    title: str | None
    tags: list[str]
    redirect_status: RedirectStatus
    enabled: bool
    expires_at: datetime | None
    fallback_url: str | None
    forward_query: bool
    rules: Rules
    split: Split | None
    logo_sha256: str | None = Field(
        pattern=SHA256,
        description="The logo in the middle of the code's images (PUT .../logo), by its digest.",
    )
    kind: str = Field(description="url, wifi, vcard, event, email, sms, tel, geo or text.")
    content: dict[str, Any] | None = Field(description="The content of a kind other than url.")
    dynamic: bool = Field(description="A vcard served by its short link (/r/{id}), which edits reach.")
    static: bool = Field(
        description="true: the images encode the content itself, not the short link: nothing about a "
        "printed code can change, and its short link does not answer."
    )
    design: dict[str, Any] | None = Field(
        description="The saved design (the image options it sets), or null: plain black squares."
    )
    created_at: datetime
    updated_at: datetime
    scan_count: int = Field(ge=0, description="Every recorded scan, people and bots; fresh within seconds.")
    state: CodeState = Field(
        description="What /r/{id} does now: on (redirects), off (switched off: 410 or the fallback URL), "
        "expired (past expires_at: 410 or the fallback URL), not_yet (before its start: 410 or the "
        "fallback URL), static (a kind other than url, not dynamic: its images carry the content itself and "
        "its short link answers 404, whether switched on or not), deleted (404; only a deleted code's scans "
        "pages show it)."
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="What the write was accepted despite (a country rule without GEOIP_DATABASE); "
        "empty but in the answer to a create or change.",
    )


class RowProblem(Answer):
    row: int = Field(ge=1, description="From 1, as a spreadsheet shows it (the CSV header not counted).")
    field: str
    message: str


ErrorsOmitted = Annotated[
    int,
    Field(
        ge=0, description=f"Errors found beyond the first {limits.MAX_ROW_ERRORS:,}, which alone are listed."
    ),
]


class BulkResult(Answer):
    created: list[QRCode] = Field(description="In the order of the rows.")
    errors: list[RowProblem] = Field(
        max_length=limits.MAX_ROW_ERRORS,
        description="The rows not created (only with partial=true), in row order; a row's unknown "
        "fields are refused at the first.",
    )
    errors_omitted: ErrorsOmitted = 0


class QRCodeList(Answer):
    items: list[QRCode]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last one.")


class FieldChange(Answer):
    old: Any
    new: Any


if TYPE_CHECKING:
    HistoryAction = str
else:
    HistoryAction = Literal[limits.HISTORY_ACTIONS]


class Change(Answer):
    id: int
    changed_at: datetime
    action: HistoryAction
    changes: dict[str, FieldChange] = Field(description="Each changed field with its old and new value.")
    client_address: str | None
    request_id: str | None
    token_name: str | None


class History(Answer):
    items: list[Change]
    next_cursor: str | None


class AuditEntry(Answer):
    id: int
    at: datetime
    action: str = Field(description="What was done: code.create, token.revoke, sign-in, ...")
    target: str | None = Field(description="A code's id or a token's name.")
    outcome: str = Field(description="ok, or refused (a failed sign-in).")
    actor: str | None = Field(description="The token's name, or the person's e-mail (else subject).")
    actor_kind: str = Field(description="network (the allowlist alone), token or person.")
    subject: str | None = Field(description="The identity provider's subject, for a person.")
    email: str | None
    role: str | None
    client_address: str | None
    request_id: str | None
    detail: dict[str, Any] = Field(description="What was done, in names and values; never a secret.")


class AuditPage(Answer):
    items: list[AuditEntry]
    next_cursor: str | None


class Bucket(Answer):
    start: datetime = Field(description="The bucket's first instant, with the zone's offset.")
    total: int = Field(ge=0)
    people: int = Field(ge=0)
    bots: int = Field(ge=0)
    unique: int = Field(ge=0, description="Distinct visitors among people (see the operation's description).")


class TopEntry(Answer):
    value: str
    count: int = Field(ge=0)


class TopLists(Answer):
    """The ten most frequent values of each, people only (bots under bot_reasons). "Other": the
    values past a day's cap of distinct values kept, and user agents not parsed yet."""

    countries: list[TopEntry] | None = Field(description="null: no GEOIP_DATABASE is configured.")
    referrers: list[TopEntry] = Field(description="Host names of the referring pages.")
    devices: list[TopEntry]
    os: list[TopEntry]
    browsers: list[TopEntry]
    bot_reasons: list[TopEntry]
    rules: list[TopEntry] = Field(
        description='What sent the code\'s scans, bots too, each listed: "rule N" (from 1), "variant x" '
        '(a, b, ... of the split), "default" (neither); empty for a code without rules, and for every code.'
    )


class RuleSeries(Answer):
    value: str = Field(description='"rule N", "variant x" or "default", as in top.rules.')
    counts: list[int] = Field(description="Scans per bucket of the series, in its order.")


class TagTotals(Answer):
    tag: str
    total: int = Field(ge=0)
    people: int = Field(ge=0)
    bots: int = Field(ge=0)
    codes: int = Field(ge=0, description="Codes with this tag scanned in the range.")


class ScanReport(Answer):
    """A code's scans (or every code's) over a range: totals, a series, top lists."""

    code_id: str | None = Field(description="null: every code together.")
    total: int = Field(ge=0, description="Every scan recorded in the range.")
    people: int = Field(ge=0)
    bots: int = Field(ge=0, description="Crawlers, link previews, monitors, HTTP libraries, mail scanners.")
    unique: int = Field(
        ge=0,
        description="Unique visitors: the daily counts of the UTC days whose noon is in the range, summed.",
    )
    first_scan_at: datetime | None = Field(description="The first scan ever recorded (any range).")
    last_scan_at: datetime | None
    from_: datetime = Field(
        serialization_alias="from", description="The range's start, with the zone's offset."
    )
    to: datetime = Field(description="The range's end (exclusive).")
    interval: Interval
    tz: str
    series: list[Bucket]
    top: TopLists
    raw_since: datetime | None = Field(
        description="Raw scans are kept from this instant (older ones went after SCAN_RETENTION_DAYS): "
        "hourly unique visitors, the top lists and the CSV cover no earlier. null: every raw scan is kept."
    )
    by_tag: list[TagTotals] | None = Field(
        default=None, description="Every code together only: totals per tag."
    )
    by_rule: list[RuleSeries] | None = Field(
        default=None,
        description="With by=rule, one code only: the scans each of its redirect rules sent, per bucket "
        "(from raw scans: none before raw_since).",
    )


class Health(Answer):
    status: Literal["ok", "degraded", "unavailable"]
    service: str
    database: str


class Liveness(Answer):
    status: Literal["ok"]


class ErrorBody(Answer):
    code: str = Field(description="Machine-readable: invalid_field, not_found, conflict, ...")
    message: str
    details: dict[str, Any] | None = Field(default=None, description='For invalid_field: {"field": name}.')


class Error(Answer):
    error: ErrorBody


class RowsRefused(Answer):
    """A bulk request with bad rows: nothing created (the error, and every row's problem)."""

    error: ErrorBody
    errors: list[RowProblem] = Field(
        default=[],
        max_length=limits.MAX_ROW_ERRORS,
        description="In row order; a row's unknown fields are refused at the first (absent for a bad "
        "parameter or header).",
    )
    errors_omitted: ErrorsOmitted = 0
