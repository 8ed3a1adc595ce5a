"""Roles: ``viewer`` < ``editor`` < ``admin``, each allowed what the one below is, and more.

- ``viewer``: read codes, images, exports, statistics.
- ``editor``: also create and change codes, bulk uploads, logos.
- ``admin``: also delete codes, erase scans, manage tokens, read the audit log.

Each operation of the API's table (api/operations.py) and each console page declares the role it
needs; docs/roles.md is the matrix.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    viewer = "viewer"
    editor = "editor"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_RANK = {Role.viewer: 0, Role.editor: 1, Role.admin: 2}
