"""Code ids: the part of a short link after ``/r/``.

Two kinds share one namespace, unique without regard to case (``Menu`` and ``menu`` are one id).
Generated ids are drawn with :mod:`secrets` from an alphabet without the symbols people confuse
when they read a printed code aloud or retype it (``0/o``, ``1/l/i``), lower case only. Custom
ids ("slugs") are chosen by an administrator from ``[A-Za-z0-9_-]``.
The redirect service checks every id against :func:`is_well_formed` before any lookup.
"""

from __future__ import annotations

import math
import re
import secrets

ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
ID_LENGTH = 10
ID_BITS = ID_LENGTH * math.log2(len(ALPHABET))  # about 49.5 bits

SLUG_MIN, SLUG_MAX = 3, 64
ID_PATTERN = rf"^[A-Za-z0-9_-]{{{SLUG_MIN},{SLUG_MAX}}}$"
ID_RULE = f"must be {SLUG_MIN} to {SLUG_MAX} characters from A-Z, a-z, 0-9, '_' and '-'"
_WELL_FORMED = re.compile(ID_PATTERN)

# Slugs that would read as part of the service rather than as a code.
RESERVED_SLUGS = frozenset(
    {
        "admin",
        "api",
        "app",
        "assets",
        "bulk",  # POST /api/v1/qr/bulk
        "console",
        "export",
        "favicon.ico",
        "health",
        "livez",
        "login",
        "logout",
        "metrics",
        "openapi",
        "ping",
        "qr",
        "r",
        "readyz",
        "robots",
        "static",
        "status",
        "www",
    }
)


def new_id() -> str:
    """A fresh random id (not yet checked against the database)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def is_well_formed(value: str) -> bool:
    """Whether ``value`` could be an id or a slug at all; cheap enough for the hot path."""
    return _WELL_FORMED.fullmatch(value) is not None


def slug_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as a custom id, or ``None`` when it can."""
    if not is_well_formed(value):
        return ID_RULE
    if value.lower() in RESERVED_SLUGS:
        return f"'{value}' is reserved"
    return None
