"""Request bodies: a code as a client creates it (the one list of a code's fields) and the changes
it may make. Strict: unknown fields are refused, and nothing is coerced."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from services.management import limits
from services.management.schemas.answers import QRCode
from services.management.schemas.fields import (
    Destination,
    Shown,
    Slug,
    Status,
    Tags,
    Timestamp,
    Title,
    kind_of,
)
from services.management.schemas.rules import Rules, Split


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
    rules: Rules = Field(default_factory=list)
    split: Split | None = Field(default=None, description="null: no split.")

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
    rules: Rules = Field(default=_NOT_SENT, description="[] removes every rule.")
    split: Split | None = Field(default=None, description="null removes the split.")

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, with their values as stored."""
        return _as_stored(self.model_dump(include=self.model_fields_set))


def _as_stored(values: dict[str, Any]) -> dict[str, Any]:
    """Field values as the columns hold them: a list left out (null) is an empty one."""
    for name, value in values.items():
        if value is None and kind_of(NewQRCode.model_fields[name]) == "list":
            values[name] = []
    return values


# Fields a client cannot write, and what it is told when it tries.
NewQRCode.refused = _read_only_fields()
QRCodeChanges.refused = {**_read_only_fields(), "slug": "is chosen once, at creation"}
