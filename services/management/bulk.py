"""Bulk creation: up to 10,000 codes from a JSON array or a CSV upload in one request.

Every row is read and validated before anything is written, and the problems are reported at once
(``{"row": n, "field": f, "message": m}``, rows numbered from 1 as a spreadsheet shows them, the
header not counted): the first MAX_ERRORS in row order, and how many more there were. A row's
unknown names are refused at the first (a row of 20,000 of them is one error, not 20,000), and a
JSON object keeps only the names a row can have and that first unknown one as it is read, so that
such a row costs no more memory than a good one. All or nothing by default; with ``partial`` the
valid rows are created and the others reported. The rows go in with ``COPY`` (see
:func:`services.management.codes.create_codes`).

A CSV has a header of the fields a code is created with (:class:`NewQRCode`'s: ``target_url``
required, the others optional, in any order; a ``kind`` column with a ``content`` column of JSON
objects makes codes of other kinds); a list (``tags``) is separated by ``|``; a yes-or-no
field (``enabled``, ``forward_query``) takes true/false, yes/no or 1/0; ``rules``, ``split`` and
``design`` take their JSON; an empty cell means the field's default. UTF-8, with or without a BOM; Windows or
Unix line endings; quoted cells may hold commas and line breaks. An empty line is skipped (it still
counts as a row, as a spreadsheet shows it).

An ``Idempotency-Key`` keeps the answer for 24 hours: a retry gets the first answer instead of
creating the codes twice, even while the first request is still running (its row in
``idempotency_keys`` is written in the request's transaction, so a second request with the key
waits on the unique index until the first commits, then reads its answer).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.management import contents, limits
from services.management.errors import InvalidValue, Refusals, RowError, TryAgain, Unreadable
from services.management.inputs import findings, parse_json, shown
from services.management.limits import IDEMPOTENCY_HOURS, MAX_ROW_ERRORS
from services.management.schemas import NewQRCode, choices_of, kind_of
from services.management.schemas.fields import TAG_SEPARATOR, object_names

MAX_ROWS = 10_000
MAX_KEY = 255
# A CSV's columns: the fields a code is created with, named as the API names them, in any order.
COLUMNS = tuple(NewQRCode.model_fields)
_KINDS = {name: kind_of(info) for name, info in NewQRCode.model_fields.items()}
# Fields of a few numbers (redirect_status): their cells are read as numbers.
_NUMBERS = {
    name
    for name, info in NewQRCode.model_fields.items()
    if _KINDS[name] == "choice" and all(type(choice) is int for choice in choices_of(info))
}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAX_ERRORS = MAX_ROW_ERRORS
_FIELDS = frozenset(NewQRCode.model_fields)
# The names a JSON row's objects keep as they are read: a row's fields and its content's.
_KEPT = _FIELDS | contents.FIELD_NAMES
# The most values a content holds: its object, its fields, a contact's phones and e-mails.
_CONTENT_VALUES = (
    1 + max(len(model.model_fields) for model in contents.MODELS.values()) + 2 * contents.MAX_ITEMS
)
# An object field (a design) holds a value per name of its own.
_NESTED = sum(len(object_names(info)) for info in NewQRCode.model_fields.values())
# The values of a JSON body of MAX_ROWS rows, each with every field but its redirect rules, all its
# tags, the largest content, every design option and one unknown name. Parsed JSON takes up to 25
# times the bytes of its text (``[[],[],...]``: a list object for every three bytes), so a body with
# more values is refused before it is parsed. Rules bring values of their own (a dozen for a short
# rule): a body of many codes with rules may need to be sent in parts.
_SIMPLE = sum(kind != "json" for kind in _KINDS.values())
MAX_VALUES = MAX_ROWS * (1 + _SIMPLE + 1 + limits.MAX_TAGS + _CONTENT_VALUES + _NESTED) + 1
# Text up to and including one comma or opening bracket outside strings. Every part is atomic or
# possessive, so that no match backtracks; a lone quote (the JSON is broken: json.loads says so
# later) counts as any other character.
_UP_TO_STRUCTURE = rb'(?>"[^"\\]*+(?:\\.[^"\\]*+)*+"|[^",\[{]++|")*+[,\[{]'
_BLOCK = 1000


@dataclass(frozen=True)
class Parsed:
    """The rows that validated, with their row numbers, and the errors of the others."""

    rows: list[tuple[int, NewQRCode]]
    refused: Refusals


def fingerprint(content_type: str, partial: bool, body: bytes, caller: str = "") -> bytes:
    """What a retry must repeat exactly to get the first answer, the caller included: another
    caller reusing a key (a token of other tags) gets a refusal, never the first caller's answer."""
    digest = hashlib.sha256(f"{caller}\n{content_type}\n{partial}\n".encode())
    digest.update(body)  # not prefix + body: a second copy of a 16 MiB body
    return digest.digest()


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY or not value.isascii() or not value.isprintable():
        raise InvalidValue("Idempotency-Key", f"must be 1 to {MAX_KEY} printable ASCII characters")
    return value


def parse(content_type: str, body: bytes, *, context: dict[str, Any]) -> Parsed:
    """The body's rows, validated; :class:`Unreadable` for a body that is no array or CSV,
    :class:`InvalidValue` for a bad header or too many rows or values."""
    rows = _json_rows(body) if content_type == "application/json" else _csv_rows(body)
    valid: list[tuple[int, NewQRCode]] = []
    refused = Refusals()
    for number, row in rows:
        if isinstance(row, RowError):
            refused.refuse(number, [(row.field, row.message)])
        elif not isinstance(row, dict):
            refused.refuse(number, [("row", "must be a JSON object")])
        else:
            checked = _validated(row, context)
            if isinstance(checked, NewQRCode):
                valid.append((number, checked))
            else:
                refused.refuse(number, checked)
    return Parsed(valid, refused)


def _validated(row: dict[str, Any], context: dict[str, Any]) -> NewQRCode | list[tuple[str, str]]:
    """The row as a code, or what is wrong with it in the API's words: its first unknown name (the
    likeliest mistake, a misspelt field; any others are not looked at), then its fields' problems."""
    problems = []
    unknown = next((name for name in row if name not in _FIELDS), None)
    if unknown is not None:
        name = shown(unknown)
        problems.append((name, NewQRCode.refused.get(name, NewQRCode.unknown)))
        row = {key: value for key, value in row.items() if key in _FIELDS}
    try:
        code = NewQRCode.model_validate(row, context=context)
    except ValidationError as exc:
        return [*problems, *findings(exc, NewQRCode, unknown=NewQRCode.unknown)]
    return problems or code


def _row_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a row needs it, made as it is read: the names a row can have, and the first
    other one (all that its refusal names); a row of 20,000 unknown names keeps one of them. (An
    object inside a row is no field's value whatever its names, so trimming it changes no answer.)"""
    kept: dict[str, Any] = {}
    unknown = None
    for name, value in pairs:
        if name in _KEPT or name == unknown:
            kept[name] = value
        elif unknown is None:
            unknown = name
            kept[name] = value
    return kept


def _json_rows(body: bytes) -> list[tuple[int, Any]]:
    _check_values(body)
    value = parse_json(body, object_pairs_hook=_row_object)
    if not isinstance(value, list):
        raise Unreadable("the body must be a JSON array of codes, or a CSV (content-type text/csv)")
    _check_count(len(value))
    return list(enumerate(value, start=1))


def _csv_rows(body: bytes) -> list[tuple[int, dict[str, Any] | RowError]]:
    try:
        content = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise Unreadable(f"the CSV is not UTF-8: byte 0x{body[exc.start]:02x} on line {line}") from None
    if "\x00" in content:
        raise Unreadable("the CSV holds a NUL character")
    records = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = next(records, None)
        if header is None or not any(cell.strip() for cell in header):
            raise Unreadable("the CSV is empty: it needs a header line naming its columns")
        columns = _header(header)
        rows: list[tuple[int, dict[str, Any] | RowError]] = []
        for number, record in enumerate(records, start=1):
            if not record or not any(cell.strip() for cell in record):
                continue  # an empty line: skipped, still numbered
            _check_count(len(rows) + 1)
            rows.append((number, _csv_row(number, columns, record)))
    except csv.Error as exc:
        raise Unreadable(f"the CSV cannot be read on line {records.line_num}: {exc}") from None
    return rows


def _header(header: list[str]) -> list[str]:
    columns = [cell.strip().lower() for cell in header]
    for column in columns:
        if column not in COLUMNS:
            raise InvalidValue(
                shown(column) if column else "header", f"is not a column (known: {', '.join(COLUMNS)})"
            )
        if columns.count(column) > 1:
            raise InvalidValue(column, "is a column twice in the header")
    if "target_url" not in columns and "kind" not in columns:
        raise InvalidValue("target_url", "the CSV needs a target_url column (or a kind and a content column)")
    return columns


def _csv_row(number: int, columns: list[str], record: list[str]) -> dict[str, Any] | RowError:
    if len(record) > len(columns):
        return RowError(number, "row", f"has {len(record)} cells; the header names {len(columns)} columns")
    row: dict[str, Any] = {}
    for column, cell in zip(columns, record, strict=False):
        if cell == "":
            continue  # the field's default
        if column == "content":
            content = _content_cell(cell)
            if isinstance(content, str):
                return RowError(number, "content", content)
            row[column] = content
            continue
        value = _cell(column, cell)
        if value is _NOT_JSON:
            shape = "[] or [{...}]" if _KINDS[column] == "json" else "{...}"
            return RowError(number, column, f"must be JSON, such as {shape}")
        row[column] = value
    return row


_NOT_JSON = object()  # a JSON cell that does not parse


def _content_cell(cell: str) -> dict[str, Any] | str:
    """A ``content`` cell's JSON object, or why it is none (the row's refusal). Parsed as a body is
    (no NaN, no lone surrogate, a nesting too deep for the parser refused), then held to the depth
    of a content: an object whose values are a text, a number, a yes or no, or a list of texts."""
    try:
        value = parse_json(cell.encode())
    except Unreadable as exc:
        if "recursion" in str(exc):
            return "is not valid JSON: it is nested too deeply"
        return str(exc).removeprefix("the body ")  # "is not valid JSON: ..." and its place
    if not isinstance(value, dict):
        return "must be a JSON object"
    for item in value.values():
        if isinstance(item, dict) or (
            isinstance(item, list) and any(isinstance(element, (dict, list)) for element in item)
        ):
            return (
                "is nested too deeply (a content's values are texts, numbers, yes or no, or lists of texts)"
            )
    return value


def _cell(column: str, cell: str) -> Any:
    """A CSV cell as the JSON value the field takes (left as text when it is none: the model says
    why): a list's items separated by ``|``, a number, a yes or no."""
    kind = _KINDS[column]
    if kind in ("json", "object"):  # rules, split, a design
        try:
            return json.loads(cell)
        except (ValueError, RecursionError):  # RecursionError: nested past what the parser takes
            return _NOT_JSON
    if kind == "list":
        return [item.strip() for item in cell.split(TAG_SEPARATOR) if item.strip()]
    if column in _NUMBERS:
        digits = cell.strip()
        return int(digits) if digits.isascii() and digits.isdigit() and len(digits) < 5 else cell
    if kind == "flag":
        return _BOOLEANS.get(cell.strip().lower(), cell)
    return cell


def _check_values(body: bytes) -> None:
    """:class:`InvalidValue` for a JSON body with more than MAX_VALUES values, before it is parsed.
    Each value but the first in an array or object follows a comma, and each array or object opens
    with a bracket: the commas and opening brackets outside strings are at least half the values and
    at most all of them. They are counted by the regular expression engine a thousand at a time, in
    place."""
    blocks, rest = divmod(MAX_VALUES + 1, _BLOCK)
    position = 0
    for count in (_BLOCK,) * blocks + ((rest,) if rest else ()):
        found = _structure(count).match(body, position)
        if found is None:
            return
        position = found.end()
    raise InvalidValue(
        "body", f"must hold at most {MAX_VALUES:,} JSON values (what {MAX_ROWS:,} codes have); split it"
    )


@functools.cache
def _structure(count: int) -> re.Pattern[bytes]:
    """Text holding ``count`` commas and opening brackets outside strings, up to the last of them."""
    return re.compile(rb"(?>(?:%s){%d})" % (_UP_TO_STRUCTURE, count), re.DOTALL)


def _check_count(count: int) -> None:
    if count > MAX_ROWS:
        raise InvalidValue("body", f"must hold at most {MAX_ROWS:,} rows; split it")


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
    waits while another request holding it runs. :class:`InvalidValue` if the key came with
    another request."""
    await conn.execute(text(EXPIRE_ONE), {"key": key, "hours": IDEMPOTENCY_HOURS})
    if (await conn.execute(text(CLAIM), {"key": key, "fingerprint": print_})).first() is not None:
        return None
    stored = (await conn.execute(text(STORED), {"key": key})).one()
    if bytes(stored.fingerprint) != print_:
        raise InvalidValue(
            "Idempotency-Key", f"was used for a different request in the last {IDEMPOTENCY_HOURS} hours"
        )
    if stored.status is None:  # cannot be seen (it is answered in the transaction that claims it)
        raise TryAgain("the first request with this Idempotency-Key has not finished; retry", retry_after=1)
    return int(stored.status), bytes(stored.body)


async def remember(conn: AsyncConnection, key: str, status: int, body: bytes) -> None:
    await conn.execute(text(ANSWERED), {"key": key, "status": status, "body": body})
