"""What the management service's operations refuse, in their own terms: its domain errors.

Raised by the operations (:mod:`services.management.service`) and the code below them, never an
HTTP status. Each carries the field or parameter it concerns, when one does; each front end maps
them once to its own answer: the API to its JSON error shape (``api/answers.py``), the console to a
page, the message beside its field (``console/frame.py``).

::

    DomainError         message; field: the field or parameter it concerns (None: no one field)
    ├── CodeNotFound    no code with that id (or it was deleted)
    ├── LogoNotFound    the code has no logo
    ├── SlugTaken       the slug is taken, or was used before, in any case (field: slug)
    ├── InvalidValue    a value refused, with the reason (field: which)
    ├── BulkRefused     rows of a bulk request with errors: nothing was created
    ├── NotPermitted    the caller's role or tags do not allow it (a code outside its tags is CodeNotFound)
    ├── TokenNotFound   no such token, or it is revoked already
    ├── TokenNameTaken  a token has, or had, that name (field: name)
    ├── Unreadable      a body that is not what it says it is (not JSON, a CSV that is not UTF-8)
    └── TryAgain        a passing condition (the database away, no free id): retry after a moment
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.management.limits import MAX_ROW_ERRORS


class DomainError(Exception):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class CodeNotFound(DomainError):
    def __init__(self, code_id: str) -> None:
        super().__init__(f"no QR code with id '{code_id}'")
        self.code_id = code_id


class LogoNotFound(DomainError):
    def __init__(self, code_id: str) -> None:
        super().__init__(f"the code '{code_id}' has no logo")
        self.code_id = code_id


class SlugTaken(DomainError):
    """``slug`` is an id in use or used before; ``spelling``: that id, when it is spelt otherwise."""

    def __init__(self, slug: str, spelling: str | None = None) -> None:
        written = f" (as '{spelling}')" if spelling is not None and spelling != slug else ""
        super().__init__(
            f"the id '{slug}' is taken or was used before{written}; ids are the same whatever their case",
            field="slug",
        )


class InvalidValue(DomainError):
    """A value of ``field`` refused for ``reason`` (the message says both)."""

    field: str

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)
        self.reason = reason


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class Refusals:
    """The errors of the rows refused, as reported: the first MAX_ROW_ERRORS in row order; the rest
    only counted (``omitted``), so that a body of 10,000 bad rows costs no more than a list of
    MAX_ROW_ERRORS. ``rows`` counts the rows refused."""

    errors: list[RowError] = field(default_factory=list)
    omitted: int = 0
    rows: int = 0

    def __bool__(self) -> bool:
        return self.rows > 0

    def refuse(self, number: int, problems: Iterable[tuple[str, str]]) -> None:
        """Row ``number``, refused for ``problems`` (field, message); rows come in their order."""
        self.rows += 1
        for field_name, message in problems:
            if len(self.errors) < MAX_ROW_ERRORS:
                self.errors.append(RowError(number, field_name, message))
            else:
                self.omitted += 1

    def with_rows(self, others: Iterable[RowError]) -> Refusals:
        """These and ``others``, one error each for rows not refused yet (slugs found taken)."""
        extra = list(others)
        merged = sorted([*self.errors, *extra], key=lambda e: e.row)  # stable: a row's order kept
        listed = merged[:MAX_ROW_ERRORS]
        return Refusals(listed, self.omitted + len(merged) - len(listed), self.rows + len(extra))


class BulkRefused(DomainError):
    """Rows with errors, nothing created: the first MAX_ROW_ERRORS errors, and how many more."""

    def __init__(self, refusals: Refusals) -> None:
        rows = refusals.rows
        message = f"{rows:,} row{'s' if rows != 1 else ''} cannot be created; nothing was created"
        if refusals.omitted:
            message += (
                f" (the first {len(refusals.errors):,} errors are listed, {refusals.omitted:,} more are not)"
            )
        super().__init__(message)
        self.errors = refusals.errors
        self.omitted = refusals.omitted


class NotPermitted(DomainError):
    pass


class TokenNotFound(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no token named '{name}' that is not revoked")
        self.name = name


class TokenNameTaken(DomainError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a token is, or was, named '{name}': names are never reused", field="name")


class Unreadable(DomainError):
    pass


class TryAgain(DomainError):
    """A condition that passes: ``retry_after`` seconds is a fair wait."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
