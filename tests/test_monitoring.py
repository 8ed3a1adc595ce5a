"""Monitoring as code: the alert rules pass their unit tests, the Prometheus configuration is valid,
and every dashboard query names metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.management.app import create_app as create_management
from services.management.settings import ManagementSettings
from services.redirect.app import RedirectApp
from services.redirect.settings import RedirectSettings

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)"
)


def exported_names() -> set[str]:
    """Every metric the two apps declare, taken from the apps themselves (nothing is connected)."""
    names: set[str] = set()
    dsn = "postgresql://qr@127.0.0.1:1/qr"
    redirect = RedirectApp(RedirectSettings(lookup_database_url=dsn, primary_database_url=dsn))
    management = CollectorRegistry()
    create_management(ManagementSettings.from_env({"DATABASE_URL": dsn}), registry=management)
    for registry in (redirect.metrics.registry, management):
        for family in registry.collect():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names |= {f"{family.name}_bucket", f"{family.name}_count", f"{family.name}_sum"}
            else:
                names.add(family.name)
    return names


def test_every_dashboard_and_alert_query_names_real_metrics() -> None:
    dashboard = json.loads((ROOT / "infra" / "grafana" / "dashboards" / "qr-service.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions.append((PROMETHEUS_DIR / "alerts.yml").read_text())
    known = exported_names()
    used = {name for expr in expressions for name in re.findall(r"\bqr_[a-z0-9_]+", expr)}
    used -= {name for name in used if name.startswith("qr_http_requests_5xx") or name == "qr_http_requests"}
    assert used, "the scan found no metric names"
    assert used - known == set()
    assert len(dashboard["panels"]) >= 8


@needs_promtool
def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_prometheus_configuration_is_valid() -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "config", "prometheus.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
