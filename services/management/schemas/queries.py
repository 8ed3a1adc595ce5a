"""Query strings: every parameter known and given once, each of a type that says exactly which text
it takes; which codes a listing or an export holds, an image's options, a scan report's range."""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import replace
from datetime import MAXYEAR, UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.management import limits
from services.management.design import MIN_FRAMED_BORDER
from services.management.errors import InvalidValue
from services.management.rendering import ImageOptions, check_contrast
from services.management.schemas.fields import (
    CURSOR,
    DESIGN_DESCRIPTIONS,
    DESIGN_OPTIONS,
    Colour,
    EccLevel,
    FinderShape,
    FrameKind,
    FramePosition,
    FrameText,
    GradientKind,
    IdList,
    Interval,
    ModuleShape,
    QueryBool,
    QueryNumber,
    QueryText,
    design_from,
    design_problem,
    matching,
)


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


class DesignQuery(Query):
    """A design's options in a query string. None given (and fg and bg as their defaults, black on
    white): the code's saved design."""

    fg: Colour = Field(
        default=limits.DEFAULT_FG,
        description=f"Module colour, hex; darker than bg, with a contrast of at least "
        f"{limits.MIN_CONTRAST}:1.",
    )
    bg: Colour = Field(default=limits.DEFAULT_BG, description="Ground colour, hex.")
    modules: ModuleShape | None = Field(default=None, description=DESIGN_DESCRIPTIONS["modules"])
    finder: FinderShape | None = Field(default=None, description=DESIGN_DESCRIPTIONS["finder"])
    finder_fg: Colour | None = Field(default=None, description=DESIGN_DESCRIPTIONS["finder_fg"])
    gradient: GradientKind | None = Field(default=None, description=DESIGN_DESCRIPTIONS["gradient"])
    fg2: Colour | None = Field(default=None, description=DESIGN_DESCRIPTIONS["fg2"])
    frame: FrameKind | None = Field(default=None, description=DESIGN_DESCRIPTIONS["frame"])
    frame_text: FrameText | None = Field(default=None, description=DESIGN_DESCRIPTIONS["frame_text"])
    frame_position: FramePosition | None = Field(
        default=None, description=DESIGN_DESCRIPTIONS["frame_position"]
    )
    frame_url: QueryBool | None = Field(default=None, description=DESIGN_DESCRIPTIONS["frame_url"])

    def designed(self, options: ImageOptions) -> ImageOptions:
        """``options`` with the design these parameters name (checked: :class:`InvalidValue`), or
        marked to take the code's saved design when they name none."""
        # The defaults' colours name no design: a form that always sends its colour fields (the
        # console's image options) still shows the code's saved design until they are changed.
        defaults = {"fg": limits.DEFAULT_FG, "bg": limits.DEFAULT_BG}
        colours = {name for name, default in defaults.items() if getattr(self, name) != default}
        if not colours and not self.model_fields_set & set(DESIGN_OPTIONS):
            return replace(options, saved_design=True)
        values = self.model_dump()
        problem = design_problem(values)
        if problem is not None:
            raise InvalidValue(*problem)
        design = design_from(values)
        check_contrast(self.fg, self.bg, design)
        if design.frame != "none" and options.border < MIN_FRAMED_BORDER:
            raise InvalidValue(
                "border", f"a frame sits outside the quiet zone, which must be at least {MIN_FRAMED_BORDER}"
            )
        return replace(options, fg=self.fg, bg=self.bg, design=design)


class ImageQuery(DesignQuery):
    """Options of both image formats."""

    size: Annotated[int, QueryNumber(limits.MIN_SIZE, limits.MAX_SIZE)] = Field(
        default=limits.DEFAULT_SIZE,
        description="Pixels; a PNG is drawn at whole pixels per module, within 10% of it.",
    )
    border: Annotated[int, QueryNumber(0, limits.MAX_BORDER)] = Field(
        default=limits.DEFAULT_BORDER, description="Quiet-zone modules (keep 4 for print)."
    )
    ecc: EccLevel = Field(default=limits.DEFAULT_ECC, description="Error correction; always H with a logo.")
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
        chosen = size_mm is not None or "size" in self.model_fields_set
        return self.designed(
            ImageOptions(
                size=size,
                size_chosen=chosen,
                border=self.border,
                ecc=self.ecc.upper(),
                dpi=dpi,
                size_mm=size_mm,
            )
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


class PdfQuery(CodeFilters, DesignQuery):
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

    def options(self) -> ImageOptions:
        """The labels' drawing options: the design named here, else each code's saved design."""
        return self.designed(ImageOptions(size=limits.DEFAULT_SIZE, border=self.border, ecc=self.ecc.upper()))


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
    by: Literal["rule"] | None = Field(
        default=None, description="rule: a code's series per redirect rule too (by_rule)."
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


if TYPE_CHECKING:
    AuditAction = str
else:  # the enum in the document is the one enforced
    AuditAction = Literal[limits.AUDIT_ACTIONS]


class AuditFilters(Query):
    """Which entries of the audit log: a range of time, one actor, one action."""

    from_: QueryMoment | None = Field(
        default=None,
        alias="from",
        description="The first entry's time or day (UTC); default: the oldest kept.",
    )
    to: QueryMoment | None = Field(default=None, description="Entries before this time or day (UTC).")
    actor: Annotated[QueryText, Field(max_length=limits.MAX_ACTOR)] | None = Field(
        default=None, description="A token's name or a person's e-mail (or subject), exactly."
    )
    action: AuditAction | None = Field(default=None, description="One action, exactly.")


class AuditQuery(AuditFilters, Page):
    limit: Annotated[int, QueryNumber(1, limits.MAX_PAGE)] = limits.DEFAULT_AUDIT_PAGE
