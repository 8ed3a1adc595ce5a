"""QR images: renders per second on one core against plain ``qrcode.make()`` of the same payload, and
a 512 px PNG through the service, rendered for the first time and answered again from memory."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import qrcode

from services.management.rendering import ImageOptions, render_png, render_svg
from tests.bench.report import Report, percentiles

PAYLOAD = "http://localhost:8080/r/k7m2qpzx9a"
RENDERS = 200
FIRST_RENDERS = 100
CACHED = 500


def _per_second(work: Any, count: int) -> float:
    work(0)  # imports and first-use costs out of the figure
    started = time.perf_counter()
    for n in range(count):
        work(n)
    return count / (time.perf_counter() - started)


def _plain(n: int) -> None:
    buffer = io.BytesIO()
    qrcode.make(f"{PAYLOAD}{n % 10}").save(buffer)


def run_in_process(report: Report) -> None:
    options = ImageOptions(size=512)
    baseline = report.add(
        "images",
        "plain qrcode.make() + PNG of the same payload, one core",
        _per_second(_plain, RENDERS),
        "renders/s",
    )
    ours = report.add(
        "images",
        "render_png 512 px, decoded by zxing-cpp before it is served",
        _per_second(lambda n: render_png(f"{PAYLOAD}{n % 10}", options), RENDERS),
        "renders/s",
    )
    report.ratio(ours, baseline)
    svg = report.add(
        "images",
        "render_svg 512, checked through a raster of the same drawing",
        _per_second(lambda n: render_svg(f"{PAYLOAD}{n % 10}", options), RENDERS),
        "renders/s",
    )
    report.ratio(svg, baseline)


def run_service(stack: Any, report: Report) -> None:
    base = f"http://127.0.0.1:{stack.settings.management_port}"
    with httpx.Client(base_url=base, timeout=30) as client:
        ids = []
        for n in range(FIRST_RENDERS):
            created = client.post("/api/v1/qr", json={"target_url": f"https://example.org/img/{n}"})
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])

        def timed(path: str) -> float:
            started = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text
            return elapsed

        first = [timed(f"/api/v1/qr/{code_id}/image.png?size=512") for code_id in ids]
        figures = percentiles(first)
        report.add(
            "images",
            "GET image.png?size=512, first request (rendered, checked, stored)",
            figures["p50_ms"],
            "ms p50",
            p99_ms=figures["p99_ms"],
        )
        again = [timed(f"/api/v1/qr/{ids[n % len(ids)]}/image.png?size=512") for n in range(CACHED)]
        figures = percentiles(again)
        report.add(
            "images",
            "the same again (from memory)",
            figures["p50_ms"],
            "ms p50",
            p99_ms=figures["p99_ms"],
        )
