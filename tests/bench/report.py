"""Collecting figures with their baselines, and printing them as one table."""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass, field
from typing import Any


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


@dataclass
class Row:
    section: str
    name: str
    value: float
    unit: str
    baseline: str | None = None
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def add(self, section: str, name: str, value: float, unit: str, **extra: Any) -> Row:
        row = Row(section, name, value, unit, extra=extra)
        self.rows.append(row)
        return row

    def ratio(self, row: Row, baseline: Row) -> None:
        """``row`` against ``baseline``; for two rows measured in the same rounds, the median of the
        rounds' own ratios (each round runs both back to back, so that what the machine does
        meanwhile falls on both alike), else the ratio of their values."""
        row.baseline = baseline.name
        ours, theirs = row.extra.get("rounds"), baseline.extra.get("rounds")
        if ours and theirs and len(ours) == len(theirs) and all(theirs):
            row.ratio = round(statistics.median(a / b for a, b in zip(ours, theirs, strict=True)), 3)
        else:
            row.ratio = round(row.value / baseline.value, 3) if baseline.value else None

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self) -> str:
        lines = [f"{'section':<12} {'measurement':<58} {'value':>12} {'unit':<8} {'ratio':>7}  baseline"]
        for row in self.rows:
            ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
            extra = "  " + ", ".join(f"{k}={v}" for k, v in row.extra.items()) if row.extra else ""
            lines.append(
                f"{row.section:<12} {row.name:<58} {row.value:>12,.1f} {row.unit:<8} {ratio:>7}  "
                f"{row.baseline or ''}{extra}"
            )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count()},
            "rows": [row.__dict__ for row in self.rows],
            "notes": self.notes,
        }
