"""Prometheus metrics both services share: the HTTP families, exposition, and batching.

Every service keeps its metrics in a registry it is given. With several worker processes
(``PROMETHEUS_MULTIPROC_DIR`` set, emptied by whoever starts them), values live in per-process files
and a scrape, reaching one worker, aggregates all of them.

In multiprocess mode a counter increment costs about 2.5 µs and a histogram observation 5.5 µs (file
writes under a lock), too much for the redirect hot path: there the counts are kept in plain Python
ints and buckets (:class:`Tally`), and published into the real metrics every second and at each scrape.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import re
from collections import Counter as Counts
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# No `*_created` series: one more per counter and histogram child that Prometheus stores and nothing
# here reads (a process's start time is in process_start_time_seconds). Process-wide in
# prometheus-client, and every service imports this module before declaring a metric.
disable_created_metrics()  # type: ignore[no-untyped-call]

# A redirect answers in well under a millisecond in-process; management calls and renders take longer.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
UNMATCHED_ROUTE = "__unmatched__"
# A client chooses the method; anything else is counted as OTHER, so that no one can mint series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


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
        if method not in KNOWN_METHODS:
            method = "OTHER"
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
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        forget_dead_workers(folder)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def forget_dead_workers(folder: str) -> None:
    """Drop the live gauges of worker processes that have exited (a crashed worker would otherwise
    report itself connected, or failing, until the next restart). Counters stay: they were counted."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for pid in {int(m.group(1)) for m in map(_LIVE_GAUGE_FILE.fullmatch, names) if m}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):  # another worker's scrape got there first
                multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, someone else's


def ensure_multiprocess_dir() -> None:
    """Create the multiprocess folder if it is named and missing (compose mounts a fresh tmpfs)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)


class DatabaseWatch:
    """Pings the database every few seconds into ``qr_database_up``, whatever the traffic: the alert
    on it must not depend on a cache miss happening while PostgreSQL is down.

    In multiprocess mode the gauge keeps the lowest of the live workers: one worker that cannot
    reach the database is enough to show 0.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        ping: Callable[[], Awaitable[object]],
        *,
        interval: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self._ping = ping
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.up = Gauge(
            "qr_database_up",
            "1 when the last ping of PostgreSQL (every 5 s) succeeded",
            multiprocess_mode="livemin",
            registry=registry,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="qr-database-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._ping()
        except Exception:  # any failure to answer in time is the finding
            self.up.set(0)
            return False
        self.up.set(1)
        return True

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval)
