"""Checks every exposition in the tests passes: parsed by prometheus-client, named by convention,
labelled with bounded label sets only."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import KNOWN_METHODS

METHODS = KNOWN_METHODS | {"OTHER"}  # a client's made-up method never becomes a series

ALLOWED_LABELS = {
    "method",
    "route",
    "status",
    "outcome",
    "reason",
    "kind",
    "state",
    "action",
    "format",
    "result",
    "le",
}


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {labels: value}}, after checking the conventions."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("qr_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name  # no _created
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, (sample.name, sample.labels)
            assert sample.labels.get("method", "GET") in METHODS, (sample.name, sample.labels)
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)
