"""Bulk creation: up to 10,000 codes from a JSON array or a CSV upload in one request.

Every row is read and validated before anything is written, and every problem is reported at once
(``{"row": n, "field": f, "message": m}``, rows numbered from 1 as a spreadsheet shows them, the
header not counted). All or nothing by default; with ``partial`` the valid rows are created and the
others reported. The rows go in with ``COPY`` (see :func:`services.management.codes.create_codes`).

A CSV has a header of the resource's field names (``target_url`` required, the others optional, in
any order); ``tags`` are separated by ``|``; ``enabled`` and ``forward_query`` take true/false,
yes/no or 1/0; an empty cell means the field's default. UTF-8, with or without a BOM; Windows or
Unix line endings; quoted cells may hold commas and line breaks. An empty line is skipped (it still
counts as a row, as a spreadsheet shows it).

An ``Idempotency-Key`` keeps the answer for 24 hours: a retry gets the first answer instead of
creating the codes twice, even while the first request is still running (its row in
``idempotency_keys`` is written in the request's transaction, so a second request with the key
waits on the unique index until the first commits, then reads its answer).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management.requests import findings, parse_json, shown
from services.management.schemas import NewQRCode
from shared.errors import BadRequest, InvalidField, ServiceError, Unavailable

MAX_ROWS = 10_000
MAX_KEY = 255
IDEMPOTENCY_HOURS = 24
COLUMNS = (
    "target_url",
    "slug",
    "title",
    "tags",
    "redirect_status",
    "expires_at",
    "enabled",
    "fallback_url",
    "forward_query",
)
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAX_ERRORS = 1000  # reported; a file with more has a systematic problem the first thousand show


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


class RowsRefused(ServiceError):
    """Rows with errors, nothing created: 422 with every error (the API's error shape, and the list
    under ``errors`` beside it)."""

    status, code = 422, "invalid_rows"

    def __init__(self, errors: list[RowError]) -> None:
        rows = len({e.row for e in errors})
        super().__init__(f"{rows} row{'s' if rows != 1 else ''} cannot be created; nothing was created")
        self.errors = errors

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "errors": [e.to_dict() for e in self.errors[:MAX_ERRORS]]}


@dataclass(frozen=True)
class Parsed:
    """The rows that validated, with their row numbers, and the errors of the others."""

    rows: list[tuple[int, NewQRCode]]
    errors: list[RowError]


def fingerprint(content_type: str, partial: bool, body: bytes) -> bytes:
    """What a retry must repeat exactly to get the first answer."""
    return hashlib.sha256(f"{content_type}\n{partial}\n".encode() + body).digest()


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY or not value.isascii() or not value.isprintable():
        raise InvalidField("Idempotency-Key", f"must be 1 to {MAX_KEY} printable ASCII characters")
    return value


def parse(content_type: str, body: bytes, *, context: dict[str, Any]) -> Parsed:
    """The body's rows, validated; 400 for a body that is no array or CSV, 422 for a bad header."""
    rows = _json_rows(body) if content_type == "application/json" else _csv_rows(body)
    valid, errors = [], []
    for number, row in rows:
        if isinstance(row, RowError):
            errors.append(row)
            continue
        if not isinstance(row, dict):
            errors.append(RowError(number, "row", "must be a JSON object"))
            continue
        try:
            valid.append((number, NewQRCode.model_validate(row, context=context)))
        except ValidationError as exc:
            errors.extend(
                RowError(number, f, m) for f, m in findings(exc, NewQRCode, unknown=NewQRCode.unknown)
            )
    return Parsed(valid, errors)


def _json_rows(body: bytes) -> list[tuple[int, Any]]:
    value = parse_json(body)
    if not isinstance(value, list):
        raise BadRequest("the body must be a JSON array of codes, or a CSV (content-type text/csv)")
    _check_count(len(value))
    return list(enumerate(value, start=1))


def _csv_rows(body: bytes) -> list[tuple[int, dict[str, Any] | RowError]]:
    try:
        content = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise BadRequest(f"the CSV is not UTF-8: byte 0x{body[exc.start]:02x} on line {line}") from None
    if "\x00" in content:
        raise BadRequest("the CSV holds a NUL character")
    records = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(records, None)
        if header is None or not any(cell.strip() for cell in header):
            raise BadRequest("the CSV is empty: it needs a header line naming its columns")
        columns = _header(header)
        rows: list[tuple[int, dict[str, Any] | RowError]] = []
        for number, record in enumerate(records, start=1):
            if not record or not any(cell.strip() for cell in record):
                continue  # an empty line: skipped, still numbered
            _check_count(len(rows) + 1)
            rows.append((number, _csv_row(number, columns, record)))
    except csv.Error as exc:
        raise BadRequest(f"the CSV cannot be read on line {records.line_num}: {exc}") from None
    return rows


def _header(header: list[str]) -> list[str]:
    columns = [cell.strip().lower() for cell in header]
    for column in columns:
        if column not in COLUMNS:
            raise InvalidField(
                shown(column) if column else "header", f"is not a column (known: {', '.join(COLUMNS)})"
            )
        if columns.count(column) > 1:
            raise InvalidField(column, "is a column twice in the header")
    if "target_url" not in columns:
        raise InvalidField("target_url", "the CSV needs a target_url column")
    return columns


def _csv_row(number: int, columns: list[str], record: list[str]) -> dict[str, Any] | RowError:
    if len(record) > len(columns):
        return RowError(number, "row", f"has {len(record)} cells; the header names {len(columns)} columns")
    row: dict[str, Any] = {}
    for column, cell in zip(columns, record, strict=False):
        if cell == "":
            continue  # the field's default
        row[column] = _cell(column, cell)
    return row


def _cell(column: str, cell: str) -> Any:
    """A CSV cell as the JSON value the field takes (left as text when it is none: the model says why)."""
    if column == "tags":
        return [tag.strip() for tag in cell.split("|") if tag.strip()]
    if column == "redirect_status":
        digits = cell.strip()
        return int(digits) if digits.isascii() and digits.isdigit() and len(digits) < 5 else cell
    if column in ("enabled", "forward_query"):
        return _BOOLEANS.get(cell.strip().lower(), cell)
    return cell


def _check_count(count: int) -> None:
    if count > MAX_ROWS:
        raise InvalidField("body", f"must hold at most {MAX_ROWS:,} rows; split it")


# -- idempotency ------------------------------------------------------------------------------------

CLAIM = """
INSERT INTO idempotency_keys (key, fingerprint) VALUES (:key, :fingerprint)
ON CONFLICT (key) DO NOTHING
RETURNING key
"""
EXPIRE_ONE = (
    "DELETE FROM idempotency_keys WHERE key = :key AND created_at < now() - make_interval(hours => :hours)"
)
STORED = "SELECT fingerprint, status, body FROM idempotency_keys WHERE key = :key"
ANSWERED = "UPDATE idempotency_keys SET status = :status, body = :body WHERE key = :key"


async def claim(conn: AsyncConnection, key: str, print_: bytes) -> tuple[int, bytes] | None:
    """Take ``key`` for this request (``None``), or the answer a request under it already gave;
    waits while another request holding it runs. 422 if the key came with another request."""
    await conn.execute(text(EXPIRE_ONE), {"key": key, "hours": IDEMPOTENCY_HOURS})
    if (await conn.execute(text(CLAIM), {"key": key, "fingerprint": print_})).first() is not None:
        return None
    stored = (await conn.execute(text(STORED), {"key": key})).one()
    if bytes(stored.fingerprint) != print_:
        raise InvalidField(
            "Idempotency-Key", f"was used for a different request in the last {IDEMPOTENCY_HOURS} hours"
        )
    if stored.status is None:  # cannot be seen (it is answered in the transaction that claims it)
        raise Unavailable(
            "the first request with this Idempotency-Key has not finished; retry", retry_after=1
        )
    return int(stored.status), bytes(stored.body)


async def remember(conn: AsyncConnection, key: str, status: int, body: bytes) -> None:
    await conn.execute(text(ANSWERED), {"key": key, "status": status, "body": body})
