from __future__ import annotations

import math
import random

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import HttpMetrics, Tally


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
            if not sample.name.endswith("_created")
        }

    bulk_samples, direct_samples = samples(bulk_registry), samples(direct_registry)
    assert bulk_samples.keys() == direct_samples.keys()
    for key, value in direct_samples.items():
        assert math.isclose(bulk_samples[key], value, rel_tol=1e-9), key  # sums differ in float rounding only
