"""A real Prometheus (Debian's package) with the project's configuration and rules, scraping a
running stack: every target up, and the redirect counters move with traffic."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from services.ops.processes import spawn, wait_ready
from tests.conftest import free_port
from tests.e2e.conftest import RunningStack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="prometheus not installed (Debian: apt-get install prometheus)",
    ),
]

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


def query(base: str, expression: str) -> float | None:
    result = httpx.get(f"{base}/api/v1/query", params={"query": expression}, timeout=5).json()["data"][
        "result"
    ]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_every_target_and_sees_redirects(
    running_stack: RunningStack, tmp_path: Path
) -> None:
    s = running_stack.settings
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {"redirect": s.redirect_port, "management": s.management_port, "traefik": s.edge_admin_port}
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["scrape_configs"][0]["dns_sd_configs"][0]["names"] == ["redirect"]  # every replica
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs", None)  # no Docker DNS here: the local stack's one address
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prometheus = spawn(
        "prometheus",
        [
            str(shutil.which("prometheus")),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        env=dict(os.environ),
    )
    try:
        wait_ready(prometheus, f"{base}/-/ready", timeout=60)
        deadline = time.monotonic() + 30
        while True:
            active = httpx.get(f"{base}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in active}
            if health == {"redirect": "up", "management": "up", "traefik": "up"}:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.5)
        rules = httpx.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {rule["name"] for group in rules for rule in group["rules"]} >= {
            "QrRedirectErrors",
            "QrScansDropped",
        }

        code = httpx.post(
            f"{running_stack.edge}/api/v1/qr", json={"target_url": "https://example.org/p"}
        ).json()
        expression = 'sum(qr_redirect_outcomes_total{job="redirect",outcome=~"hit|miss"})'
        time.sleep(2.5)
        before = query(base, expression) or 0.0
        for _ in range(25):
            assert httpx.get(f"{running_stack.edge}/r/{code['id']}", timeout=5).status_code == 302
        deadline = time.monotonic() + 20
        while (query(base, expression) or 0.0) < before + 25:
            assert time.monotonic() < deadline, (before, query(base, expression))
            time.sleep(0.5)
        assert query(base, 'sum(qr_http_requests_total{job="management",route="/api/v1/qr",status="201"})')
        assert query(base, "sum(traefik_entrypoint_requests_total)")
    finally:
        prometheus.stop()


def test_promtool_finds_nothing_to_say_about_either_exposition(running_stack: RunningStack) -> None:
    s = running_stack.settings
    for port in (s.redirect_port, s.management_port):
        httpx.get(f"{running_stack.edge}/r/not-a-code", timeout=5)  # something counted
        exposition = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "_created" not in exposition  # no series per child that nothing reads
        result = subprocess.run(
            [str(shutil.which("promtool")), "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == result.stderr.strip() == "", result.stdout + result.stderr
