"""Prometheus metrics both services share: the HTTP families, exposition, and batching.

Every service keeps its metrics in a registry it is given. With several worker processes
(``PROMETHEUS_MULTIPROC_DIR`` set, emptied by whoever starts them), values live in per-process files
and a scrape, reaching one worker, aggregates all of them.

In multiprocess mode a counter increment costs about 2.5 µs and a histogram observation 5.5 µs (file
writes under a lock), too much for the redirect hot path: there the counts are kept in plain Python
ints and buckets (:class:`Tally`), and published into the real metrics every second and at each scrape.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import Counter as Counts

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A redirect answers in well under a millisecond in-process; management calls and renders take longer.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "__unmatched__"


class HttpMetrics:
    """Requests by method, route template and status; durations; requests in progress."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "qr_http_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "qr_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "qr_http_requests_in_progress",
            "HTTP requests being answered",
            ["route"],
            multiprocess_mode="livesum",
            registry=registry,
        )


class Tally:
    """Counts and durations of one route, kept as plain numbers on the hot path and published in
    bulk. Publishing a histogram in bulk touches prometheus-client's per-bucket values (the same
    ones ``observe`` increments); a test checks the exposition against ``observe``."""

    def __init__(self, http: HttpMetrics, route: str) -> None:
        self._http = http
        self._route = route
        self.answers: Counts[tuple[str, int]] = Counts()  # (method, status) -> requests
        self._bounds = list(LATENCY_BUCKETS)
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def count(self, method: str, status: int, seconds: float) -> None:
        self.answers[(method, status)] += 1
        buckets = self._buckets.get(method)
        if buckets is None:
            buckets = self._buckets[method] = [0] * (len(self._bounds) + 1)
            self._sums[method] = 0.0
        buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        self._sums[method] += seconds

    def publish(self) -> None:
        for (method, status), n in self.answers.items():
            self._http.requests.labels(method, self._route, str(status)).inc(n)
        self.answers.clear()
        for method, buckets in self._buckets.items():
            child = self._http.duration.labels(method, self._route)
            for index, n in enumerate(buckets):
                if n:
                    child._buckets[index].inc(n)
            child._sum.inc(self._sums[method])
        self._buckets.clear()
        self._sums.clear()


def publish_delta(counter: Counter, current: int, last: dict[str, int], key: str = "") -> None:
    """Add to ``counter`` what a plain running total ``current`` gained since the last call."""
    gained = current - last.get(key, 0)
    if gained > 0:
        counter.inc(gained)
    last[key] = current


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text a scrape gets: every worker's values in multiprocess mode, else the registry's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def ensure_multiprocess_dir() -> None:
    """Create the multiprocess folder if it is named and missing (compose mounts a fresh tmpfs)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)


async def observed(app: ASGIApp, http: HttpMetrics, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app`` for one HTTP request and count it (for routes off the hot path: one observation
    each). The route label is the matched template, never the raw path."""
    started = time.perf_counter()
    status = 500

    async def send_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    route_template = UNMATCHED_ROUTE
    http.in_progress.labels("other").inc()
    try:
        await app(scope, receive, send_status)
    finally:
        http.in_progress.labels("other").dec()
        route = scope.get("route")
        route_template = getattr(route, "path", UNMATCHED_ROUTE)
        http.requests.labels(scope["method"], route_template, str(status)).inc()
        http.duration.labels(scope["method"], route_template).observe(time.perf_counter() - started)
