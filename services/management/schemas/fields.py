"""A code's fields and the parameters' types, with the rules beside their bounds: each type states
its bound in the document and enforces it, and a rule a schema cannot state (a destination's safety,
printable text) runs as a validator with a reason of its own; how the console shows a field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, GetCoreSchemaHandler, ValidationInfo
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

from services.management import design as designs
from services.management import limits
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


def printable(value: str) -> str:
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
Title = Annotated[str, Field(max_length=limits.MAX_TITLE), AfterValidator(printable)]
TAG_SEPARATOR = "|"  # between a CSV cell's tags (services/management/bulk.py)


def _one_tag(value: str) -> str:
    """A tag a CSV file can hold: one holding the separator would come back as two."""
    if TAG_SEPARATOR in value:
        raise ValueError(f"must not contain {TAG_SEPARATOR} (a CSV file separates tags with it)")
    return value


Tag = Annotated[
    str,
    matching(r"\S", "must not be blank", min_length=1, max_length=limits.MAX_TAG),
    AfterValidator(printable),
    AfterValidator(_one_tag),
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
QueryText = Annotated[str, Field(min_length=1), AfterValidator(printable)]


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
# (a redirect status); yes or no; a moment; an object of its own names (a design: JSON in a cell);
# JSON (a list of objects: redirect rules, a split).
Kind = Literal["text", "list", "choice", "flag", "moment", "object", "json"]


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
    if object_names(info):
        return "object"
    if get_origin(annotation) is Literal:
        return "choice"
    if get_origin(annotation) is list:
        item = _bare(get_args(annotation)[0])
        return "json" if isinstance(item, type) and issubclass(item, BaseModel) else "list"
    if annotation is datetime:
        return "moment"
    return "text"


def object_names(info: FieldInfo) -> tuple[str, ...]:
    """The names an object field (a model of its own) holds; none for any other field."""
    annotation = _bare(info.annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return tuple(annotation.model_fields)
    return ()


def choices_of(info: FieldInfo) -> tuple[object, ...]:
    """The values a ``choice`` field takes, in their order."""
    return get_args(_bare(info.annotation))


def shown(name: str, info: FieldInfo) -> Shown:
    """How the console shows the field ``name``."""
    found = next((each for each in info.metadata if isinstance(each, Shown)), None)
    return found or Shown(name.replace("_", " ").capitalize(), hint=info.description or "")


# The buckets of a scan series.
Interval = Literal["hour", "day", "week", "month"]


# -- a code's design --------------------------------------------------------------------------------

if TYPE_CHECKING:
    ModuleShape = str
    FinderShape = str
    GradientKind = str
    FrameKind = str
    FramePosition = str
else:  # the enums in the document are the ones enforced
    ModuleShape = Literal[designs.MODULE_SHAPES]
    FinderShape = Literal[designs.FINDER_SHAPES]
    GradientKind = Literal[designs.GRADIENTS]
    FrameKind = Literal[designs.FRAMES]
    FramePosition = Literal[designs.FRAME_POSITIONS]


def _frame_text(value: str) -> str:
    designs.check_frame_text(value)
    return value


FrameText = Annotated[
    str,
    matching(r"\S", "must not be blank", min_length=1, max_length=designs.MAX_FRAME_TEXT),
    AfterValidator(printable),
    AfterValidator(_frame_text),
]

# What each design option says, in the document, the image queries and the code's saved design alike.
DESIGN_DESCRIPTIONS: dict[str, str] = {
    "modules": "The data modules' shape (default square).",
    "finder": "The three finder patterns' shape, their ring and eye (default square).",
    "finder_fg": "The finder patterns' own colour, hex (default: as the modules); the contrast rule holds.",
    "gradient": "The modules painted from fg into fg2: linear (top-left to bottom-right) or radial "
    "(middle to corners); needs fg2.",
    "fg2": "The gradient's second colour, hex; only with gradient. The contrast rule holds for it too "
    "(a gradient's lightest point is one of its ends).",
    "frame": "label: a border outside the quiet zone with frame_text in a band (the image grows taller; "
    f"size is its width); needs a border of at least {designs.MIN_FRAMED_BORDER}.",
    "frame_text": f"The frame's call to action, 1 to {designs.MAX_FRAME_TEXT} characters "
    f"(default {designs.DEFAULT_FRAME_TEXT!r}); only with frame=label.",
    "frame_position": "The band below (default) or above the code; only with frame=label.",
    "frame_url": "Print the short URL under the frame's text (default false); only with frame=label.",
}
DESIGN_OPTIONS = tuple(DESIGN_DESCRIPTIONS)


def design_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The option and the reason when design options given together contradict each other (an
    option's value alone is its type's to check), else ``None``."""
    if values.get("gradient") is not None and values.get("fg2") is None:
        return "fg2", "a gradient needs fg2, its second colour"
    if values.get("fg2") is not None and values.get("gradient") is None:
        return "fg2", "is only used with gradient (linear or radial)"
    if values.get("frame") != "label":
        for name in ("frame_text", "frame_position", "frame_url"):
            if values.get(name) is not None:
                return name, "is only used with frame=label"
    return None


def design_from(values: Mapping[str, Any]) -> designs.Design:
    """The :class:`~services.management.design.Design` of checked options (absent ones: defaults)."""
    given = {name: values[name] for name in DESIGN_OPTIONS if values.get(name) is not None}
    return designs.Design(**given)
