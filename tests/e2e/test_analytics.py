"""Scan statistics through the edge: real phones' and bots' agents land in the right columns."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.agents import ANDROID, GOOGLEBOT, IPHONE
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
WHATSAPP = "WhatsApp/2.24.6.77 A"


def scan(
    edge: str, code_id: str, agent: str | None, *, source: str = "127.0.0.1", method: str = "GET"
) -> None:
    """One scan from ``source``; ``agent`` ``None`` sends no User-Agent header at all."""
    with httpx.Client(
        base_url=edge, timeout=10, transport=httpx.HTTPTransport(local_address=source)
    ) as client:
        if agent is None:
            del client.headers["user-agent"]
        else:
            client.headers["user-agent"] = agent
        response = client.request(method, f"/r/{code_id}")
        assert response.status_code == 302, response.text


def report_when(admin: httpx.Client, code_id: str, total: int) -> dict[str, Any]:
    """The code's report once the writer has flushed ``total`` scans (it does so every second)."""
    deadline = time.monotonic() + 15
    while True:
        report = admin.get(f"/api/v1/qr/{code_id}/scans").json()
        if report["total"] >= total or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def test_people_bots_and_visitors_through_the_edge(running_stack: RunningStack) -> None:
    with httpx.Client(base_url=running_stack.edge, timeout=10) as admin:
        code = admin.post("/api/v1/qr", json={"target_url": "https://example.org/menu"}).json()
        code_id = code["id"]
        for _ in range(5):  # one visitor scanning five times
            scan(running_stack.edge, code_id, IPHONE)
        scan(running_stack.edge, code_id, ANDROID)  # the same address, another phone: another visitor
        scan(running_stack.edge, code_id, ANDROID, source="127.0.0.2")  # a third, elsewhere
        for bot in (GOOGLEBOT, SLACKBOT, WHATSAPP, "", None):
            scan(running_stack.edge, code_id, bot)
        for _ in range(3):  # HEAD requests are answered and never counted
            scan(running_stack.edge, code_id, IPHONE, method="HEAD")

        report = report_when(admin, code_id, 12)
        time.sleep(1.5)  # a HEAD that had been recorded by mistake would be flushed by now
        report = admin.get(f"/api/v1/qr/{code_id}/scans").json()

    assert (report["total"], report["people"], report["bots"]) == (12, 7, 5), report
    assert report["unique"] == 3
    assert report["series"][-1]["unique"] == 3  # today's bucket, in UTC: exact
    top = report["top"]
    assert top["browsers"] == [{"value": "Mobile Safari", "count": 5}, {"value": "Chrome Mobile", "count": 2}]
    assert top["os"] == [{"value": "iOS", "count": 5}, {"value": "Android", "count": 2}]
    assert {entry["value"] for entry in top["devices"]} == {"iPhone", "Pixel 8"}
    assert top["bot_reasons"] == [
        {"value": "link-preview", "count": 2},
        {"value": "no-user-agent", "count": 2},
        {"value": "crawler", "count": 1},
    ]
    assert top["referrers"] == []  # nobody sent one
    assert top["countries"] is None  # no GEOIP_DATABASE in this stack
    assert report["first_scan_at"] is not None
    assert report["last_scan_at"] >= report["first_scan_at"]
