"""Client input for codes: every field checked, every refusal naming the field.

Unknown fields are refused too: a script that misspells ``target_url`` should hear about it, not
create a code that points nowhere it meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.management.models import REDIRECT_STATUSES
from shared.errors import InvalidField
from shared.ids import slug_problem
from shared.urls import has_control_characters, validate_target_url

MAX_TITLE = 200
MAX_TAGS = 20
MAX_TAG = 40


@dataclass(frozen=True)
class NewCode:
    target_url: str
    slug: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()
    redirect_status: int = 302
    enabled: bool = True
    expires_at: datetime | None = None


def parse_new_code(body: Mapping[str, Any], *, own_hosts: frozenset[str]) -> NewCode:
    known = {"target_url", "slug", "title", "tags", "redirect_status", "enabled", "expires_at"}
    for name in body:
        if name not in known:
            shown = name if name.isidentifier() and len(name) <= 40 else ascii(name[:40])
            raise InvalidField(shown, "is not a field of a QR code")
    if "target_url" not in body:
        raise InvalidField("target_url", "is required")
    return NewCode(
        target_url=validate_target_url(body["target_url"], own=own_hosts),
        slug=parse_slug(body.get("slug")),
        title=parse_title(body.get("title")),
        tags=parse_tags(body.get("tags", [])),
        redirect_status=parse_redirect_status(body.get("redirect_status", 302)),
        enabled=parse_bool("enabled", body.get("enabled", True)),
        expires_at=parse_timestamp("expires_at", body.get("expires_at")),
    )


def parse_slug(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("slug", "must be a string")
    problem = slug_problem(value)
    if problem is not None:
        raise InvalidField("slug", problem)
    return value


def parse_title(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField("title", "must be a string")
    if has_control_characters(value):
        raise InvalidField("title", "must not contain control characters")
    value = value.strip()
    if len(value) > MAX_TITLE:
        raise InvalidField("title", f"must be at most {MAX_TITLE} characters")
    return value or None


def parse_tags(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidField("tags", "must be a list of strings")
    tags: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise InvalidField("tags", "must be a list of strings")
        tag = item.strip()
        if not tag or len(tag) > MAX_TAG or has_control_characters(tag):
            raise InvalidField("tags", f"each tag must be 1 to {MAX_TAG} printable characters")
        if tag not in tags:
            tags.append(tag)
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
