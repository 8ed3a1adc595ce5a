"""Redirect rules in the redirect service, against a real PostgreSQL through its ASGI app: a split
sticky per visitor and even across many, rules compiled from the stored JSON, and every scan
recorded with what served it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from services.redirect.app import RedirectApp
from tests.agents import FIREFOX, IPHONE

pytestmark = pytest.mark.anyio

SPLIT = [
    {"target_url": "https://example.org/a", "weight": 50},
    {"target_url": "https://example.org/b", "weight": 50},
]


async def insert_code(
    db: asyncpg.Connection, code_id: str, rules: Any, split: Any = None, *, status: int = 302
) -> None:
    await db.execute(
        "INSERT INTO qr_codes (id, short_url, target_url, redirect_status, rules, split) "
        "VALUES ($1, $2, 'https://example.org/own', $3, $4::jsonb, $5::jsonb)",
        code_id,
        f"http://qr.test/r/{code_id}",
        status,
        json.dumps(rules),
        None if split is None else json.dumps(split),
    )


async def served(db: asyncpg.Connection, code_id: str) -> Counter[str | None]:
    rows = await db.fetch("SELECT rule FROM scans WHERE code_id = $1", code_id)
    return Counter(row["rule"] for row in rows)


async def test_a_fifty_fifty_split_is_even_over_two_thousand_visitors_and_sticky_for_each(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(
        db, "split1", [{"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/x"}], SPLIT
    )
    # The ASGI client is 127.0.0.1, a trusted proxy: X-Forwarded-For names each visitor.
    visitors = [f"10.{n // 250}.{n % 250}.1" for n in range(2000)]
    first = {}
    for address in visitors:
        response = await client.get("/r/split1", headers={"user-agent": FIREFOX, "x-forwarded-for": address})
        assert response.status_code == 302
        first[address] = response.headers["location"]
    shares = Counter(first.values())
    assert set(shares) == {"https://example.org/a", "https://example.org/b"}
    assert 900 <= shares["https://example.org/a"] <= 1100, shares
    for address in visitors[:200]:  # the same visitor, the same variant, every scan of the day
        for _ in range(2):
            response = await client.get(
                "/r/split1", headers={"user-agent": FIREFOX, "x-forwarded-for": address}
            )
            assert response.headers["location"] == first[address]
    iphone = await client.get("/r/split1", headers={"user-agent": IPHONE})
    assert iphone.headers["location"] == "https://apps.apple.com/x"
    await app.recorder.flush()
    assert await served(db, "split1") == {
        "variant a": shares["https://example.org/a"]
        + sum(first[a].endswith("/a") for a in visitors[:200]) * 2,
        "variant b": shares["https://example.org/b"]
        + sum(first[a].endswith("/b") for a in visitors[:200]) * 2,
        "rule 1": 1,
    }


async def test_rules_send_each_scan_with_a_temporary_status_and_record_what_served_it(
    app: RedirectApp, client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    rules = [
        {"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/app/id1"},
        {"if": {"language": ["de"]}, "target_url": "https://example.de/"},
        {"if": {"query": {"src": "poster"}}, "target_url": "https://example.org/poster"},
    ]
    await insert_code(db, "rules1", rules, status=301)
    await insert_code(db, "plain1", [], status=301)
    cases = [
        ({"user-agent": IPHONE}, "", "https://apps.apple.com/app/id1"),
        ({"user-agent": FIREFOX, "accept-language": "de-CH,de;q=0.9"}, "", "https://example.de/"),
        ({"user-agent": FIREFOX, "accept-language": "*"}, "?src=poster", "https://example.org/poster"),
        ({"user-agent": FIREFOX, "accept-language": "fr-BE"}, "?src=flyer", "https://example.org/own"),
    ]
    for headers, query, location in cases:
        response = await client.get(f"/r/rules1{query}", headers=headers)
        assert (response.status_code, response.headers["location"]) == (302, location)
        assert response.headers["cache-control"] == "no-store"
    plain = await client.get("/r/plain1", headers={"user-agent": IPHONE})
    assert (plain.status_code, plain.headers["location"]) == (301, "https://example.org/own")
    await app.recorder.flush()
    assert await served(db, "rules1") == {"rule 1": 1, "rule 2": 1, "rule 3": 1, "default": 1}
    assert await served(db, "plain1") == {None: 1}
    tallies = await db.fetch(
        "SELECT code_id, value, count FROM scan_tallies WHERE dimension = 'rule' ORDER BY value"
    )
    assert [tuple(row) for row in tallies] == [
        ("rules1", "default", 1),
        ("rules1", "rule 1", 1),
        ("rules1", "rule 2", 1),
        ("rules1", "rule 3", 1),
    ]


async def test_hostile_headers_and_query_strings_get_an_answer(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    rules = [
        {"if": {"query": {"src": "poster"}}, "target_url": "https://example.org/poster"},
        {"if": {"language": ["de"]}, "target_url": "https://example.de/"},
        {"if": {"device": ["android"]}, "target_url": "https://play.google.com/"},
    ]
    await insert_code(db, "hostile1", rules)
    cases = [
        ("?" + "&".join(f"p{n}=x" for n in range(200)) + "&src=poster", {}, "https://example.org/own"),
        ("?src=poster&" + "x" * 10_000, {}, "https://example.org/poster"),
        ("?src=%ZZ%00poster", {}, "https://example.org/own"),
        ("", {"accept-language": "de;q=" + "9" * 5000}, "https://example.org/own"),
        ("", {"accept-language": ",".join(["xx"] * 3000) + ",de"}, "https://example.org/own"),
        ("", {"accept-language": b"\xff\xfe;q=1"}, "https://example.org/own"),
        ("", {"user-agent": "x" * 8000 + "Android"}, "https://example.org/own"),  # past what is read
        ("", {"user-agent": "Android " + "x" * 8000}, "https://play.google.com/"),
    ]
    for query, headers, location in cases:
        response = await client.get(f"/r/hostile1{query}", headers=headers)
        assert (response.status_code, response.headers["location"]) == (302, location), (query[:40], headers)


async def test_rules_written_around_the_api_that_cannot_be_read_are_ignored(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await insert_code(db, "broken1", [{"if": {"device": "ios"}, "target_url": "https://apps.apple.com/"}])
    await insert_code(db, "script1", [{"if": {"device": ["ios"]}, "target_url": "javascript:alert(1)"}])
    for code_id in ("broken1", "script1"):
        response = await client.get(f"/r/{code_id}", headers={"user-agent": IPHONE})
        assert response.headers["location"] == "https://example.org/own"


async def test_a_change_of_rules_is_followed(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await insert_code(db, "change1", [])
    assert (
        (await client.get("/r/change1", headers={"user-agent": IPHONE})).headers["location"].endswith("/own")
    )
    await db.execute(
        "UPDATE qr_codes SET rules = $1::jsonb WHERE id = 'change1'",
        json.dumps([{"if": {"device": ["ios"]}, "target_url": "https://apps.apple.com/"}]),
    )
    for _ in range(50):
        location = (await client.get("/r/change1", headers={"user-agent": IPHONE})).headers["location"]
        if location == "https://apps.apple.com/":
            break
        await asyncio.sleep(0.1)
    assert location == "https://apps.apple.com/"
