from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import HttpMetrics, Tally, exposition


def test_a_bulk_published_tally_equals_observing_one_by_one() -> None:
    bulk_registry, direct_registry = CollectorRegistry(), CollectorRegistry()
    bulk, direct = HttpMetrics(bulk_registry), HttpMetrics(direct_registry)
    tally = Tally(bulk, "/r/{id}")
    rng = random.Random(3)
    for _ in range(5000):
        method = rng.choice(["GET", "HEAD"])
        status = rng.choice([302, 404, 410])
        seconds = rng.choice([0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.2, 7.0, 30.0])
        tally.count(method, status, seconds)
        direct.requests.labels(method, "/r/{id}", str(status)).inc()
        direct.duration.labels(method, "/r/{id}").observe(seconds)
        if rng.random() < 0.01:
            tally.publish()
    tally.publish()

    def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(registry).decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    bulk_samples, direct_samples = samples(bulk_registry), samples(direct_registry)
    assert bulk_samples.keys() == direct_samples.keys()
    for key, value in direct_samples.items():
        assert math.isclose(bulk_samples[key], value, rel_tol=1e-9), key  # sums differ in float rounding only


WORKER = """
import os, signal
from prometheus_client import CollectorRegistry, Counter, Gauge
registry = CollectorRegistry()
Gauge("qr_test_workers", "w", multiprocess_mode="livesum", registry=registry).set(1)
Counter("qr_test_answers", "a", registry=registry).inc(3)
print("ready", flush=True)
if os.environ["STAY"] == "1":
    signal.pause()
"""


def test_a_dead_workers_live_gauges_go_its_counts_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    subprocess.run([sys.executable, "-c", WORKER], env={**env, "STAY": "0"}, check=True, capture_output=True)
    alive = subprocess.Popen([sys.executable, "-c", WORKER], env={**env, "STAY": "1"}, stdout=subprocess.PIPE)
    try:
        assert alive.stdout is not None
        assert alive.stdout.readline() == b"ready\n"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
        text = exposition(CollectorRegistry())[0].decode()
        assert "qr_test_workers 1.0" in text  # the dead one no longer counts
        assert "qr_test_answers_total 6.0" in text  # but what it counted does
        assert len(list(folder.glob("gauge_livesum_*.db"))) == 1
    finally:
        alive.kill()
        alive.wait()
        alive.stdout.close()
    assert "qr_test_workers" not in exposition(CollectorRegistry())[0].decode()


def test_made_up_methods_are_counted_as_other() -> None:
    registry = CollectorRegistry()
    tally = Tally(HttpMetrics(registry), "/r/{id}")
    for method in ("GET", "FOO", "get", "X" * 500):
        tally.count(method, 405, 0.001)
    tally.publish()
    methods = {
        sample.labels["method"]
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
        if "method" in sample.labels
    }
    assert methods == {"GET", "OTHER"}
