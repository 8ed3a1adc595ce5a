"""What qrctl prints: a readable table on a terminal, tab-separated rows without decoration when
stdout is a pipe or a file, and the API's JSON unchanged with ``--json``. Data goes to stdout;
messages go to stderr."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def _cell(value: Any, *, terminal: bool) -> str:
    if value is None:
        return "-" if terminal else ""
    if isinstance(value, bool):
        return "yes" if value and terminal else "no" if terminal else str(value).lower()
    if isinstance(value, list):
        value = ",".join(str(item) for item in value)
    text = str(value)
    # One record per line, one field per tab: whatever a title holds must not break the rows.
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def table(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    terminal = sys.stdout.isatty()
    rows = [[_cell(record.get(column), terminal=terminal) for column in columns] for record in records]
    if not terminal:
        for row in rows:
            print("\t".join(row))
        return
    widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    print(
        "  ".join(column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()
    )
    for row in rows:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def one(record: dict[str, Any], fields: Sequence[str]) -> None:
    if not sys.stdout.isatty():
        table([record], fields)
        return
    width = max(len(field) for field in fields)
    for field in fields:
        print(f"{field.ljust(width)}  {_cell(record.get(field), terminal=True)}")


def message(text: str) -> None:
    print(text, file=sys.stderr)


def line(text: str) -> None:
    """A line of a command's output (stdout)."""
    print(text)


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """The values at a glance, one block character each (the highest a full block)."""
    top = max(values, default=0)
    if not top:
        return _BARS[0] * len(values)
    return "".join(
        _BARS[min(len(_BARS) - 1, value * len(_BARS) // (top + 1))] if value else " " for value in values
    )


class Progress:
    """Bytes so far on one line of stderr, redrawn at most ten times a second; only on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = 0.0
        self.terminal = sys.stderr.isatty()

    def update(self, done: int) -> None:
        import time

        now = time.monotonic()
        if self.terminal and now - self.shown >= 0.1:
            self.shown = now
            sys.stderr.write(f"\r{self.label}: {done / 2**20:,.1f} MiB")
            sys.stderr.flush()

    def close(self) -> None:
        if self.terminal and self.shown:
            sys.stderr.write("\n")
