"""Redirect rules as a client writes them: a code's ``rules`` (ordered, the first that holds wins) and
``split`` (variants by weight), with their bounds declared once here.

The API, the bulk upload (JSON cells in a CSV) and the console validate with these models; every
``target_url`` obeys the destination rules of a code's own ``target_url`` (:data:`Destination`:
IDN, no loop to this service, ...). What the conditions mean, and how they are evaluated, is
:mod:`shared.rules` (the redirect service runs the same evaluator). A refusal names the field's
path as JSON indexes it, from 0: ``rules[3].if.country``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from services.management.schemas.fields import Destination, Timestamp, matching, printable
from shared.rules import DEVICES, WEEKDAYS

MAX_RULES = 20
MAX_VARIANTS = 10
MAX_VALUES = 50  # values in one condition's list
MAX_QUERY_PARAMETERS = 10
MAX_WEIGHT = 1000
# The fields whose refusals name a path inside them (``rules[3].if.country``), not the field alone.
NESTED_FIELDS = frozenset({"rules", "split"})

if TYPE_CHECKING:
    Device = str
    Weekday = str
else:  # the values the evaluator knows, stated in the document as enforced
    from typing import Literal

    Device = Literal[DEVICES]
    Weekday = Literal[WEEKDAYS]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be a time zone name such as Europe/Paris") from None
    return value


def _no_repeats(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


LanguageTag = Annotated[
    str,
    matching(
        r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$",
        "must be a language tag such as de or de-CH",
        max_length=35,
    ),
]
Country = Annotated[
    str,
    matching(r"^[A-Za-z]{2}$", "must be a two-letter country code such as FR", max_length=2),
    AfterValidator(str.upper),
]
Hour = Annotated[
    str, matching(r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", "must be a time of day such as 09:30 or 24:00")
]
QueryName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(printable)]
QueryValue = Annotated[str, Field(max_length=200), AfterValidator(printable)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_zone)]


def _values(kind: Any, most: int = MAX_VALUES) -> Any:
    return Annotated[list[kind], Field(min_length=1, max_length=most), AfterValidator(_no_repeats)]


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, serialize_by_alias=True)


class Conditions(RuleModel):
    """All must hold; a list holds when any of its values does."""

    device: _values(Device, len(DEVICES)) | None = Field(  # type: ignore[valid-type]
        default=None, description="From the user agent: ios, android, desktop or other (bots, scripts)."
    )
    language: _values(LanguageTag) | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The best language of Accept-Language, by its primary tag (de holds for de-CH) or whole.",
    )
    country: _values(Country) | None = Field(  # type: ignore[valid-type]
        default=None, description="ISO 3166 codes of the client's address; needs GEOIP_DATABASE."
    )
    query: (
        Annotated[
            dict[
                QueryName,
                QueryValue | Annotated[list[QueryValue], Field(min_length=1, max_length=MAX_VALUES)],
            ],
            Field(min_length=1, max_length=MAX_QUERY_PARAMETERS),
        ]
        | None
    ) = Field(default=None, description="Exact values of the scan's query string; each name given must hold.")
    weekdays: _values(Weekday, len(WEEKDAYS)) | None = Field(  # type: ignore[valid-type]
        default=None, description="Days of the week in tz."
    )
    hours: Annotated[list[Hour], Field(min_length=2, max_length=2)] | None = Field(
        default=None, description='[from, until) in tz, such as ["10:00", "16:00"]; wraps past midnight.'
    )
    tz: TimeZone | None = Field(default=None, description="The zone of weekdays and hours (default UTC).")
    between: Annotated[list[Timestamp], Field(min_length=2, max_length=2)] | None = Field(
        default=None, description="[start, end): two moments with a time zone."
    )

    @model_validator(mode="after")
    def _coherent(self) -> Conditions:
        given = {name for name in type(self).model_fields if getattr(self, name) is not None}
        if not given - {"tz"}:
            raise ValueError("must hold at least one condition")
        if self.tz is not None and not given & {"weekdays", "hours"}:
            raise ValueError("tz applies to weekdays and hours only")
        if self.hours is not None and self.hours[0] == self.hours[1]:
            raise ValueError("hours must not start and end at the same time")
        if self.between is not None and self.between[0] >= self.between[1]:
            raise ValueError("between must start before it ends")
        return self


class Rule(RuleModel):
    when: Conditions = Field(alias="if", description="The conditions, all of which must hold.")
    target_url: Destination = Field(description="Where a scan the conditions hold for is sent.")


class Variant(RuleModel):
    target_url: Destination
    weight: int = Field(ge=1, le=MAX_WEIGHT, description="Its share: weight over the sum of the weights.")


def _stored(items: list[RuleModel]) -> list[dict[str, Any]]:
    """As the column holds it, and the history and the answers show it: JSON, unset conditions left out."""
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items]


Rules = Annotated[
    list[Rule],
    Field(
        max_length=MAX_RULES,
        description=f"Ordered: the first rule whose conditions all hold sends the scan; at most {MAX_RULES}.",
    ),
    PlainSerializer(_stored),
]
Split = Annotated[
    list[Variant],
    Field(
        min_length=2,
        max_length=MAX_VARIANTS,
        description="If no rule holds: a variant by weight, sticky per visitor and day; "
        f"at most {MAX_VARIANTS}.",
    ),
    PlainSerializer(_stored),
]


def uses_country(rules: list[Rule]) -> bool:
    return any(rule.when.country is not None for rule in rules)


COUNTRY_WITHOUT_GEOIP = (
    "a country rule never holds here: the service has no GEOIP_DATABASE to find the country of a scan"
)


def field_path(location: tuple[int | str, ...]) -> tuple[str, tuple[int | str, ...]]:
    """A refusal's location as JSON indexes it, down to the condition (``rules[3].if.country``), and
    what lies beyond that (an item of a condition's list, a query parameter's name), which the
    reason names."""
    path = str(location[0])
    names = 0
    for at, part in enumerate(location[1:], start=1):
        if names >= 2:  # past rules[n].if.condition or split[n].field
            return path, location[at:]
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}"
            names += 1
    return path, ()
