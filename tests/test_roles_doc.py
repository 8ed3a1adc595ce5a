"""docs/roles.md is true: its matrix is the one the table of operations declares (each entry's
``role``), row for row. After a change of the table, ``python -m tests.test_roles_doc`` prints the
matrix to paste between the page's markers."""

from __future__ import annotations

from pathlib import Path

from services.management.api.operations import OPERATIONS
from services.management.auth.network import is_open
from services.management.auth.roles import Role

PAGE = Path(__file__).resolve().parent.parent / "docs" / "roles.md"
BEGIN = "<!-- matrix: generated from services/management/api/operations.py -->"
END = "<!-- end of matrix -->"


def matrix() -> str:
    lines = [
        "| operation | request | viewer | editor | admin |",
        "|---|---|:-:|:-:|:-:|",
    ]
    for operation in OPERATIONS:
        if is_open(operation.path):
            continue  # probes and metrics: answered for anyone
        marks = " | ".join("✓" if role.allows(operation.role) else "" for role in Role)
        request = f"`{operation.method.upper()} {operation.path}`"
        lines.append(f"| {operation.operation_id} | {request} | {marks} |")
    return "\n".join(lines)


def test_the_role_matrix_on_the_page_is_the_tables() -> None:
    text = PAGE.read_text()
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == matrix(), "docs/roles.md is out of date: python -m tests.test_roles_doc prints the matrix"


if __name__ == "__main__":
    import sys

    sys.stdout.write(matrix() + "\n")
