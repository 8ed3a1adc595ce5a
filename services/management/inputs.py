"""Reading what a client sent: the body (bounded, of an accepted type, JSON that Python and
PostgreSQL can hold) and the query string (every parameter known and given once), validated by the
models of :mod:`services.management.schemas`; every refusal in the API's error shape, naming the
field or parameter."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import ClientDisconnect, Request

from services.management.errors import Unreadable
from services.management.schemas import PATTERN_REASONS, RequestBody
from services.management.schemas.rules import NESTED_FIELDS, field_path
from shared.errors import BadRequest, InvalidField, PayloadTooLarge, UnsupportedMediaType

# A body past its limit is still read (and dropped) up to this many bytes, so that its 413 arrives.
DRAIN_MAX = 64 * 1024 * 1024
# An escape of a UTF-16 surrogate (\ud800-\udfff): the only way JSON text can hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

M = TypeVar("M", bound=BaseModel)
B = TypeVar("B", bound=RequestBody)

# pydantic's error types, in the API's words (with pydantic's context filled in).
_REASONS = {
    "missing": "is required",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "list_type": "must be a list",
    "literal_error": "must be one of {expected}",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "too_long": "must have at most {max_length} items",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
}


def shown(name: object) -> str:
    """A client's field name, safe and short enough to echo."""
    text = str(name)
    return text if text.isidentifier() and len(text) <= 40 else ascii(text[:40])


def findings(error: ValidationError, model: type[BaseModel], *, unknown: str) -> list[tuple[str, str]]:
    """Each of pydantic's findings as (field, reason) in the API's words: unknown names first (a
    misspelt field is the likeliest mistake), then the rest in the order of the fields."""
    errors = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    found = []
    for each in errors:
        location = each["loc"]
        if location and location[0] in NESTED_FIELDS:  # redirect rules: the path inside them
            found.append(_nested(each, location))
            continue
        field = shown(location[0]) if location else "body"
        if each["type"] == "content_field":  # a code's content names its own field (contents.py)
            found.append((str((each.get("ctx") or {})["field"]), _reason(each)))
            continue
        inner = [part for part in location[1:] if isinstance(part, str)]  # names inside an object field
        if each["type"] == "extra_forbidden":
            refused: Mapping[str, str] = getattr(model, "refused", {})
            found.append((field, f"{inner[-1]} is not known here" if inner else refused.get(field, unknown)))
            continue
        reason = _reason(each)
        if inner:
            reason = f"{'.'.join(inner)} {reason}"
        items = [str(part + 1) for part in location[1:] if isinstance(part, int)]
        if items:
            reason = f"item {items[0]} {reason}"
        found.append((field, reason))
    return found


def _nested(error: ErrorDetails, location: tuple[int | str, ...]) -> tuple[str, str]:
    """A finding inside ``rules`` or ``split``: its path, and a reason naming what lies beyond the
    path (an item of a condition's list, a query parameter) as the other fields' findings do."""
    path, beyond = field_path(location)
    if error["type"] == "extra_forbidden":
        return path, "is not known here"
    reason = _reason(error)
    if beyond and isinstance(beyond[0], int):
        return path, f"item {beyond[0] + 1} {reason}"
    if beyond:
        return path, f"parameter {shown(beyond[0])} {reason}"
    return path, reason


def refusal(error: ValidationError, model: type[BaseModel], *, unknown: str) -> InvalidField:
    """The first of pydantic's findings as the API's 422."""
    field, reason = findings(error, model, unknown=unknown)[0]
    return InvalidField(field, reason)


def _reason(error: ErrorDetails) -> str:
    context = error.get("ctx") or {}
    if error["type"] == "value_error":
        return str(context.get("error", error["msg"]))
    if error["type"] == "string_pattern_mismatch":
        return PATTERN_REASONS.get(str(context.get("pattern")), "has the wrong form")
    template = _REASONS.get(error["type"])
    if template is None:
        return error["msg"][:200]
    return template.format(**context)


# -- bodies -----------------------------------------------------------------------------------------


async def read_body(request: Request, *, accepted: tuple[str, ...], max_bytes: int) -> tuple[str, bytes]:
    """The request's content type (one of ``accepted``) and body, refused early when too large."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in accepted:
        raise UnsupportedMediaType(f"send the body as {' or '.join(accepted)}")
    too_large = PayloadTooLarge(f"the body must be at most {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_MAX:
        raise too_large  # not worth reading: the client may see the connection close first
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                # Read the rest, and drop it, before answering: an answer while the body is
                # still arriving has the connection reset under the client (or the edge, which
                # then has only a 502 to give), and the 413 lost.
                if size > DRAIN_MAX:
                    raise too_large
                chunks.clear()
                continue
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to read the answer; the access line still shows what happened.
        raise BadRequest("the client went away before sending the whole body") from None
    if size > max_bytes:
        raise too_large
    return content_type, b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """JSON as Python and PostgreSQL can hold it: no NaN or Infinity, no lone surrogates
    (:class:`Unreadable` otherwise).
    ``object_pairs_hook`` is :func:`json.loads`'s: each object's names and values, in order."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=object_pairs_hook)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Unreadable(f"the body is not valid JSON: {exc}"[:300]) from None
    # JSON may escape lone surrogates (\ud800), which no text column or answer can hold. Only an
    # escape makes one (valid UTF-8 holds none), so the whole value is encoded again, a copy of
    # the body or two, only when the text has such an escape (a pair, as for an emoji, is fine).
    if _SURROGATE_ESCAPE.search(text) is None:
        return value
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Unreadable("the body contains an unpaired UTF-16 surrogate escape") from None
    return value


async def read_json(
    request: Request,
    model: type[B],
    *,
    accepted: tuple[str, ...] = ("application/json",),
    max_bytes: int,
    context: Mapping[str, Any],
) -> B:
    """The body, a JSON object of one of the ``accepted`` media types, as ``model``; 400 when it is
    no JSON object, 422 naming the field."""
    _, raw = await read_body(request, accepted=accepted, max_bytes=max_bytes)
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return validate(model, body, context=context, unknown=model.unknown)


def validate(model: type[M], value: object, *, context: Mapping[str, Any], unknown: str) -> M:
    """``value`` as ``model``, or the API's 422 for its first problem: an unknown name first, found
    before pydantic would list every one of them (a body of 20,000 unknown names is 20,000 errors)."""
    if isinstance(value, dict):
        names = {field.alias or name for name, field in model.model_fields.items()}
        extra = next((name for name in value if name not in names), None)
        if extra is not None:
            field = shown(extra)
            refused: Mapping[str, str] = getattr(model, "refused", {})
            raise InvalidField(field, refused.get(field, unknown))
    try:
        return model.model_validate(value, context=dict(context))
    except ValidationError as exc:
        raise refusal(exc, model, unknown=unknown) from None


# -- query strings ----------------------------------------------------------------------------------


def read_query(request: Request, model: type[M]) -> M:
    """The query string as ``model``: every parameter one it has, each given once."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    values: dict[str, str] = {}
    for name in request.query_params:
        given = request.query_params.getlist(name)
        if name not in names:
            raise InvalidField(shown(name), f"is not a parameter here ({', '.join(names) or 'none are'})")
        if len(given) != 1:
            raise InvalidField(name, "must be given once")
        values[name] = given[0]
    return validate(model, values, context={}, unknown="is not a parameter here")
