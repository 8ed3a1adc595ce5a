"""The management API's shapes, declared once: every request body, query and answer as a pydantic model.

The service validates what a client sends with these models, answers through them, and the OpenAPI
document (:mod:`services.management.openapi`) is generated from them, so a bound the service
enforces is the bound the document states. The numbers themselves live in
:mod:`services.management.limits`, where qrctl reads them too.

Requests are strict, as a script's mistakes should be heard: unknown fields are refused, and nothing
is coerced (``"302"`` is not 302, ``true`` is not 1, ``302.0`` is not 302). Query strings are text
by nature; each parameter's type says exactly which text it takes (``limit=5``, not ``+5``, ``5.0``
or an Arabic-Indic five). Rules a schema cannot state (a destination's safety, printable text, the
contrast of two colours) run as validators beside the declared bounds, with reasons of their own;
:mod:`services.management.inputs` turns every refusal into the API's one error shape.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, date, datetime, time, timedelta
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from services.management import limits
from services.management.errors import InvalidValue
from services.management.rendering import ImageOptions, check_contrast
from shared.ids import ID_PATTERN, ID_RULE, SLUG_MAX, SLUG_MIN, is_well_formed, slug_problem
from shared.urls import MAX_URL_LENGTH, check_target_url, has_control_characters


def _ecc_level(value: object) -> object:
    """An error-correction level in any case, as its one spelling (``l`` is ``L``): the document
    lists each level once (a client generator makes an identifier of each), other spellings are
    accepted without being advertised."""
    if isinstance(value, str) and value.isascii() and value.upper() in limits.ECC_LEVELS:
        return value.upper()
    return value


if TYPE_CHECKING:
    RedirectStatus = int
    EccLevel = str
else:  # Literal types built from the constants: the enum in the document is the one enforced
    RedirectStatus = Literal[limits.REDIRECT_STATUSES]
    EccLevel = Annotated[Literal[limits.ECC_LEVELS], BeforeValidator(_ecc_level)]

# What a refusal by a pattern says, by pattern (pydantic's own message names the regex, not the rule).
PATTERN_REASONS: dict[str, str] = {}


def matching(pattern: str, reason: str, **field: Any) -> Any:
    """A ``Field`` constrained by ``pattern``, refused with ``reason`` when a value does not match."""
    PATTERN_REASONS[pattern] = reason
    return Field(pattern=pattern, **field)


# -- rules beside the bounds ------------------------------------------------------------------------


def _printable(value: str) -> str:
    """Controls, or line and paragraph separators (which break lines in logs and pages), refused."""
    if has_control_characters(value) or "\u2028" in value or "\u2029" in value:
        raise ValueError("must not contain control characters or line separators")
    return value


def validation_context(own_hosts: frozenset[str]) -> dict[str, Any]:
    """The context a code's fields are validated in: the hosts of this service's own short links
    (a destination there would loop)."""
    return {"own_hosts": own_hosts}


def _destination(value: str, info: ValidationInfo) -> str:
    """The destination rules of shared/urls.py; the context names this service's own hosts."""
    own: frozenset[str] = (info.context or {}).get("own_hosts", frozenset())
    return check_target_url(value, own=own)


def _no_repeats(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _exact_int(value: object) -> object:
    if type(value) is not int:  # neither true nor 302.0
        raise ValueError(f"must be one of {', '.join(map(str, limits.REDIRECT_STATUSES))}")
    return value


def _slug(value: str) -> str:
    problem = slug_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _timestamp(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("must be an ISO 8601 timestamp with a time zone, or null")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp like 2027-01-31T18:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("must include a time zone (Z or +01:00)")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


def _colour(value: str) -> str:
    digits = value.removeprefix("#").lower()
    return "#" + ("".join(ch * 2 for ch in digits) if len(digits) == 3 else digits)


# -- field types ------------------------------------------------------------------------------------

URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\\]+$"
HEX_COLOUR = r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$"
SHA256 = r"^[0-9a-f]{64}$"
CURSOR = r"^[A-Za-z0-9_-]+$"

Destination = Annotated[
    str,
    matching(URL_PATTERN, "must be an absolute http or https URL", min_length=1, max_length=MAX_URL_LENGTH),
    AfterValidator(_destination),
]
Slug = Annotated[
    str, matching(ID_PATTERN, ID_RULE, min_length=SLUG_MIN, max_length=SLUG_MAX), AfterValidator(_slug)
]
Title = Annotated[str, Field(max_length=limits.MAX_TITLE), AfterValidator(_printable)]
Tag = Annotated[
    str,
    matching(r"\S", "must not be blank", min_length=1, max_length=limits.MAX_TAG),
    AfterValidator(_printable),
]
Tags = Annotated[list[Tag], Field(max_length=limits.MAX_TAGS), AfterValidator(_no_repeats)]
Status = Annotated[RedirectStatus, BeforeValidator(_exact_int)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Colour = Annotated[
    str, matching(HEX_COLOUR, "must be a hex colour such as 1a2b3c or #1a2b3c"), AfterValidator(_colour)
]


@dataclass(frozen=True)
class QueryNumber:
    """A query parameter that is a number written plainly: ASCII digits, and with ``places`` a
    decimal point and at most that many decimals; no sign, no exponent, no spaces. The bounds are
    both checked and stated in the document, from these two numbers."""

    minimum: int | float
    maximum: int | float
    places: int = 0
    advice: str = ""  # appended to the refusal

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner = (
            core_schema.int_schema(ge=int(self.minimum), le=int(self.maximum), strict=True)
            if not self.places
            else core_schema.float_schema(ge=self.minimum, le=self.maximum, strict=True)
        )
        return core_schema.no_info_before_validator_function(self._parse, inner)

    def _parse(self, raw: object) -> object:
        if not isinstance(raw, str):
            return raw
        whole, point, fraction = raw.partition(".")
        if (
            raw.isascii()
            and whole.isdigit()
            and len(whole) <= 7
            and (not point or (self.places and fraction.isdigit() and len(fraction) <= self.places))
        ):
            number = float(raw) if self.places else int(raw)
            if self.minimum <= number <= self.maximum:
                return number
        advice = f" ({self.advice})" if self.advice else ""
        if self.places:
            raise ValueError(
                f"must be a number from {self.minimum:g} to {self.maximum:g} with at most "
                f"{self.places} decimals, such as 25 or 25.5{advice}"
            )
        raise ValueError(f"must be a whole number from {self.minimum} to {self.maximum}{advice}")


def _query_bool(raw: object) -> object:
    if raw == "true":
        return True
    if raw == "false":
        return False
    raise ValueError("must be true or false")


QueryBool = Annotated[bool, BeforeValidator(_query_bool)]
QueryText = Annotated[str, Field(min_length=1), AfterValidator(_printable)]


def _id_list(value: str) -> tuple[str, ...]:
    """``a,b,c``: well-formed ids, repeats dropped, at most MAX_SELECTED."""
    found = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not found:
        raise ValueError("must name at least one id")
    if len(found) > limits.MAX_SELECTED:
        raise ValueError(f"must name at most {limits.MAX_SELECTED} ids")
    for each in found:
        if not is_well_formed(each):
            raise ValueError(f"{each[:40]!r} is not an id")
    return found


if TYPE_CHECKING:
    IdList = tuple[str, ...]
else:  # read from the query's text, checked, as a tuple
    IdList = Annotated[
        str,
        matching(
            r"^[A-Za-z0-9_,-]+$",
            "must be ids separated by commas",
            max_length=limits.MAX_SELECTED * (SLUG_MAX + 1) - 1,
        ),
        AfterValidator(_id_list),
    ]


# -- a code's fields, as people see them ------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """How the console's form shows a field: its label, a hint beneath it, the input it is typed in
    (``url``, ``datetime-local``; a yes/no field is a checkbox, a field of a few values a list to
    choose from), and notes beside some of those values. Metadata pydantic keeps and the document
    leaves out; a field without it is shown under its name, with its description as the hint."""

    label: str
    hint: str = ""
    input: str = "text"
    notes: Mapping[object, str] = field(default_factory=dict)


# What a field holds, as a form or a CSV cell writes it: text; a list (tags); one of a few values
# (a redirect status); yes or no; a moment.
Kind = Literal["text", "list", "choice", "flag", "moment"]


def _bare(annotation: Any) -> Any:
    """The type a field holds, without ``None`` and without its constraints."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation


def kind_of(info: FieldInfo) -> Kind:
    annotation = _bare(info.annotation)
    if annotation is bool:
        return "flag"
    if get_origin(annotation) is Literal:
        return "choice"
    if get_origin(annotation) is list:
        return "list"
    if annotation is datetime:
        return "moment"
    return "text"


def choices_of(info: FieldInfo) -> tuple[object, ...]:
    """The values a ``choice`` field takes, in their order."""
    return get_args(_bare(info.annotation))


def shown(name: str, info: FieldInfo) -> Shown:
    """How the console shows the field ``name``."""
    found = next((each for each in info.metadata if isinstance(each, Shown)), None)
    return found or Shown(name.replace("_", " ").capitalize(), hint=info.description or "")


# -- requests ---------------------------------------------------------------------------------------


class RequestBody(BaseModel):
    """A request body: strict, and nothing unknown."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # Known names that are not fields here, and what a client sending one is told.
    refused: ClassVar[dict[str, str]] = {}
    unknown: ClassVar[str] = "is not a field of a QR code"


def _read_only_fields() -> dict[str, str]:
    writable = set(QRCodeChanges.model_fields) | {"slug"}
    return {name: "cannot be changed" for name in QRCode.model_fields if name not in writable}


# A code's fields, as a client creates it: the one list of them. What else names a code's fields reads
# it (the console's form, the bulk upload's CSV columns, the columns stored, exported and recorded in
# the history), but for the changes a PATCH may make and the code as answered, declared below.
class NewQRCode(RequestBody):
    target_url: Annotated[
        Destination,
        Shown("Destination URL", "Where the code sends people: an absolute http or https URL.", "url"),
    ] = Field(description="Where the code sends people: an absolute http(s) URL.")
    slug: Annotated[
        Slug | None,
        Shown(
            "Custom id (slug)",
            "Optional: 3 to 64 letters, digits, '_' or '-'; the short URL ends with it. Left empty, an id "
            "is made up.",
        ),
    ] = Field(
        default=None,
        description="A custom id, unique without regard to case; refused (409) if it is or ever was in "
        "use in any case, 422 if reserved.",
    )
    title: Annotated[Title | None, Shown("Title", "Optional, for you: shown in the list.")] = None
    tags: Annotated[
        Tags | None, Shown("Tags", "Optional, separated by commas, such as print, spring-menu.")
    ] = Field(default=None, description="null means no tags; repeats are dropped.")
    redirect_status: Annotated[
        Status,
        Shown(
            "Redirect status",
            "302 lets you change the destination later with no browser holding on to the old one.",
            notes={301: "browsers cache it", 308: "browsers cache it"},
        ),
    ] = Field(default=limits.DEFAULT_REDIRECT_STATUS, description="301 and 308 are cached by browsers.")
    enabled: Annotated[bool, Shown("Switched on (redirects)")] = True
    expires_at: Annotated[
        Timestamp | None,
        Shown(
            "Expires (UTC)",
            "Optional: after this moment the code answers 410, or sends people to the fallback URL.",
            "datetime-local",
        ),
    ] = Field(default=None, description="With a time zone; after it the code answers 410.")
    fallback_url: Annotated[
        Destination | None,
        Shown("Fallback URL", "Optional: where a switched-off or expired code sends people.", "url"),
    ] = Field(default=None, description="Where a disabled or expired code sends people.")
    forward_query: Annotated[bool, Shown("Forward the scan's query string to the destination")] = Field(
        default=False, description="Append the scan's query string to the target."
    )

    def writable(self) -> dict[str, Any]:
        """The values of the writable fields, as stored (no tags: an empty list)."""
        return _as_stored(self.model_dump(include=set(QRCodeChanges.model_fields)))


# The default of a PATCH field that was not sent: never read (``model_fields_set`` says what was).
_NOT_SENT: Any = None


class QRCodeChanges(RequestBody):
    """Any writable fields; null clears title, tags, expires_at and fallback_url."""

    target_url: Destination = Field(default=_NOT_SENT, description="The new destination.")
    title: Title | None = None
    tags: Tags | None = Field(default=None, description="null or [] removes every tag.")
    redirect_status: Status = _NOT_SENT
    enabled: bool = _NOT_SENT
    expires_at: Timestamp | None = None
    fallback_url: Destination | None = None
    forward_query: bool = _NOT_SENT

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, with their values as stored."""
        return _as_stored({name: getattr(self, name) for name in self.model_fields_set})


def _as_stored(values: dict[str, Any]) -> dict[str, Any]:
    """Field values as the columns hold them: a list left out (null) is an empty one."""
    for name, value in values.items():
        if value is None and kind_of(NewQRCode.model_fields[name]) == "list":
            values[name] = []
    return values


# -- queries ----------------------------------------------------------------------------------------


class Query(BaseModel):
    """A query string: every parameter known and given once (checked before this model)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class NoQuery(Query):
    pass


class Page(Query):
    cursor: (
        Annotated[str, matching(CURSOR, "is not a cursor from a previous page", max_length=limits.MAX_CURSOR)]
        | None
    ) = Field(default=None, description="next_cursor of the previous page.")


class CodeFilters(Query):
    """Which codes a listing or an export holds."""

    q: Annotated[QueryText, Field(max_length=limits.MAX_SEARCH)] | None = Field(
        default=None, description="Case-insensitive substring of id, title or target."
    )
    tag: Annotated[QueryText, Field(max_length=limits.MAX_TAG)] | None = Field(
        default=None, description="Only codes with this tag."
    )
    enabled: QueryBool | None = Field(
        default=None, description="Only codes switched on (true) or off (false)."
    )
    ids: IdList | None = Field(
        default=None,
        description=f"Only these codes: ids separated by commas, at most {limits.MAX_SELECTED} "
        "(a selection, as the console exports it).",
    )


class ExportQuery(CodeFilters):
    pass


class ListQuery(Page, CodeFilters):
    limit: Annotated[int, QueryNumber(1, limits.MAX_PAGE)] = limits.DEFAULT_LIST_PAGE
    order: Literal["created_at", "-created_at", "-scan_count"] = Field(
        default="created_at",
        description="created_at: oldest first, every code exactly once however the list changes; "
        "-created_at: newest first (codes created meanwhile appear only on a new first page); "
        "-scan_count: most scanned first (paging in that order is best effort: counts move meanwhile).",
    )


class BulkQuery(Query):
    partial: QueryBool = Field(
        default=False,
        description="false: any bad row refuses them all (422, nothing created); true: the valid rows "
        "are created and the others reported.",
    )


class HistoryQuery(Page):
    limit: Annotated[int, QueryNumber(1, limits.MAX_PAGE)] = limits.DEFAULT_HISTORY_PAGE


class ImageQuery(Query):
    """Options of both image formats."""

    size: Annotated[int, QueryNumber(limits.MIN_SIZE, limits.MAX_SIZE)] = Field(
        default=limits.DEFAULT_SIZE,
        description="Pixels; a PNG is drawn at whole pixels per module, within 10% of it.",
    )
    border: Annotated[int, QueryNumber(0, limits.MAX_BORDER)] = Field(
        default=limits.DEFAULT_BORDER, description="Quiet-zone modules (keep 4 for print)."
    )
    ecc: EccLevel = Field(default=limits.DEFAULT_ECC, description="Error correction; always H with a logo.")
    fg: Colour = Field(
        default=limits.DEFAULT_FG,
        description=f"Module colour, hex; darker than bg, with a contrast of at least "
        f"{limits.MIN_CONTRAST}:1.",
    )
    bg: Colour = Field(default=limits.DEFAULT_BG, description="Ground colour, hex.")
    dpi: Annotated[int, QueryNumber(limits.MIN_DPI, limits.MAX_DPI)] | None = Field(
        default=None,
        description=f"Recorded in the PNG; with size_mm, the pixels per inch ({limits.DEFAULT_PRINT_DPI}).",
    )
    size_mm: float | None = None  # bounded by each format's own query below

    def options(self, image_format: Literal["png", "svg"]) -> ImageOptions:
        """The rendering options these parameters ask for; :class:`InvalidValue` when they
        contradict each other or cannot be drawn."""
        size_mm, size, dpi = self.size_mm, self.size, self.dpi
        if size_mm is not None:
            if "size" in self.model_fields_set:
                raise InvalidValue("size", "give size (pixels) or size_mm (with dpi), not both")
            dpi = dpi or limits.DEFAULT_PRINT_DPI
            size = round(size_mm / 25.4 * dpi)
            if image_format == "svg":  # drawn in mm at any size: the pixels only name a raster of it
                size = min(max(size, limits.MIN_SIZE), limits.MAX_SIZE)
            elif not limits.MIN_SIZE <= size <= limits.MAX_SIZE:
                advice = "raise the dpi" if size < limits.MIN_SIZE else "lower the dpi, or use the SVG"
                raise InvalidValue(
                    "size_mm",
                    f"{size_mm:g} mm at {dpi} dpi is {size} px; a PNG is {limits.MIN_SIZE} to "
                    f"{limits.MAX_SIZE} px ({advice})",
                )
        check_contrast(self.fg, self.bg)
        return ImageOptions(
            size=size,
            border=self.border,
            ecc=self.ecc.upper(),
            fg=self.fg,
            bg=self.bg,
            dpi=dpi,
            size_mm=size_mm,
        )


class PngQuery(ImageQuery):
    size_mm: (
        Annotated[
            float,
            QueryNumber(
                limits.MIN_SIZE_MM,
                limits.MAX_PNG_SIZE_MM,
                places=2,
                advice=f"larger prints: the SVG, up to {limits.MAX_SIZE_MM:g} mm",
            ),
        ]
        | None
    ) = Field(
        default=None,
        description=f"Printed size in millimetres, instead of size; with dpi it must come to "
        f"{limits.MIN_SIZE} to {limits.MAX_SIZE} px.",
    )


class SvgQuery(ImageQuery):
    size_mm: Annotated[float, QueryNumber(limits.MIN_SIZE_MM, limits.MAX_SIZE_MM, places=2)] | None = Field(
        default=None, description="Printed size in millimetres, instead of size: the SVG is sized in mm."
    )


class ZipPngQuery(CodeFilters, PngQuery):
    """GET /api/v1/qr/export.zip: which codes, and their images' options as image.png takes them."""

    format: Literal["png", "svg"] = Field(default="png", description="The images' format.")


class ZipSvgQuery(CodeFilters, SvgQuery):
    format: Literal["png", "svg"] = "svg"


class PdfQuery(CodeFilters):
    """GET /api/v1/qr/export.pdf: which codes, and the label sheets' layout."""

    paper: Literal["a4", "letter"] = "a4"
    size_mm: Annotated[float, QueryNumber(limits.MIN_LABEL_MM, limits.MAX_LABEL_MM, places=2)] = Field(
        default=limits.DEFAULT_LABEL_MM, description="Each code with its quiet zone, in millimetres."
    )
    columns: Annotated[int, QueryNumber(1, limits.MAX_LABEL_COLUMNS)] | None = Field(
        default=None, description="Labels across a page (default: as many as fit)."
    )
    rows: Annotated[int, QueryNumber(1, limits.MAX_LABEL_ROWS)] | None = Field(
        default=None, description="Labels down a page (default: as many as fit)."
    )
    border: Annotated[int, QueryNumber(2, limits.MAX_BORDER)] = Field(
        default=limits.DEFAULT_BORDER, description="Quiet-zone modules."
    )
    ecc: EccLevel = Field(default=limits.DEFAULT_ECC, description="Error correction; always H with a logo.")


def _zone(name: str) -> str:
    if name not in _zones():
        raise ValueError("must be an IANA time zone name such as UTC or Europe/Paris")
    return name


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _query_moment(raw: object) -> object:
    """A day (2026-10-01) or an instant with its offset (2026-10-01T08:00:00+02:00, ...Z)."""
    if not isinstance(raw, str) or len(raw) > 40:
        return raw
    try:
        if len(raw) == 10:
            return date.fromisoformat(raw)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            "must be a day (2026-10-01) or a time with its offset (2026-10-01T08:00:00+02:00)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError("a time must carry its offset (Z or +02:00); a day is read in tz")
    return moment


QueryMoment = Annotated[date | datetime, BeforeValidator(_query_moment)]
Interval = Literal["hour", "day", "week", "month"]


class ScanQuery(Query):
    """GET .../scans: the range, its buckets and their zone. A range is bounded so that an answer
    costs what a chart can show: at most MAX_SCAN_YEARS long, and an hourly one at most
    MAX_HOURLY_DAYS (its unique visitors are counted from raw scans)."""

    from_: QueryMoment | None = Field(
        default=None,
        alias="from",
        description="The range's start, down to its bucket's start; a day is its first instant in tz. "
        f"Default: {limits.DEFAULT_SCAN_DAYS} days before to; at most {limits.MAX_SCAN_YEARS} years "
        "before it.",
    )
    to: QueryMoment | None = Field(
        default=None,
        description="The range's end (exclusive), up to a bucket's end. Default: the end of the bucket "
        "that holds now.",
    )
    interval: Interval = Field(
        default="day",
        description=f"The buckets of the series; at most {limits.MAX_SCAN_BUCKETS:,} of them. An hourly "
        f"range covers at most {limits.MAX_HOURLY_DAYS} days: its unique visitors are counted from raw "
        "scans.",
    )
    tz: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)] = Field(
        default="UTC", description="The IANA time zone the buckets follow (their days, DST changes, offsets)."
    )

    @model_validator(mode="after")
    def _bounded(self) -> ScanQuery:
        """The range's length, refused naming the parameter to change (a check across parameters,
        so pydantic's error is made here with its place: the API and the console name it alike)."""
        found = self.too_long(datetime.now(UTC))
        if found is not None:
            field, reason = found
            given = self.from_ if field == "from" else self.interval
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [{"type": PydanticCustomError("range", reason), "loc": (field,), "input": given}],
            )
        return self

    def too_long(self, now: datetime) -> tuple[str, str] | None:
        """The parameter and the reason when the range is longer than it may be, else ``None``.
        Measured between the instants given (before they are widened to whole buckets)."""
        zone = zoneinfo.ZoneInfo(self.tz)
        end = _instant(self.to, zone) if self.to is not None else now
        if self.from_ is None:
            return None  # DEFAULT_SCAN_DAYS before to: within every bound
        start = _instant(self.from_, zone)
        if self.interval == "hour" and end - start > timedelta(days=limits.MAX_HOURLY_DAYS):
            return "interval", (
                f"hour covers at most {limits.MAX_HOURLY_DAYS} days (unique visitors per hour are "
                "counted from raw scans): choose day, or a shorter range"
            )
        years = limits.MAX_SCAN_YEARS
        if start.year + years <= MAXYEAR and end > _years_after(start, years):
            return "from", f"must be at most {years} years before {'to' if self.to else 'now'}"
        return None


def _instant(value: date | datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """A day as its first instant in ``zone``; a time as given (it carries its offset)."""
    return value if isinstance(value, datetime) else datetime.combine(value, time(), zone)


def _years_after(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February, in a year that has none
        return moment.replace(year=moment.year + years, day=28)


class RawScansQuery(Query):
    from_: QueryMoment | None = Field(
        default=None,
        alias="from",
        description="The first scan's time or day (UTC); default: every scan kept.",
    )
    to: QueryMoment | None = Field(default=None, description="Scans before this time or day (UTC).")


# -- answers ----------------------------------------------------------------------------------------


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    logo_sha256: str | None = Field(
        pattern=SHA256,
        description="The logo in the middle of the code's images (PUT .../logo), by its digest.",
    )
    created_at: datetime
    updated_at: datetime
    scan_count: int = Field(ge=0, description="Every recorded scan, people and bots; fresh within seconds.")


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


# Fields a client cannot write, and what it is told when it tries.
NewQRCode.refused = _read_only_fields()
QRCodeChanges.refused = {**_read_only_fields(), "slug": "is chosen once, at creation"}
