"""``make bench``: each figure beside its baseline, measured in the same run, printed as a table and
written to ``bench-results.json``.

It starts its own stack (embedded PostgreSQL in a temporary folder, both services, Traefik) on free
ports, with the edge's rate limits set so high that they never refuse (so they are measured as a
cost, not as a limit). Nothing here asserts a number: a timing assertion is a flaky test, not a
benchmark. Without wrk the redirect throughput rows are left out, and the table says how to get it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.bench import analytics, bulk, images, management, profile, redirect
from tests.bench.report import Report


@contextlib.contextmanager
def bench_stack() -> Iterator[Any]:
    from services.ops.settings import StackSettings
    from services.ops.stack import Stack
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory(prefix="qr-bench-") as tmp:
        var_dir = Path(tmp) / "var"
        names = ("EDGE_HTTP_PORT", "EDGE_HTTPS_PORT", "EDGE_ADMIN_PORT", "REDIRECT_PORT", "MANAGEMENT_PORT")
        environ = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
        environ.update({name: str(free_port()) for name in names})
        environ.update(
            QR_VAR_DIR=str(var_dir),
            BACKUP_DIR=str(var_dir / "backups"),
            QR_DATA_DIR=str(var_dir / "qr_data"),
            LOG_LEVEL="WARNING",
            RATE_LIMIT_AVERAGE="1000000",
            RATE_LIMIT_BURST="1000000",
            ADMIN_RATE_LIMIT_AVERAGE="1000000",
            ADMIN_RATE_LIMIT_BURST="1000000",
        )
        stack = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


SECTIONS = ("images", "management", "bulk", "redirect", "rules", "analytics")
ON_DEMAND = ("profile",)  # named only: where the edge path's CPU goes (tests/bench/profile.py)


def main(argv: list[str]) -> int:
    """Every section, or those named (``python -m tests.bench analytics``)."""
    wanted = set(argv) or set(SECTIONS)
    if unknown := wanted - set(SECTIONS) - set(ON_DEMAND):
        known = ", ".join(SECTIONS + ON_DEMAND)
        print(f"unknown section(s): {', '.join(sorted(unknown))}; known: {known}", file=sys.stderr)
        return 2
    report = Report()
    started = time.monotonic()
    if "images" in wanted:
        images.run_in_process(report)
    with bench_stack() as stack:
        if "images" in wanted:
            images.run_service(stack, report)
        if wanted & {"management", "bulk", "redirect"}:
            asyncio.run(management.run(stack, report))  # seeds the 100,000 codes the miss path asks for
        if "bulk" in wanted:
            bulk.run(stack, report)
        if "redirect" in wanted:
            redirect.run(stack, report)  # the rules' rows too
        elif "rules" in wanted:
            redirect.rules(stack, report)
        if "profile" in wanted:
            profile.run(stack, report)
        if "analytics" in wanted:  # last: it replaces every scan with its own 10 million
            asyncio.run(analytics.run(stack, report))
    report.note(f"total bench time {time.monotonic() - started:.0f} s")
    print(report.table())
    Path("bench-results.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
    print("written: bench-results.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
