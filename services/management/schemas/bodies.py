"""Request bodies: a code as a client creates it (the one list of a code's fields) and the changes
it may make. Strict: unknown fields are refused, and nothing is coerced."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from services.management import contents, limits
from services.management.errors import InvalidValue
from services.management.schemas.answers import QRCode
from services.management.schemas.fields import (
    DESIGN_DESCRIPTIONS,
    Colour,
    Destination,
    FinderShape,
    FrameKind,
    FramePosition,
    FrameText,
    GradientKind,
    ModuleShape,
    Shown,
    Slug,
    Status,
    Tags,
    Timestamp,
    Title,
    design_from,
    design_problem,
    kind_of,
)
from services.management.schemas.rules import Rules, Split


class RequestBody(BaseModel):
    """A request body: strict, and nothing unknown."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # Known names that are not fields here, and what a client sending one is told.
    refused: ClassVar[dict[str, str]] = {}
    unknown: ClassVar[str] = "is not a field of a QR code"


class CodeDesign(RequestBody):
    """A code's saved design: what its images, the console's preview and exports draw when a request
    names no design option (nor fg or bg). The image options of the same names, with the same rules."""

    fg: Colour = Field(default=limits.DEFAULT_FG, description="Module colour, hex.")
    bg: Colour = Field(default=limits.DEFAULT_BG, description="Ground colour, hex.")
    modules: ModuleShape = Field(default="square", description=DESIGN_DESCRIPTIONS["modules"])
    finder: FinderShape = Field(default="square", description=DESIGN_DESCRIPTIONS["finder"])
    finder_fg: Colour | None = Field(default=None, description=DESIGN_DESCRIPTIONS["finder_fg"])
    gradient: GradientKind | None = Field(default=None, description=DESIGN_DESCRIPTIONS["gradient"])
    fg2: Colour | None = Field(default=None, description=DESIGN_DESCRIPTIONS["fg2"])
    frame: FrameKind = Field(default="none", description=DESIGN_DESCRIPTIONS["frame"])
    frame_text: FrameText | None = Field(default=None, description=DESIGN_DESCRIPTIONS["frame_text"])
    frame_position: FramePosition | None = Field(
        default=None, description=DESIGN_DESCRIPTIONS["frame_position"]
    )
    frame_url: bool | None = Field(default=None, description=DESIGN_DESCRIPTIONS["frame_url"])

    @model_validator(mode="after")
    def _consistent(self) -> CodeDesign:
        from services.management.rendering import check_contrast

        problem = design_problem(self.model_dump())
        if problem is not None:
            raise ValueError(f"{problem[0]} {problem[1]}")
        try:
            check_contrast(self.fg, self.bg, design_from(self.model_dump()))
        except InvalidValue as exc:
            raise ValueError(str(exc)) from None
        return self


def _read_only_fields() -> dict[str, str]:
    writable = set(QRCodeChanges.model_fields) | {"slug"}
    return {name: "cannot be changed" for name in QRCode.model_fields if name not in writable}


# A code's fields, as a client creates it: the one list of them. What else names a code's fields reads
# it (the console's form, the bulk upload's CSV columns, the columns stored, exported and recorded in
# the history), but for the changes a PATCH may make and the code as answered, declared below.
class NewQRCode(RequestBody):
    # What the code carries (contents.py): chosen once, at creation, before its target or content.
    kind: Annotated[
        contents.Kind,
        Shown(
            "Kind",
            "url: a short link you can point elsewhere at any time. Every other kind is static: the image "
            "carries the content itself, which cannot change after printing.",
            notes={
                kind: "static unless dynamic"
                if kind in contents.DYNAMIC_KINDS
                else "static: cannot change after printing"
                for kind in contents.STATIC_KINDS
            },
        ),
    ] = Field(
        default="url",
        description="What the code carries. url: the short link, which redirects and can be re-pointed "
        "at any time. Every other kind is static: the images encode the content itself, so nothing "
        "can change after printing (a vcard with dynamic=true excepted).",
    )
    target_url: Annotated[
        Destination | None,
        Shown("Destination URL", "Where the code sends people: an absolute http or https URL.", "url"),
    ] = Field(
        default=None,
        validate_default=True,
        description="Where the code sends people: an absolute http(s) URL. Required for a url code; "
        "left out for the other kinds (answered as an empty string).",
    )
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
        Tags | None,
        Shown("Tags", "Optional, separated by commas, such as print, spring-menu (no | in a tag)."),
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

    design: Annotated[CodeDesign | None, Shown("Design", input="design")] = Field(
        default=None,
        description="The code's saved design: its images, previews and exports use it when a request "
        "names no design option, fg or bg. null: plain black squares.",
    )

    # The content of a kind other than url, and a contact's choice to stay dynamic (contents.py).
    content: Annotated[dict[str, Any] | None, Shown("Content", input="content")] = Field(
        default=None,
        description="The content of a kind other than url (null for url). wifi: ssid, password, security "
        "(WPA, WEP, none), hidden; vcard: name, organisation, title, phones, emails (lists), url, address, "
        "note; event: title, start, end (ISO 8601, wall-clock times in tz), tz, location, description; "
        "email: to, subject, body; sms: number, text; tel: number; geo: lat, lon; text: text. Limits: "
        f"ssid at most {contents.MAX_SSID_BYTES} bytes of UTF-8; password at most {contents.MAX_PASSWORD} "
        "characters (at least 8 for WPA); one-line fields (names, titles, subject) at most "
        f"{contents.MAX_LINE} characters, texts (address, note, description, body, text) at most "
        f"{contents.MAX_TEXT:,}; at most {contents.MAX_ITEMS} phones and {contents.MAX_ITEMS} e-mails; "
        "no field blank; tz an IANA time zone name; start and end dates with a time (no all-day events), "
        f"in the years {contents.MIN_EVENT_YEAR} to {contents.MAX_EVENT_YEAR}, end after start as instants. "
        "Refused (422, naming content.<field>) when its payload is more than a version-40 QR code holds "
        f"at the default error correction ({limits.DEFAULT_ECC}: "
        f"{contents.CAPACITY_BYTES[limits.DEFAULT_ECC]:,} bytes).",
    )
    dynamic: Annotated[
        bool,
        Shown(
            "Dynamic contact (vcard only)",
            "The code keeps a short link, whose page offers the contact's current card: edits reach the "
            "next scanner.",
        ),
    ] = Field(
        default=False,
        description="A vcard only: encode the short link instead, whose page (/r/{id}) offers the "
        "contact's current card to save (/r/{id}?download=vcf); edits reach the next scanner.",
    )

    @field_validator("target_url", mode="after")
    @classmethod
    def _target_of_its_kind(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A url code has a target (required); the other kinds have none (their content)."""
        kind = info.data.get("kind", "url")
        if kind == "url" and value is None:
            raise contents.refused("target_url", "is required")
        if kind != "url" and value is not None:
            raise contents.refused("target_url", f"is for url codes only; a {kind} code carries its content")
        return value

    @model_validator(mode="after")
    def _content_of_its_kind(self) -> Self:
        """A url code has no content; any other kind a content of its kind."""
        self.content = contents.content_of(self.kind, self.content, dynamic=self.dynamic)
        return self

    def writable(self) -> dict[str, Any]:
        """The values of the writable fields, as stored (no tags: an empty list), with the kind."""
        values = _as_stored(self.model_dump(include=set(QRCodeChanges.model_fields)))
        values.update(kind=self.kind, dynamic=self.dynamic, target_url=self.target_url or "")
        return values


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
    content: dict[str, Any] | None = Field(
        default=None,
        description="A dynamic vcard's new content; a static code's cannot change (it is in its images).",
    )
    design: CodeDesign | None = Field(default=None, description="A new saved design; null removes it.")
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
        elif isinstance(value, BaseModel | dict):  # a design: its JSON object, unset options left out
            dumped = value.model_dump() if isinstance(value, BaseModel) else value
            values[name] = {key: each for key, each in dumped.items() if each is not None}
    return values


# Fields a client cannot write, and what it is told when it tries.
NewQRCode.refused = _read_only_fields()
QRCodeChanges.refused = {**_read_only_fields(), "slug": "is chosen once, at creation"}
