"""A code's contents beyond a link: the ``content`` of each ``kind``, validated; the payload its
images encode (:mod:`shared.payloads`); and the check that the payload fits a QR code at all.

A ``url`` code (the default) encodes its short link and redirects. Every other kind is **static**:
its images encode the payload itself, and nothing about a printed one can change afterwards (its
``content`` cannot be changed either). The one exception is a ``vcard`` made with ``"dynamic":
true``: it encodes the short link, whose page offers the contact's current card, so an edit
changes what the next scanner saves.

Refusals name the field as ``content.<name>`` (``content`` itself when no one field is to blame),
through :func:`refused`: a pydantic error whose context carries the name, which the API's, the
console's and the bulk upload's readers of findings use as the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from services.management import limits
from services.management.errors import InvalidValue
from shared import payloads
from shared.urls import UrlRefused, check_target_url, has_control_characters

Kind = Literal["url", "wifi", "vcard", "event", "email", "sms", "tel", "geo", "text"]
KINDS: Final = ("url", "wifi", "vcard", "event", "email", "sms", "tel", "geo", "text")
STATIC_KINDS: Final = KINDS[1:]
# The kind a code may also make dynamic (its short link serves the current card).
DYNAMIC_KINDS: Final = ("vcard",)

# The bytes a version-40 symbol holds in byte mode, at each error correction level (ISO/IEC
# 18004, table 7): the largest payload any QR code can carry. A test checks them against qrcode.
CAPACITY_BYTES: Final = {"L": 2953, "M": 2331, "Q": 1663, "H": 1273}

# What a code's short link does: nothing to a static code, which has none that answers.
REDIRECT_FIELDS: Final = ("enabled", "expires_at", "fallback_url", "forward_query", "redirect_status")
MAX_LINE: Final = 200  # a name, a title, a subject: one line
MAX_TEXT: Final = CAPACITY_BYTES["L"]  # a note, a body: what the largest symbol could hold
MAX_ITEMS: Final = 10  # phones or e-mails of a contact
MAX_SSID_BYTES: Final = 32  # IEEE 802.11
MAX_PASSWORD: Final = 63  # WPA's passphrase
# Event years: wide enough for any real event, narrow enough that every time converts to UTC and
# prints with four digits (0001-01-01 in Tokyo would be year 0 in UTC).
MIN_EVENT_YEAR: Final = 1900
MAX_EVENT_YEAR: Final = 2200
# Names available_timezones() lists that are no IANA zone: the machine's own setting and tzdata's
# internal ones.
_NOT_ZONES: Final = frozenset({"localtime", "posixrules", "Factory"})
PHONE_PATTERN: Final = r"^\+?[0-9][0-9 ().-]{1,30}$"
EMAIL_PATTERN: Final = r'^[^@\s;,:<>"\\()\[\]]{1,64}@[^@\s;,:<>"\\()\[\]/?#]{1,190}$'


def refused(field: str, reason: str) -> PydanticCustomError:
    """A refusal of ``field`` (``content.ssid``, ``content``) for ``reason``, in the API's words."""
    return PydanticCustomError("content_field", "{reason}", {"field": field, "reason": reason})


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _one_line(value: str) -> str:
    if has_control_characters(value) or "\u2028" in value or "\u2029" in value:
        raise ValueError("must not contain control characters or line breaks")
    return value


def _lines(value: str) -> str:
    """Text of several lines: line breaks and tabs are kept (as \\n), other controls refused."""
    value = value.replace("\r\n", "\n")
    if has_control_characters(value.replace("\n", "").replace("\t", "")) or "\u2028" in value:
        raise ValueError("must not contain control characters other than line breaks and tabs")
    return value


def _ssid_octets(value: str) -> str:
    if len(value.encode()) > MAX_SSID_BYTES:
        raise ValueError(f"must be at most {MAX_SSID_BYTES} bytes in UTF-8 (a Wi-Fi network name's limit)")
    return value


def _web_url(value: str) -> str:
    try:
        return check_target_url(value)
    except UrlRefused as exc:
        raise ValueError(str(exc)) from None


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone, such as Europe/Paris") from None
    if value not in _zones() or value in _NOT_ZONES or value.startswith(("posix/", "right/")):
        raise ValueError("must be an IANA time zone, such as Europe/Paris")
    return value


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones(), {"UTC"})
    return _ZONES


Line = Annotated[
    str, Field(min_length=1, max_length=MAX_LINE), AfterValidator(_one_line), AfterValidator(_not_blank)
]
Lines = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_lines), AfterValidator(_not_blank)
]
Phone = Annotated[str, Field(pattern=PHONE_PATTERN, max_length=32)]
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]
Moment = Annotated[str, Field(min_length=10, max_length=40), AfterValidator(_one_line)]


class Content(BaseModel):
    """A kind's content: strict, and nothing unknown."""

    model_config = ConfigDict(extra="forbid", strict=True)


class WifiContent(Content):
    ssid: Annotated[
        str,
        Field(min_length=1),
        AfterValidator(_one_line),
        AfterValidator(_ssid_octets),
        AfterValidator(_not_blank),
    ]
    password: Annotated[str, Field(max_length=MAX_PASSWORD), AfterValidator(_one_line)] | None = None
    security: Literal["WPA", "WEP", "none"] = "WPA"
    hidden: bool = False

    @model_validator(mode="after")
    def _password_for_security(self) -> WifiContent:
        if self.security == "none" and self.password:
            raise refused("content.password", 'must be left out for an open network (security "none")')
        if self.security != "none" and not self.password:
            raise refused("content.password", f"is required for {self.security} security")
        if self.security == "WPA" and self.password is not None and len(self.password) < 8:
            raise refused("content.password", "must be at least 8 characters for WPA")
        return self


class VCardContent(Content):
    name: Line
    organisation: Line | None = None
    title: Line | None = None
    phones: Annotated[list[Phone], Field(max_length=MAX_ITEMS)] = []
    emails: Annotated[list[Email], Field(max_length=MAX_ITEMS)] = []
    url: Annotated[str, AfterValidator(_web_url)] | None = None
    address: Lines | None = None
    note: Lines | None = None


class EventContent(Content):
    title: Line
    start: Moment = Field(description="ISO 8601; without an offset, a wall-clock time in tz.")
    end: Moment
    tz: Annotated[str, Field(max_length=64), AfterValidator(_zone)] = "UTC"
    location: Lines | None = None
    description: Lines | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> EventContent:
        start = _event_time("start", self.start, self.tz, "2026-03-28T20:00")
        end = _event_time("end", self.end, self.tz, "2026-03-29T02:00")
        # Compared as instants: two times of one zone compare by their wall clocks in Python, so a
        # start that does not exist (read as the hour after) would seem before an end equal to it.
        if payloads.utc(end) <= payloads.utc(start):
            raise refused("content.end", "must be after start")
        return self


def _event_time(name: str, value: str, tz: str, example: str) -> datetime:
    """An event's ``start`` or ``end`` as an aware time; refused (naming ``content.<name>``) when
    it is no ISO 8601 date and time, a date alone, or out of MIN_EVENT_YEAR..MAX_EVENT_YEAR."""
    field = f"content.{name}"
    try:
        date.fromisoformat(value)
    except ValueError:
        pass
    else:
        raise refused(field, f"must be a date and time, such as {example} (all-day events are not supported)")
    try:
        moment = payloads.local_time(value, tz)
    except ValueError:
        raise refused(field, f"must be an ISO 8601 date and time, such as {example}") from None
    if not MIN_EVENT_YEAR <= moment.year <= MAX_EVENT_YEAR:
        raise refused(field, f"must be in the years {MIN_EVENT_YEAR} to {MAX_EVENT_YEAR}")
    return moment


class EmailContent(Content):
    to: Email
    subject: Line | None = None
    body: Lines | None = None


class SmsContent(Content):
    number: Phone
    text: Lines | None = None


class TelContent(Content):
    number: Phone


class GeoContent(Content):
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class TextContent(Content):
    text: Lines


MODELS: Final[dict[str, type[Content]]] = {
    "wifi": WifiContent,
    "vcard": VCardContent,
    "event": EventContent,
    "email": EmailContent,
    "sms": SmsContent,
    "tel": TelContent,
    "geo": GeoContent,
    "text": TextContent,
}
# Every name a content object may hold (the bulk upload's JSON reader keeps these).
FIELD_NAMES: Final = frozenset(name for model in MODELS.values() for name in model.model_fields)


def content_of(
    kind: str, content: object, *, dynamic: bool = False, ecc: str = limits.DEFAULT_ECC
) -> dict[str, Any] | None:
    """``content`` of a code of ``kind`` as stored (validated, every field present), ``None`` for a
    ``url`` code; a pydantic error naming ``content.<field>`` when it is refused, the payload too
    large included (at error correction ``ecc``)."""
    if dynamic and kind not in DYNAMIC_KINDS:
        raise refused("dynamic", f"only a {' or '.join(DYNAMIC_KINDS)} code can be dynamic")
    if kind == "url":
        if content is not None:
            raise refused(
                "content", 'a url code has no content: its target is target_url (choose another "kind")'
            )
        return None
    if content is None:
        raise refused("content", f"is required for a {kind} code")
    if not isinstance(content, dict):
        raise refused("content", "must be a JSON object")
    try:
        stored = MODELS[kind].model_validate(content).model_dump()
    except ValidationError as exc:
        raise _first_finding(exc) from None
    if not dynamic:
        check_fits(kind, stored, ecc)
    return stored


def _first_finding(error: ValidationError) -> PydanticCustomError:
    """pydantic's first finding about a content, as a refusal naming ``content.<field>``."""
    first = error.errors(include_url=False)[0]
    context = first.get("ctx") or {}
    if first["type"] == "content_field":
        return refused(str(context["field"]), str(context["reason"]))
    location = [str(part) for part in first["loc"] if isinstance(part, str)]
    field = "content." + location[0] if location else "content"
    if first["type"] == "extra_forbidden":
        return refused(field, "is not a field of this kind's content")
    items = [part + 1 for part in first["loc"] if isinstance(part, int)]
    reason = str(context["error"]) if first["type"] == "value_error" else first["msg"]
    if first["type"] == "string_pattern_mismatch":
        reason = (
            "is not a phone number" if "phone" in field or "number" in field else "is not an e-mail address"
        )
    if items:
        reason = f"item {items[0]} {reason}"
    return refused(field, reason[:200])


def check_fits(kind: str, content: dict[str, Any], ecc: str) -> None:
    """Refuse a payload no QR code can hold at ``ecc``, naming the field to shorten: the longest,
    when shortening it alone can make it fit, else ``content``."""
    size = len(payloads.payload(kind, content).encode())
    capacity = CAPACITY_BYTES[ecc]
    if size <= capacity:
        return
    over = size - capacity
    texts = {name: value for name, value in content.items() if isinstance(value, str)}
    longest = max(texts, key=lambda name: len(texts[name].encode()), default=None)
    field = "content"
    if longest is not None and len(texts[longest].encode()) > over:
        field = f"content.{longest}"
    raise refused(
        field,
        f"the {kind} payload is {size:,} bytes; a QR code holds at most {capacity:,} at error correction "
        f"{ecc} (shorten it by {over:,} bytes, or choose a lower error correction)",
    )


def payload(kind: str, content: dict[str, Any]) -> str:
    """What a static code's images encode."""
    return payloads.payload(kind, content)


def checked_changes(kind: str, dynamic: bool, changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` to a code of ``kind``, its content validated; :class:`InvalidValue` for a change
    the kind does not take (a static code's content and target, a url code's content)."""
    checked = dict(changes)
    if kind != "url" and "target_url" in changes:
        raise InvalidValue("target_url", f"is for url codes only; a {kind} code carries its content")
    if kind != "url" and not dynamic:
        for name in REDIRECT_FIELDS:
            if name in changes:
                raise InvalidValue(
                    name,
                    f"does nothing to a static {kind} code: its images carry the content itself, and its "
                    "short link answers nothing (delete it to stop using it; printed copies still scan)",
                )
    if "content" not in changes:
        return checked
    if kind != "url" and not dynamic:
        raise InvalidValue(
            "content",
            f"a static {kind} code's content is encoded in its printed images and cannot change; "
            "create a new code (or make a vcard dynamic=true, whose edits reach the next scanner)",
        )
    try:
        checked["content"] = content_of(kind, changes["content"], dynamic=dynamic)
    except PydanticCustomError as exc:
        context = exc.context or {}
        raise InvalidValue(str(context.get("field", "content")), str(context.get("reason", exc))) from None
    return checked


def encoded(kind: str, content: Mapping[str, Any] | None, dynamic: bool, short_url: str) -> str:
    """What a code's images encode: the short link of a url code or a dynamic contact, else the
    payload of its content."""
    if kind == "url" or dynamic or content is None:
        return short_url
    return payloads.payload(kind, content)


def encoded_by(code: Any) -> str:
    """What the images of ``code`` (an answered :class:`QRCode`) encode."""
    return encoded(code.kind, code.content, code.dynamic, code.short_url)


def check_capacity(payload: str, ecc: str) -> None:
    """:class:`InvalidValue` naming ``ecc`` for a payload no QR code holds at that error correction
    (a code's content fits the default one; a logo asks for H)."""
    size = len(payload.encode())
    if size > CAPACITY_BYTES[ecc]:
        fitting = [level for level, capacity in CAPACITY_BYTES.items() if capacity >= size]
        raise InvalidValue(
            "ecc",
            f"this code's payload is {size:,} bytes; at error correction {ecc} a QR code holds at most "
            f"{CAPACITY_BYTES[ecc]:,} (it fits at {', '.join(fitting) or 'no level'}; a logo needs H)",
        )
