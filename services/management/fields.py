"""Client input for codes: every field checked, every refusal naming the field.

Unknown fields are refused too: a script that misspells ``target_url`` should hear about it, not
create a code that points nowhere it meant. Values are stored as given once accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from services.management.models import REDIRECT_STATUSES
from shared.errors import InvalidField
from shared.ids import slug_problem
from shared.urls import has_control_characters, validate_target_url

MAX_TITLE = 200
MAX_TAGS = 20
MAX_TAG = 40

# Fields a client may set on create and change with PATCH (the id is chosen once, as a slug).
WRITABLE = (
    "target_url",
    "title",
    "tags",
    "redirect_status",
    "enabled",
    "expires_at",
    "fallback_url",
    "forward_query",
)
READ_ONLY = ("id", "short_url", "created_at", "updated_at", "scan_count", "target_host_ascii", "slug")


@dataclass(frozen=True)
class NewCode:
    target_url: str
    slug: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()
    redirect_status: int = 302
    enabled: bool = True
    expires_at: datetime | None = None
    fallback_url: str | None = None
    forward_query: bool = False


def _shown(name: str) -> str:
    """A client's field name, safe and short enough to echo."""
    return name if name.isidentifier() and len(name) <= 40 else ascii(name[:40])


def _check_names(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for name in body:
        if name in allowed:
            continue
        if name in READ_ONLY or name in WRITABLE:
            raise InvalidField(name, "cannot be changed" if name != "slug" else "is chosen once, at creation")
        raise InvalidField(_shown(name), "is not a field of a QR code")


def parse_new_code(body: Mapping[str, Any], *, own_hosts: frozenset[str]) -> NewCode:
    _check_names(body, (*WRITABLE, "slug"))
    if "target_url" not in body:
        raise InvalidField("target_url", "is required")
    values = _parse_values({k: v for k, v in body.items() if k != "slug"}, own_hosts)
    defaults = {f.name: f.default for f in fields(NewCode) if f.name in WRITABLE}
    return NewCode(slug=parse_slug(body.get("slug")), **{**defaults, **values})


def parse_changes(body: Mapping[str, Any], *, own_hosts: frozenset[str]) -> dict[str, Any]:
    """The validated values of a PATCH body."""
    _check_names(body, WRITABLE)
    return _parse_values(body, own_hosts)


def _parse_values(body: Mapping[str, Any], own_hosts: frozenset[str]) -> dict[str, Any]:
    parsers: dict[str, Callable[[object], Any]] = {
        "target_url": lambda v: validate_target_url(v, own=own_hosts),
        "title": parse_title,
        "tags": parse_tags,
        "redirect_status": parse_redirect_status,
        "enabled": lambda v: parse_bool("enabled", v),
        "expires_at": lambda v: parse_timestamp("expires_at", v),
        "fallback_url": lambda v: (
            None if v is None else validate_target_url(v, own=own_hosts, field="fallback_url")
        ),
        "forward_query": lambda v: parse_bool("forward_query", v),
    }
    return {name: parsers[name](value) for name, value in body.items()}


def parse_slug(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("slug", "must be a string")
    problem = slug_problem(value)
    if problem is not None:
        raise InvalidField("slug", problem)
    return value


def _unprintable(text: str) -> bool:
    """Control characters, or line and paragraph separators (which break lines in logs and pages)."""
    return has_control_characters(text) or "\u2028" in text or "\u2029" in text


def parse_title(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("title", "must be a string or null")
    if _unprintable(value):
        raise InvalidField("title", "must not contain control characters or line separators")
    if len(value) > MAX_TITLE:
        raise InvalidField("title", f"must be at most {MAX_TITLE} characters")
    return value


def parse_tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidField("tags", "must be a list of strings")
    tags: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidField("tags", "must be a list of strings")
        if not item.strip() or len(item) > MAX_TAG or _unprintable(item):
            raise InvalidField("tags", f"each tag must be 1 to {MAX_TAG} printable characters")
        if item not in tags:
            tags.append(item)
    if len(tags) > MAX_TAGS:
        raise InvalidField("tags", f"at most {MAX_TAGS} tags")
    return tuple(tags)


def parse_redirect_status(value: object) -> int:
    # bool is an int in Python; true must not mean 1.
    if isinstance(value, bool) or not isinstance(value, int) or value not in REDIRECT_STATUSES:
        raise InvalidField("redirect_status", "must be one of 301, 302, 307, 308")
    return value


def parse_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(field, "must be true or false")
    return value


def parse_timestamp(field: str, value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidField(field, "must be an ISO 8601 timestamp with a time zone, or null")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidField(field, "must be an ISO 8601 timestamp like 2027-01-31T18:00:00Z") from None
    if moment.tzinfo is None:
        raise InvalidField(field, "must include a time zone (Z or +01:00)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidField(field, "is out of range") from None
