from __future__ import annotations

import pytest

from services.qrctl.output import _cell


@pytest.mark.parametrize(
    ("value", "terminal", "shown"),
    [
        (None, True, "-"),
        (None, False, ""),
        (True, True, "yes"),
        (False, False, "false"),
        (["a", "b"], False, "a,b"),
        ("tab\there\nnew\rline", False, "tab here new line"),
        (302, False, "302"),
    ],
)
def test_cells_never_break_a_row(value: object, terminal: bool, shown: str) -> None:
    assert _cell(value, terminal=terminal) == shown
