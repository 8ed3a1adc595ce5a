"""What a code answers, as the redirect service keeps it: the unit of its cache and of its
lookups (services/redirect/queries.py reads it from the database, cache.py holds it, redirects.py
answers with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from services.redirect.contact import Contact
from services.redirect.rules import Routing


@dataclass(frozen=True, slots=True)
class CodeAnswer:
    """What a code answers: the ``Location`` bytes, its status, when it stops answering, and what
    it does then (``fallback``: a ``Location`` instead of 410)."""

    location: bytes
    status: int
    enabled: bool = True
    expires_at: float | None = None  # Unix time; None: never
    fallback: bytes | None = None
    forward_query: bool = False
    code_id: str = ""  # the id as stored (a scan of /r/menu is a scan of the code Menu)
    contact: Contact | None = None  # a dynamic contact: its page and card instead of a redirect
    rules: Routing | None = None  # its redirect rules, compiled (None: none, the location for every scan)

    def is_live(self, now: float) -> bool:
        return self.enabled and (self.expires_at is None or now < self.expires_at)


class Found(NamedTuple):
    """What the database says of an id: its target (``None``: no such code, or deleted), and
    whether other spellings of the id belong to other codes (made before ids were case-insensitive),
    so that the answer holds for the spelling asked only."""

    target: CodeAnswer | None
    shared: bool = False
