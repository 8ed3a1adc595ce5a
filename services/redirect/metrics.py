"""The redirect service's metrics, declared against the registry the app is given.

The hot path and the components keep plain counters (ints, a :class:`~shared.metrics.Tally`), and
each component hands out its own in a small ``stats()`` record; :meth:`RedirectMetrics.publish`
turns those into Prometheus values every second and at each scrape. Labels are bounded: outcomes,
route templates, statuses; never an id, an address or a URL.
"""

from __future__ import annotations

import math
from collections import Counter as Counts
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.redirect.cache import CacheStats
from services.redirect.listener import ListenerStats
from services.redirect.replica import ReplicaState
from services.redirect.scans import ScanStats
from shared.metrics import HttpMetrics, Tally, publish_delta

ROUTE = "/r/{id}"


@dataclass(frozen=True)
class PoolStats:
    in_use: int
    idle: int


@dataclass(frozen=True)
class Readings:
    """Everything the redirect service's components counted, read through their ``stats()``."""

    in_flight: int
    database_failing: bool
    cache: CacheStats
    listener: ListenerStats
    scans: ScanStats
    pool: PoolStats | None  # None before the lifespan opened it
    replica: tuple[ReplicaState, dict[str, int]] | None = None  # with REDIRECT_DATABASE_URL a replica


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
            "Cache entries made stale (looked up again, kept for outages) by a change notification or a "
            "flush, dropped because their code stopped answering (stopped), or dropped for room (capacity)",
            ["reason"],
            registry=registry,
        )
        self.invalidations = Counter(
            "qr_redirect_invalidations_total",
            "Change notifications received (kind: one id, all, new codes only, or a code stopped)",
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
        self.replica_lag = Gauge(
            "qr_replica_lag_seconds",
            "How far the lookups' replica is behind the primary (-1: not reached)",
            multiprocess_mode="max",
            registry=registry,
        )
        self.replica_usable = Gauge(
            "qr_replica_usable",
            "1 while lookups go to the replica, 0 while the primary answers them",
            multiprocess_mode="min",
            registry=registry,
        )
        self.lookups = Counter(
            "qr_lookups_total",
            "Cache-miss lookups by the server that answered them",
            ["source"],
            registry=registry,
        )
        self._last: dict[str, int] = {}

    def publish(self, readings: Readings) -> None:
        """Move what the components counted since the last call into the Prometheus values."""
        self.tally.publish()
        self.http.in_progress.labels(ROUTE).set(readings.in_flight)
        self.workers.set(1)
        for outcome, n in self.outcomes_seen.items():
            self.outcomes.labels(outcome).inc(n)
        self.outcomes_seen.clear()
        self.cache_entries.set(readings.cache.entries)
        for reason, n in readings.cache.evictions.items():
            publish_delta(self.cache_evictions.labels(reason), n, self._last, f"evict:{reason}")
        listener = readings.listener
        for kind, n in listener.received.items():
            publish_delta(self.invalidations.labels(kind), n, self._last, f"notify:{kind}")
        self.listener_connected.set(1 if listener.connected else 0)
        publish_delta(self.listener_reconnects, listener.reconnects, self._last, "reconnects")
        self.database_failing.set(1 if readings.database_failing else 0)
        self.scans_buffered.set(readings.scans.buffered)
        publish_delta(self.scans_written, readings.scans.written, self._last, "written")
        publish_delta(self.scans_dropped, readings.scans.dropped, self._last, "dropped")
        if readings.replica is not None:
            state, lookups = readings.replica
            lag = state.lag_seconds
            self.replica_lag.set(lag if lag is not None and math.isfinite(lag) else -1)
            self.replica_usable.set(1 if state.usable else 0)
            for source, n in lookups.items():
                publish_delta(self.lookups.labels(source), n, self._last, f"lookups:{source}")
        if readings.pool is not None:
            self.pool_connections.labels("in_use").set(readings.pool.in_use)
            self.pool_connections.labels("idle").set(readings.pool.idle)
