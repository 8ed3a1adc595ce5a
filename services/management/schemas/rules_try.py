"""``POST /api/v1/qr/{id}/rules/try``: a made-up scanner, and what the code's rules would give it.

The answer comes from the evaluator the redirect service runs (:mod:`shared.rules`), on the code's
rules as stored: what a scanner in Paris on an iPhone on Saturday at 11:00 would get.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from services.management.schemas.answers import Answer
from services.management.schemas.bodies import RequestBody
from services.management.schemas.fields import Timestamp, printable
from services.management.schemas.rules import MAX_QUERY_PARAMETERS, MAX_VALUES, Country, QueryName, QueryValue

Header = Annotated[str, Field(max_length=512), AfterValidator(printable)]


class RulesTrial(RequestBody):
    """A made-up scan; what is left out is unknown (no agent is a device ``other``)."""

    unknown = "is not a field of a trial"

    agent: Header | None = Field(default=None, description="A User-Agent header, such as an iPhone's.")
    language: Header | None = Field(
        default=None, description="An Accept-Language header, such as de-CH,de;q=0.9."
    )
    country: Country | None = Field(default=None, description="The country the scan would come from.")
    moment: Timestamp | None = Field(default=None, description="When, with a time zone (default: now).")
    query: (
        Annotated[
            dict[
                QueryName,
                QueryValue | Annotated[list[QueryValue], Field(min_length=1, max_length=MAX_VALUES)],
            ],
            Field(max_length=MAX_QUERY_PARAMETERS),
        ]
        | None
    ) = Field(default=None, description="The scan's query string, as names and values.")
    visitor: Header | None = Field(
        default=None,
        description="Any text standing for one visitor: the same text, the same variant of a split.",
    )


class RulesTried(Answer):
    served: str = Field(description='What would send the scan: "rule N" (from 1), "variant x" or "default".')
    target_url: str = Field(description="Where it would be sent.")
    device: str = Field(description="The device the agent was taken for.")
    language: str | None = Field(description="The best language of the header, as the rules read it.")
