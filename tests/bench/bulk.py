"""Bulk and export: 10,000 codes in one request beside a plain COPY of the same rows (the code and
its history row, one transaction), the CSV export of every code (100,000 after the management
section's seed): its time, size, and the management process's peak memory before and after; and
a thousand codes as label sheets and as a ZIP of images."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared import ids
from shared.database import asyncpg_dsn
from tests.bench.report import Report

ROWS = 10_000
RUNS = 3  # each, the best kept: the first of a run also warms what it touches


def _rows(prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "target_url": f"https://example.org/{prefix}/{n}",
            "title": f"Table {n}",
            "tags": ["bench-bulk", prefix],
        }
        for n in range(ROWS)
    ]


async def _copy(dsn: str, prefix: str) -> float:
    """The floor: what the database takes for the same rows, sent the fastest way there is."""
    rows = _rows(prefix)
    connection = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        started = time.perf_counter()
        async with connection.transaction():
            codes = []
            for row in rows:
                code_id = ids.new_id()
                codes.append(
                    (code_id, f"http://localhost/r/{code_id}", row["target_url"], row["title"], row["tags"])
                )
            await connection.copy_records_to_table(
                "qr_codes", records=codes, columns=["id", "short_url", "target_url", "title", "tags"]
            )
            await connection.copy_records_to_table(
                "qr_code_changes",
                records=[
                    (code[0], "create", json.dumps({"target_url": {"old": None, "new": code[2]}}))
                    for code in codes
                ],
                columns=["code_id", "action", "changes"],
            )
        return time.perf_counter() - started
    finally:
        await connection.close()


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _management_pid(stack: Any) -> int | None:
    return next((child.pid for child in stack.children if child.name == "management service"), None)


def run(stack: Any, report: Report) -> None:
    base = f"http://127.0.0.1:{stack.settings.management_port}"
    copy = min(asyncio.run(_copy(stack.dsn, f"copy{n}")) for n in range(RUNS))
    baseline = report.add(
        "bulk", f"plain COPY of {ROWS:,} codes and their history, 1 transaction", ROWS / copy, "rows/s"
    )
    with httpx.Client(base_url=base, timeout=300) as client:
        for kind in ("json", "csv"):
            best = float("inf")
            for n in range(RUNS):
                rows = _rows(f"{kind}{n}")
                started = time.perf_counter()
                if kind == "json":
                    response = client.post("/api/v1/qr/bulk", json=rows)
                else:
                    body = "target_url,title,tags\n" + "".join(
                        f"{r['target_url']},{r['title']},{'|'.join(r['tags'])}\n" for r in rows
                    )
                    response = client.post(
                        "/api/v1/qr/bulk", content=body, headers={"content-type": "text/csv"}
                    )
                best = min(best, time.perf_counter() - started)
                assert response.status_code == 201, response.text[:300]
            row = report.add(
                "bulk",
                f"POST /api/v1/qr/bulk, {ROWS:,} rows as {kind.upper()} (direct)",
                ROWS / best,
                "rows/s",
                wall_s=round(best, 2),
            )
            report.ratio(row, baseline)

        pid = _management_pid(stack)
        before = _peak_rss_kib(pid) if pid else 0
        started = time.perf_counter()
        size = lines = 0
        with client.stream("GET", "/api/v1/qr/export.csv") as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
        after = _peak_rss_kib(pid) if pid else 0
        report.add(
            "bulk",
            f"GET /api/v1/qr/export.csv, {lines - 1:,} codes",
            elapsed,
            "s",
            mib=round(size / 2**20, 1),
            peak_rss_mib_before=round(before / 1024),
            peak_rss_mib_after=round(after / 1024),
        )

        # Label sheets of the first JSON run's 10,000 codes would take long; a thousand of them.
        client.post("/api/v1/qr/bulk", json=[{**row, "tags": ["bench-pdf"]} for row in _rows("pdf")[:1000]])
        started = time.perf_counter()
        response = client.get("/api/v1/qr/export.pdf", params={"tag": "bench-pdf"})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        report.add(
            "bulk",
            "GET /api/v1/qr/export.pdf, 1,000 codes (A4, 30 mm, 30 a page)",
            elapsed,
            "s",
            mib=round(len(response.content) / 2**20, 2),
            pages=len(re.findall(rb"/Type /Page\b(?!s)", response.content)),
        )
        started = time.perf_counter()
        response = client.get("/api/v1/qr/export.zip", params={"tag": "bench-pdf", "size": "600"})
        report.add(
            "bulk",
            "GET /api/v1/qr/export.zip, 1,000 PNG of 600 px (rendered and checked)",
            time.perf_counter() - started,
            "s",
            mib=round(len(response.content) / 2**20, 2),
        )
