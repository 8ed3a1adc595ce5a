"""Redirect rules in the management service: validated alike by the API, the bulk upload and the
console (every refusal a 422 naming the path inside the rules), recorded in the history, tried
by ``rules/try`` with the redirect service's own evaluator, and counted in ``top.rules``."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import httpx
import pytest

from services.management.schemas.rules import COUNTRY_WITHOUT_GEOIP, MAX_RULES, MAX_VARIANTS
from services.redirect.scans import ScanRecorder
from tests.agents import ANDROID, FIREFOX, GOOGLEBOT, IPHONE
from tests.management.conftest import create, serve

pytestmark = pytest.mark.anyio


RULES: list[dict[str, Any]] = [
    {"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"},
    {"if": {"device": ["android"]}, "target_url": "https://play.google.com/store/apps/details?id=x"},
    {"if": {"language": ["de"]}, "target_url": "https://example.de/menu"},
    {"if": {"country": ["FR", "BE"]}, "target_url": "https://example.fr/menu"},
    {"if": {"query": {"src": "poster"}}, "target_url": "https://example.org/poster"},
    {
        "if": {"weekdays": ["sat", "sun"], "hours": ["10:00", "16:00"], "tz": "Europe/Paris"},
        "target_url": "https://example.org/brunch",
    },
    {
        "if": {"between": ["2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z"]},
        "target_url": "https://example.org/xmas",
    },
]
SPLIT = [
    {"target_url": "https://example.org/a", "weight": 50},
    {"target_url": "https://example.org/b", "weight": 50},
]


async def test_rules_are_kept_answered_and_recorded_in_the_history(client: httpx.AsyncClient) -> None:
    response = await create(client, target_url="https://example.org/", slug="menu", rules=RULES, split=SPLIT)
    assert response.status_code == 201, response.text
    code = response.json()
    assert (code["rules"], code["split"]) == (RULES, SPLIT)
    assert code["warnings"] == [COUNTRY_WITHOUT_GEOIP]  # no GEOIP_DATABASE here
    assert (await client.get("/api/v1/qr/menu")).json()["rules"] == RULES
    changed = await client.patch("/api/v1/qr/menu", json={"rules": RULES[:2], "split": None})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["rules"], changed.json()["split"], changed.json()["warnings"]) == (
        RULES[:2],
        None,
        [],
    )
    unchanged = await client.patch("/api/v1/qr/menu", json={"title": "Menu"})
    assert unchanged.json()["rules"] == RULES[:2]
    history = (await client.get("/api/v1/qr/menu/history")).json()["items"]
    change = next(entry for entry in history if entry["action"] == "update" and "rules" in entry["changes"])
    assert change["changes"]["rules"] == {"old": RULES, "new": RULES[:2]}
    assert change["changes"]["split"] == {"old": SPLIT, "new": None}
    created = next(entry for entry in history if entry["action"] == "create")
    assert created["changes"]["rules"]["new"] == RULES


async def test_a_country_rule_with_a_geoip_file_gets_no_warning(environ: dict[str, str]) -> None:
    from services.management.settings import ManagementSettings

    settings = ManagementSettings.from_env({**environ, "GEOIP_DATABASE": "/srv/geo.mmdb"})
    async for client in serve(settings):
        response = await create(client, target_url="https://example.org/", rules=RULES)
        assert response.status_code == 201
        assert response.json()["warnings"] == []


def rule(**conditions: Any) -> dict[str, Any]:
    return {"if": conditions, "target_url": "https://example.org/x"}


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"rules": "all"}, "rules"),
    ({"rules": [rule(device=["ios"])] * (MAX_RULES + 1)}, "rules"),
    ({"rules": [rule(device=["ios"]), {"target_url": "https://example.org/"}]}, "rules[1].if"),
    ({"rules": [{"if": {"device": ["ios"]}}]}, "rules[0].target_url"),
    (
        {"rules": [{"if": {"device": ["ios"]}, "target_url": "https://example.org/", "weight": 1}]},
        "rules[0].weight",
    ),
    ({"rules": [rule()]}, "rules[0].if"),
    ({"rules": [rule(colour=["red"])]}, "rules[0].if.colour"),
    ({"rules": [rule(device="ios")]}, "rules[0].if.device"),
    ({"rules": [rule(device=["phone"])]}, "rules[0].if.device"),
    ({"rules": [rule(device=[])]}, "rules[0].if.device"),
    ({"rules": [rule(language=["deutsch!"])]}, "rules[0].if.language"),
    ({"rules": [rule(language=["de-" + "x" * 40])]}, "rules[0].if.language"),
    (
        {"rules": [rule(device=["ios"]), rule(device=["ios"]), rule(device=["ios"]), rule(country=["FRA"])]},
        "rules[3].if.country",
    ),
    ({"rules": [rule(country=["F1"])]}, "rules[0].if.country"),
    ({"rules": [rule(country=[1])]}, "rules[0].if.country"),
    ({"rules": [rule(query={})]}, "rules[0].if.query"),
    ({"rules": [rule(query={"src": 5})]}, "rules[0].if.query"),
    ({"rules": [rule(query={"src": "a\nb"})]}, "rules[0].if.query"),
    ({"rules": [rule(query={"": "x"})]}, "rules[0].if.query"),
    ({"rules": [rule(query={f"p{n}": "x" for n in range(11)})]}, "rules[0].if.query"),
    ({"rules": [rule(weekdays=["someday"])]}, "rules[0].if.weekdays"),
    ({"rules": [rule(hours=["10:00"])]}, "rules[0].if.hours"),
    ({"rules": [rule(hours=["25:00", "26:00"])]}, "rules[0].if.hours"),
    ({"rules": [rule(hours=["10:00", "10:00"])]}, "rules[0].if"),
    ({"rules": [rule(hours=["10:00", "11:00"], tz="Mars/Olympus")]}, "rules[0].if.tz"),
    ({"rules": [rule(hours=["10:00", "11:00"], tz="../../etc/passwd")]}, "rules[0].if.tz"),
    ({"rules": [rule(tz="Europe/Paris")]}, "rules[0].if"),
    ({"rules": [rule(device=["ios"], tz="Europe/Paris")]}, "rules[0].if"),
    ({"rules": [rule(between=["2026-12-24", "2026-12-27T00:00:00Z"])]}, "rules[0].if.between"),
    ({"rules": [rule(between=["2026-12-27T00:00:00Z", "2026-12-24T00:00:00Z"])]}, "rules[0].if"),
    ({"rules": [rule(between=["2026-12-24T00:00:00Z"])]}, "rules[0].if.between"),
    ({"rules": [{"if": {"device": ["ios"]}, "target_url": "javascript:alert(1)"}]}, "rules[0].target_url"),
    (
        {"rules": [{"if": {"device": ["ios"]}, "target_url": "http://qr.test:8080/r/loop"}]},
        "rules[0].target_url",
    ),
    ({"split": [{"target_url": "https://example.org/a", "weight": 1}]}, "split"),
    ({"split": [{"target_url": "https://example.org/a", "weight": 1}] * (MAX_VARIANTS + 1)}, "split"),
    ({"split": [{"target_url": "https://example.org/a", "weight": 0}] * 2}, "split[0].weight"),
    ({"split": [{"target_url": "https://example.org/a", "weight": "50"}] * 2}, "split[0].weight"),
    ({"split": [{"target_url": "https://example.org/a", "weight": 50.0}] * 2}, "split[0].weight"),
    ({"split": [{"target_url": "ftp://example.org/a", "weight": 5}] * 2}, "split[0].target_url"),
    ({"split": [{"weight": 5}] * 2}, "split[0].target_url"),
]


async def test_hostile_rules_are_422_naming_the_path(client: httpx.AsyncClient) -> None:
    answered = []
    for body, _ in HOSTILE:
        response = await create(client, target_url="https://example.org/", **body)
        error = response.json()["error"]
        answered.append((response.status_code, error["details"]["field"] if error.get("details") else error))
    assert answered == [(422, field) for _, field in HOSTILE]
    assert (await client.get("/api/v1/qr")).json()["items"] == []  # nothing half-written


async def test_a_change_is_validated_alike(client: httpx.AsyncClient) -> None:
    assert (await create(client, target_url="https://example.org/", slug="menu")).status_code == 201
    response = await client.patch("/api/v1/qr/menu", json={"rules": [rule(country=["FRA"])]})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == "rules[0].if.country"


async def test_bulk_csv_takes_rules_and_split_as_json_cells(client: httpx.AsyncClient) -> None:
    rows = [
        ["target_url", "slug", "rules", "split"],
        ["https://example.org/", "one", json.dumps(RULES[:2]), json.dumps(SPLIT)],
        ["https://example.org/", "two", "", ""],
    ]
    body = "\r\n".join(",".join('"' + cell.replace('"', '""') + '"' for cell in row) for row in rows)
    response = await client.post("/api/v1/qr/bulk", content=body, headers={"content-type": "text/csv"})
    assert response.status_code == 201, response.text
    made = response.json()["created"]
    assert [(code["rules"], code["split"]) for code in made] == [(RULES[:2], SPLIT), ([], None)]
    assert (await client.get("/api/v1/qr/one")).json()["rules"] == RULES[:2]
    export = (await client.get("/api/v1/qr/export.csv")).text
    assert json.dumps(RULES[:2], separators=(",", ":")).replace('"', '""') in export
    bad = 'target_url,rules\r\nhttps://example.org/,[{\r\nhttps://example.org/,"[{""if"": {}}]"\r\n'
    refused = await client.post("/api/v1/qr/bulk", content=bad, headers={"content-type": "text/csv"})
    assert refused.status_code == 422
    assert [(e["row"], e["field"]) for e in refused.json()["errors"]] == [
        (1, "rules"),
        (2, "rules[0].if"),
        (2, "rules[0].target_url"),
    ]


def paris(*parts: int) -> str:
    from zoneinfo import ZoneInfo

    return datetime(*parts, tzinfo=ZoneInfo("Europe/Paris")).isoformat()  # type: ignore[arg-type, misc]


TRIALS: list[tuple[dict[str, Any], str, str]] = [
    (
        {"agent": IPHONE, "country": "FR", "moment": paris(2026, 12, 5, 11, 0)},
        "rule 1",
        "https://apps.apple.com/app/id1",
    ),
    (
        {"agent": ANDROID, "language": "de-CH,de;q=0.9"},
        "rule 2",
        "https://play.google.com/store/apps/details?id=x",
    ),
    ({"agent": FIREFOX, "language": "de-CH,de;q=0.9"}, "rule 3", "https://example.de/menu"),
    ({"agent": FIREFOX, "language": "fr-BE", "country": "BE"}, "rule 4", "https://example.fr/menu"),
    ({"agent": FIREFOX, "language": "*", "query": {"src": "poster"}}, "rule 5", "https://example.org/poster"),
    ({"agent": GOOGLEBOT, "moment": paris(2026, 12, 5, 11, 0)}, "rule 6", "https://example.org/brunch"),
    ({"agent": GOOGLEBOT, "moment": paris(2026, 12, 5, 16, 0)}, "variant", ""),
    # Sunday 29 March 2026, the first day of summer time in Paris: 10:00 is 08:00 UTC.
    ({"moment": "2026-03-29T07:59:00Z"}, "variant", ""),
    ({"moment": "2026-03-29T08:00:00Z"}, "rule 6", "https://example.org/brunch"),
    ({"moment": "2026-12-25T18:00:00Z"}, "rule 7", "https://example.org/xmas"),
    ({"moment": "2026-12-27T00:00:00Z"}, "variant", ""),
]


async def test_try_says_what_a_made_up_scanner_would_get(client: httpx.AsyncClient) -> None:
    created = await create(client, target_url="https://example.org/", slug="menu", rules=RULES, split=SPLIT)
    assert created.status_code == 201
    for trial, served, target in TRIALS:
        response = await client.post(
            "/api/v1/qr/menu/rules/try", json={"moment": "2026-12-01T12:00:00Z", **trial}
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        if served == "variant":
            assert answer["served"] in ("variant a", "variant b"), trial
            assert answer["target_url"] == f"https://example.org/{answer['served'][-1]}"
        else:
            assert (answer["served"], answer["target_url"]) == (served, target), trial


async def test_try_is_sticky_per_visitor_and_refuses_nonsense(client: httpx.AsyncClient) -> None:
    assert (
        await create(client, target_url="https://example.org/", slug="menu", split=SPLIT)
    ).status_code == 201
    seen = set()
    for n in range(40):
        body = {"visitor": f"visitor {n}"}
        first = (await client.post("/api/v1/qr/menu/rules/try", json=body)).json()
        again = (await client.post("/api/v1/qr/menu/rules/try", json=body)).json()
        assert first == again
        seen.add(first["served"])
    assert seen == {"variant a", "variant b"}
    assert (await create(client, target_url="https://example.org/", slug="plain")).status_code == 201
    plain = (await client.post("/api/v1/qr/plain/rules/try", json={"agent": IPHONE})).json()
    assert plain == {
        "served": "default",
        "target_url": "https://example.org/",
        "device": "ios",
        "language": None,
    }
    for body, field in (
        ({"moment": "tomorrow"}, "moment"),
        ({"country": "France"}, "country"),
        ({"agent": "a\x00b"}, "agent"),
        ({"colour": "red"}, "colour"),
    ):
        response = await client.post("/api/v1/qr/menu/rules/try", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["details"]["field"] == field
    assert (await client.post("/api/v1/qr/nothere/rules/try", json={})).status_code == 404


async def test_top_rules_counts_equal_the_scans_each_rule_served(
    client: httpx.AsyncClient, database_url: str
) -> None:
    assert (
        await create(client, target_url="https://example.org/", slug="menu", rules=RULES, split=SPLIT)
    ).status_code == 201
    served = (
        ["rule 1"] * 5 + ["rule 3"] * 2 + ["variant a"] * 4 + ["variant b"] * 3 + ["default"] + ["rule 7"]
    )
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60)
    await recorder.start()
    try:
        for n, label in enumerate(served):
            agent = (GOOGLEBOT if n % 4 == 0 else IPHONE).encode()  # bots are sent, and counted, too
            recorder.record("menu", agent, None, f"198.51.100.{n}", None, label)
        recorder.record("menu", IPHONE.encode(), None, "198.51.100.99", None)  # before the rules
    finally:
        await recorder.close()
    report = (await client.get("/api/v1/qr/menu/scans")).json()
    assert report["total"] == len(served) + 1
    assert report["by_rule"] is None
    assert {entry["value"]: entry["count"] for entry in report["top"]["rules"]} == Counter(served)
    assert report["top"]["rules"][0] == {"value": "rule 1", "count": 5}
    by_rule = (await client.get("/api/v1/qr/menu/scans", params={"by": "rule"})).json()["by_rule"]
    assert {series["value"]: sum(series["counts"]) for series in by_rule} == Counter(served)
    assert all(len(series["counts"]) == len(report["series"]) for series in by_rule)
    every = (await client.get("/api/v1/scans")).json()
    assert every["top"]["rules"] == []
    assert (await client.get("/api/v1/qr/menu/scans", params={"by": "tag"})).status_code == 422
