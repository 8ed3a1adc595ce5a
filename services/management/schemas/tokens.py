"""The service's bearer tokens as the API takes and answers them (``/api/v1/tokens``); qr-manage's
``token create`` reads its arguments with the same model, so both refuse the same things."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from services.management.schemas.answers import Answer
from services.management.schemas.bodies import RequestBody
from services.management.schemas.fields import Tags

# A token's name: what the history and the audit log show for what it did.
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
MAX_TOKEN_DAYS = 3650  # ten years: a token without an end is asked for by leaving the field out
RoleName = Literal["viewer", "editor", "admin"]


class NewToken(RequestBody):
    """A token to make: shown once in the answer, then never again."""

    unknown: ClassVar[str] = "is not a field of a token"

    name: Annotated[str, Field(pattern=NAME_PATTERN)] = Field(
        description="Letters, digits and _ . @ -, at most 64; never reused, even once revoked."
    )
    role: RoleName = Field(description="viewer < editor < admin (docs/roles.md).")
    tags: Tags | None = Field(
        default=None,
        description="The token sees and changes only codes carrying one of these; null or []: every code.",
    )
    expires_in_days: Annotated[int, Field(ge=1, le=MAX_TOKEN_DAYS)] | None = Field(
        default=None, description="Days until it stops working; null: until it is revoked."
    )


class TokenInfo(Answer):
    """A token as listed: never its secret nor anything made of it."""

    name: str
    role: RoleName
    tags: list[str] = Field(description="Empty: every code.")
    created_at: datetime
    created_by: str | None = Field(description="Who made it (a token's name, a person, qr-manage).")
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="To within a minute.")
    revoked_at: datetime | None


class TokenList(Answer):
    items: list[TokenInfo] = Field(description="Every token, revoked ones too, oldest first.")


class NewTokenMade(TokenInfo):
    token: str = Field(description="The token itself: shown this once, kept nowhere.")
