"""The redirect service's metrics, declared against the registry the app is given.

The hot path and the components keep plain counters (ints, a :class:`~shared.metrics.Tally`);
:meth:`RedirectMetrics.publish` turns them into Prometheus values every second and at each scrape.
Labels are bounded: outcomes, route templates, statuses; never an id, an address or a URL.
"""

from __future__ import annotations

from collections import Counter as Counts
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.metrics import HttpMetrics, Tally, publish_delta

if TYPE_CHECKING:
    from services.redirect.app import RedirectApp

ROUTE = "/r/{id}"
OUTCOMES = ("hit", "miss", "stale", "not_found", "gone", "fallback", "unavailable", "rejected")


class RedirectMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http = HttpMetrics(registry)
        self.tally = Tally(self.http, ROUTE)
        self.outcomes_seen: Counts[str] = Counts()
        self.outcomes = Counter(
            "qr_redirect_outcomes_total",
            "Short-link requests by outcome: hit and miss (of the cache), stale (served while the database "
            "failed), not_found, gone (410), fallback, unavailable (503), rejected (405)",
            ["outcome"],
            registry=registry,
        )
        self.cache_entries = Gauge(
            "qr_redirect_cache_entries",
            "Codes held in the lookup cache",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.cache_evictions = Counter(
            "qr_redirect_cache_evictions_total",
            "Cache entries dropped: by a change notification or a flush, or for room",
            ["reason"],
            registry=registry,
        )
        self.invalidations = Counter(
            "qr_redirect_invalidations_total",
            "Change notifications received (kind: one id, or all)",
            ["kind"],
            registry=registry,
        )
        self.listener_connected = Gauge(
            "qr_redirect_listener_connected",
            "Change listeners connected (one per worker when all is well)",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.listener_reconnects = Counter(
            "qr_redirect_listener_reconnects_total",
            "Times a change listener lost its connection",
            registry=registry,
        )
        self.database_failing = Gauge(
            "qr_redirect_database_failing",
            "Workers whose last lookup failed (answering from cache, 503 for the rest)",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.scans_buffered = Gauge(
            "qr_scans_buffered", "Scans waiting to be written", multiprocess_mode="livesum", registry=registry
        )
        self.scans_written = Counter(
            "qr_scans_written_total", "Scans written to the database", registry=registry
        )
        self.scans_dropped = Counter(
            "qr_scans_dropped_total",
            "Scans lost: buffer full, refused by the database, or left at shutdown",
            registry=registry,
        )
        self.pool_connections = Gauge(
            "qr_db_pool_connections",
            "Lookup pool connections by state",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.workers = Gauge(
            "qr_redirect_workers",
            "Redirect worker processes running",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._last: dict[str, int] = {}

    def publish(self, app: RedirectApp) -> None:
        """Move what the components counted since the last call into the Prometheus values."""
        self.tally.publish()
        self.http.in_progress.labels(ROUTE).set(app.endpoint.in_flight)
        self.workers.set(1)
        for outcome, n in self.outcomes_seen.items():
            self.outcomes.labels(outcome).inc(n)
        self.outcomes_seen.clear()
        cache, listener, recorder = app.cache, app.listener, app.recorder
        self.cache_entries.set(len(cache))
        for reason, n in cache.evictions.items():
            publish_delta(self.cache_evictions.labels(reason), n, self._last, f"evict:{reason}")
        for kind, n in listener.received.items():
            publish_delta(self.invalidations.labels(kind), n, self._last, f"notify:{kind}")
        self.listener_connected.set(1 if listener.connected.is_set() else 0)
        publish_delta(self.listener_reconnects, listener.reconnects, self._last, "reconnects")
        self.database_failing.set(1 if app.resolver.database_failing else 0)
        self.scans_buffered.set(recorder.buffered)
        publish_delta(self.scans_written, recorder.written, self._last, "written")
        publish_delta(self.scans_dropped, recorder.dropped, self._last, "dropped")
        pool = app.database.pool_or_none
        if pool is not None:
            in_use = pool.get_size() - pool.get_idle_size()
            self.pool_connections.labels("in_use").set(in_use)
            self.pool_connections.labels("idle").set(pool.get_idle_size())
