"""Redirect rules through the edge: real agents, Accept-Language headers, addresses a test GeoIP file
places in France, Belgium and Germany, query strings and the clock, each scan landing where the
code's rules say, and ``top.rules`` counting what each rule served. (Frozen moments on both sides of
each window, a change of Paris's clocks included, are tried on the same evaluator in
tests/shared/test_rules.py and through ``rules/try`` in tests/management/test_rules.py.)"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.ops import embedded
from tests.agents import ANDROID, FIREFOX, GOOGLEBOT, IPHONE
from tests.e2e.conftest import created, own_stack

pytestmark = pytest.mark.e2e

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Loopback addresses the test GeoIP file places (127.0.0.1: nowhere).
FRANCE, BELGIUM, GERMANY, NOWHERE = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"


def write_geoip(path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    for address, country in ((FRANCE, "FR"), (BELGIUM, "BE"), (GERMANY, "DE")):
        writer.insert_network(IPSet([f"{address}/32"]), {"country": {"iso_code": country}})
    writer.to_db_file(str(path))


def rules_for(now: datetime) -> list[dict[str, Any]]:
    """The issue's kinds of rules, with windows around ``now`` (the edge runs on the real clock)."""
    paris = now.astimezone(ZoneInfo("Europe/Paris"))
    days = [WEEKDAYS[(paris.weekday() + shift) % 7] for shift in (-1, 0, 1)]
    hours = [(paris + timedelta(minutes=shift)).strftime("%H:%M") for shift in (-30, 30)]
    later = [(now + timedelta(hours=shift)).isoformat() for shift in (1, 2)]
    return [
        {"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"},
        {"if": {"device": ["android"]}, "target_url": "https://play.google.com/store/apps/details?id=x"},
        {"if": {"language": ["de"]}, "target_url": "https://example.de/menu"},
        {"if": {"country": ["FR", "BE"]}, "target_url": "https://example.fr/menu"},
        {"if": {"query": {"src": "poster"}}, "target_url": "https://example.org/poster"},
        {"if": {"between": later}, "target_url": "https://example.org/later"},
        {
            "if": {"device": ["other"], "weekdays": days, "hours": hours, "tz": "Europe/Paris"},
            "target_url": "https://example.org/bots-now",
        },
    ]


SPLIT = [
    {"target_url": "https://example.org/a", "weight": 50},
    {"target_url": "https://example.org/b", "weight": 50},
]
# (agent, Accept-Language, from, query) -> what serves it, and where it goes ("" : a variant's).
CASES: list[tuple[str | None, str | None, str, str, str, str]] = [
    (IPHONE, "de-CH,de;q=0.9", FRANCE, "", "rule 1", "https://apps.apple.com/app/id1"),
    (ANDROID, "fr-BE", BELGIUM, "", "rule 2", "https://play.google.com/store/apps/details?id=x"),
    (FIREFOX, "de-CH,de;q=0.9", NOWHERE, "", "rule 3", "https://example.de/menu"),
    (FIREFOX, "fr-BE", FRANCE, "", "rule 4", "https://example.fr/menu"),
    (FIREFOX, "*", BELGIUM, "", "rule 4", "https://example.fr/menu"),
    (FIREFOX, "fr-BE", GERMANY, "?src=poster", "rule 5", "https://example.org/poster"),
    (GOOGLEBOT, None, GERMANY, "?src=poster", "rule 5", "https://example.org/poster"),
    (GOOGLEBOT, "*", NOWHERE, "", "rule 7", "https://example.org/bots-now"),
    (None, None, NOWHERE, "?src=flyer", "rule 7", "https://example.org/bots-now"),  # no agent: other
    (FIREFOX, "*", GERMANY, "?src=flyer", "variant", ""),
    (FIREFOX, "fr-BE", NOWHERE, "", "variant", ""),
]


def scan(edge: str, path: str, agent: str | None, language: str | None, source: str) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=edge, timeout=10, transport=transport) as client:
        del client.headers["user-agent"]
        headers = {
            name: value for name, value in (("user-agent", agent), ("accept-language", language)) if value
        }
        return client.get(path, headers=headers)


def test_each_scan_lands_where_the_rules_say_and_top_rules_counts_it(
    pg_server: embedded.EmbeddedServer, template_database: str, tmp_path: Path
) -> None:
    geoip = tmp_path / "country.mmdb"
    write_geoip(geoip)
    with own_stack(pg_server, tmp_path / "var", GEOIP_DATABASE=str(geoip)) as (stack, _):
        edge = f"http://127.0.0.1:{stack.settings.http_port}"
        with httpx.Client(base_url=edge, timeout=10) as admin:
            code = created(
                admin.post(
                    "/api/v1/qr",
                    json={
                        "target_url": "https://example.org/",
                        "rules": rules_for(datetime.now(UTC)),
                        "split": SPLIT,
                    },
                )
            )
            assert code["warnings"] == []  # GEOIP_DATABASE is set
            served: Counter[str] = Counter()
            for agent, language, source, query, rule, target in CASES:
                first = scan(edge, f"/r/{code['id']}{query}", agent, language, source)
                again = scan(edge, f"/r/{code['id']}{query}", agent, language, source)
                case = (agent, language, source, query)
                assert first.status_code == again.status_code == 302, case
                assert first.headers["location"] == again.headers["location"], case  # sticky, too
                location = first.headers["location"]
                if rule == "variant":
                    assert location in ("https://example.org/a", "https://example.org/b"), case
                    rule = f"variant {location[-1]}"
                else:
                    assert location == target, case
                served[rule] += 2
            deadline = time.monotonic() + 15
            while True:
                report = admin.get(f"/api/v1/qr/{code['id']}/scans").json()
                if report["total"] >= served.total() or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    assert report["total"] == served.total()
    assert {entry["value"]: entry["count"] for entry in report["top"]["rules"]} == served
    # People only, as every top list but the rules' (a bot's scans are sent, and counted there).
    assert {entry["value"]: entry["count"] for entry in report["top"]["countries"]} == {
        "FR": 4,
        "BE": 4,
        "DE": 4,
    }
