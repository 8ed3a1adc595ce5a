"""The management service's metrics, declared against the registry the app is given."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.backups import list_backups, taken_at
from shared.metrics import LATENCY_BUCKETS, HttpMetrics


class ManagementMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http = HttpMetrics(registry)
        self.code_changes = Counter(
            "qr_code_changes_total", "Codes created, updated and deleted", ["action"], registry=registry
        )
        self.renders = Counter(
            "qr_image_renders_total",
            "Images rendered (result: ok, or refused because they did not decode to the short link)",
            ["format", "result"],
            registry=registry,
        )
        self.render_duration = Histogram(
            "qr_image_render_duration_seconds",
            "Time to render and check an image",
            ["format"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.decode_failures = Counter(
            "qr_image_decode_failures_total",
            "Rendered images that did not decode to their payload",
            registry=registry,
        )
        self.image_store_hits = Counter(
            "qr_image_store_hits_total", "Images served from the store without rendering", registry=registry
        )
        self.image_memory_hits = Counter(
            "qr_image_memory_hits_total", "Images served from memory", registry=registry
        )
        self.image_memory_bytes = Gauge(
            "qr_image_memory_bytes",
            "Bytes of images held in memory (at most IMAGE_CACHE_BYTES per process)",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.backup_last = Gauge(
            "qr_backup_last_timestamp_seconds",
            "When the newest backup archive in BACKUP_DIR was taken, from its name (0: none)",
            multiprocess_mode="max",
            registry=registry,
        )

    def observe_backups(self, backup_dir: Path | None) -> None:
        """Read the newest archive's time (at scrape time: the backup job may run anywhere)."""
        archives = list_backups(backup_dir) if backup_dir is not None else []
        newest = taken_at(archives[-1]) if archives else None
        self.backup_last.set(newest.timestamp() if newest else 0)
