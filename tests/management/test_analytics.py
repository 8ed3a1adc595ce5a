"""Scan statistics: buckets in time zones, rollups against raw scans, retention, erasure, export.

Scans are written by the real scan writer (with a clock of the test's choosing) into a real
PostgreSQL, and read back through the management API.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from services.management import analytics, limits
from services.management.errors import InvalidValue
from services.management.schemas import ScanQuery
from services.ops import maintenance
from services.redirect.scans import ScanRecorder
from tests.management.conftest import create, measure_stream

pytestmark = pytest.mark.anyio

PHONE = (
    b"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    b"Version/18.1 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    b"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Mobile Safari/537.36"
)
GOOGLEBOT = b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def query(**values: Any) -> ScanQuery:
    return ScanQuery.model_validate({k: str(v) for k, v in values.items()})


# -- buckets ------------------------------------------------------------------------------------------


def test_paris_days_follow_the_october_change_of_clocks() -> None:
    span = analytics.make_range(
        query(**{"from": "2026-10-24", "to": "2026-10-27", "tz": "Europe/Paris"}), datetime.now(UTC)
    )
    assert [s.isoformat() for s in span.starts] == [
        "2026-10-24T00:00:00+02:00",
        "2026-10-25T00:00:00+02:00",  # 25 hours long: clocks go back at 03:00
        "2026-10-26T00:00:00+01:00",
    ]
    bounds = span.utc_bounds()
    assert [(b - a) / timedelta(hours=1) for a, b in itertools.pairwise(bounds)] == [24, 25, 24]
    hours = analytics.make_range(
        query(**{"from": "2026-10-25", "to": "2026-10-26", "interval": "hour", "tz": "Europe/Paris"}),
        datetime.now(UTC),
    )
    assert len(hours.starts) == 25
    assert [s.strftime("%H%z") for s in hours.starts[2:5]] == ["02+0200", "02+0100", "03+0100"]  # 02:00 twice
    spring = analytics.make_range(
        query(**{"from": "2026-03-29", "to": "2026-03-30", "interval": "hour", "tz": "Europe/Paris"}),
        datetime.now(UTC),
    )
    assert len(spring.starts) == 23  # 02:00 does not happen


def test_kolkata_hours_begin_at_half_past_utc() -> None:
    span = analytics.make_range(
        query(**{"from": "2026-11-02", "to": "2026-11-03", "interval": "hour", "tz": "Asia/Kolkata"}),
        datetime.now(UTC),
    )
    assert len(span.starts) == 24
    assert {s.astimezone(UTC).minute for s in span.starts} == {30}
    assert span.starts[0].isoformat() == "2026-11-02T00:00:00+05:30"


def test_weeks_begin_on_monday_and_months_on_the_first() -> None:
    weeks = analytics.make_range(
        query(**{"from": "2026-11-04", "to": "2026-11-20", "interval": "week", "tz": "UTC"}),
        datetime.now(UTC),
    )
    assert [s.date() for s in weeks.starts] == [date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16)]
    months = analytics.make_range(
        query(**{"from": "2026-01-15", "to": "2026-04-01", "interval": "month", "tz": "America/New_York"}),
        datetime.now(UTC),
    )
    assert [s.isoformat() for s in months.starts] == [
        "2026-01-01T00:00:00-05:00",
        "2026-02-01T00:00:00-05:00",
        "2026-03-01T00:00:00-05:00",
    ]


def test_the_default_range_is_the_last_thirty_days_up_to_the_end_of_today() -> None:
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    span = analytics.make_range(query(), now)
    assert span.end == datetime(2026, 12, 2, tzinfo=UTC)
    assert span.start == datetime(2026, 11, 2, tzinfo=UTC)
    assert len(span.starts) == 30


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ({"from": "2026-11-01", "to": "2026-11-01"}, "from"),
    ],
)
def test_ranges_that_cannot_be_answered_are_refused(values: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        analytics.make_range(query(**values), datetime.now(UTC))
    assert refused.value.field == field


def unchecked(**values: Any) -> ScanQuery:
    """A query as make_range may be given one without the model's checks (its own guard)."""
    return ScanQuery.model_construct(**{"tz": "UTC", "interval": "day", **values})


def test_ten_thousand_buckets_are_the_limit_of_a_series() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    exact = unchecked(from_=start, to=start + timedelta(hours=limits.MAX_SCAN_BUCKETS), interval="hour")
    assert len(analytics.make_range(exact, start).starts) == limits.MAX_SCAN_BUCKETS
    over = unchecked(from_=start, to=start + timedelta(hours=limits.MAX_SCAN_BUCKETS + 1), interval="hour")
    with pytest.raises(InvalidValue) as refused:
        analytics.make_range(over, start)
    assert refused.value.field == "interval"


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        # 766 years of months: 9,192 buckets, under the bucket bound, and 280,000 days.
        (
            {"from": "1260-12-01", "to": "2026-12-01", "interval": "month"},
            "from",
            "at most 20 years before to",
        ),
        ({"from": "2006-11-30", "to": "2026-12-01", "interval": "month"}, "from", "at most 20 years"),
        ({"from": "1990-01-01", "interval": "week"}, "from", "at most 20 years before now"),
        (
            {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:01Z", "interval": "hour"},
            "interval",
            "hour covers at most 31 days",
        ),
        ({"from": "2020-01-01", "to": "2026-01-01", "interval": "hour"}, "interval", "choose day"),
    ],
)
def test_the_query_model_bounds_a_range_naming_the_parameter(
    values: dict[str, str], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        query(**values)
    [error] = refused.value.errors()
    assert error["loc"] == (field,)
    assert reason in error["msg"]


@pytest.mark.parametrize(
    "values",
    [
        {"from": "2006-12-01", "to": "2026-12-01", "interval": "month"},
        {"from": "2008-02-29", "to": "2028-02-29", "interval": "day"},  # leap day to leap day
        {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "interval": "hour"},
        {"to": "2026-02-01", "interval": "hour"},  # 30 days before to
    ],
)
def test_ranges_at_their_bounds_are_taken(values: dict[str, str]) -> None:
    assert query(**values).interval == values["interval"]


def test_a_long_range_is_split_bucket_by_bucket() -> None:
    """Twenty years of days in Paris: one run of whole UTC days per bucket, never a list of days."""
    span = analytics.make_range(
        query(**{"from": "2006-12-01", "to": "2026-12-01", "interval": "month", "tz": "Europe/Paris"}),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    runs, parts = analytics.split_days(span.utc_bounds(), hours=False)
    assert len(span.starts) == len(runs) == 240
    assert len(parts) <= 2 * 240
    assert (
        sum((last - first).days for first, last, _ in runs) == 7305 - 240
    )  # each month's first day is split


def test_a_month_plan_covers_each_day_once() -> None:
    """Whole months, and days added or taken away, sum to the days of the range: each exactly once."""
    start = date(2025, 11, 1)
    for first_offset, length in itertools.product(
        range(0, 75, 4), (0, 1, 14, 15, 16, 28, 30, 31, 45, 62, 400)
    ):
        first = start + timedelta(days=first_offset)
        last = first + timedelta(days=length)
        months, ranges = analytics.month_plan(first, last)
        covered: Counter[date] = Counter()
        for month in months:
            following = (month + timedelta(days=32)).replace(day=1)
            covered.update(month + timedelta(days=n) for n in range((following - month).days))
        for a, b, sign in ranges:
            for n in range((b - a).days):
                covered[a + timedelta(days=n)] += sign
        assert all(n in (0, 1) for n in covered.values()), (first, last)
        assert +covered == Counter(first + timedelta(days=n) for n in range(length)), (first, last)
        assert all(b - a <= timedelta(days=16) for a, b, _ in ranges)  # never more than half a month


@pytest.mark.parametrize(
    ("tz", "interval"),
    [("UTC", "day"), ("Europe/Paris", "day"), ("Asia/Kolkata", "week"), ("America/St_Johns", "month")],
)
def test_whole_utc_days_and_quarter_hour_parts_tile_the_range(tz: str, interval: str) -> None:
    span = analytics.make_range(
        query(**{"from": "2026-09-20", "to": "2026-11-20", "interval": interval, "tz": tz}),
        datetime(2026, 11, 20, tzinfo=UTC),
    )
    bounds = span.utc_bounds()
    runs, parts = analytics.split_days(bounds, hours=False)
    whole = {
        first + timedelta(days=n): index for first, last, index in runs for n in range((last - first).days)
    }
    pieces = sorted(
        [
            (
                datetime.combine(day, datetime.min.time(), UTC),
                datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
            )
            for day in whole
        ]
        + parts
    )
    assert pieces[0][0] == bounds[0]
    assert pieces[-1][1] == bounds[-1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))  # no gap, no overlap
    for day, index in whole.items():  # each whole day lies in the bucket it is counted in
        moment = datetime.combine(day, datetime.min.time(), UTC)
        assert bounds[index] <= moment
        assert moment + timedelta(days=1) <= bounds[index + 1]
    assert len(runs) <= len(bounds) - 1  # a run per bucket at most
    if tz == "UTC":
        assert parts == []


# -- through the API -----------------------------------------------------------------------------


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[tuple[ScanRecorder, Clock]]:
    clock = Clock(datetime(2026, 10, 24, 20, 0, tzinfo=UTC))
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60, clock=clock)
    await recorder.start()
    try:
        yield recorder, clock
    finally:
        await recorder.close()


async def scans(
    client: httpx.AsyncClient, path: str = "/api/v1/qr/menu/scans", **params: str
) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_series_totals_and_people_come_out_of_the_rollups_in_any_zone(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    assert (
        await create(client, target_url="https://example.org/", slug="menu", tags=["print"])
    ).status_code == 201
    for hour in range(72):  # an hour apart from 2026-10-24T20:00Z, across the change of clocks in Paris
        agent = GOOGLEBOT if hour % 4 == 0 else PHONE
        recorder.record("menu", agent, b"https://poster.example/spring", f"198.51.100.{hour % 3}", None)
        clock.now += 3600
    await recorder.flush()

    paris = await scans(client, **{"from": "2026-10-25", "to": "2026-10-27", "tz": "Europe/Paris"})
    assert [b["start"] for b in paris["series"]] == ["2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"]
    # Scans at 20:00Z..: Oct 25 in Paris runs from 22:00Z on the 24th to 23:00Z on the 25th (25 hours).
    assert [b["total"] for b in paris["series"]] == [25, 24]
    assert paris["total"] == 49
    assert paris["people"] + paris["bots"] == paris["total"]
    assert [b["bots"] for b in paris["series"]] == [sum(1 for h in range(2, 27) if h % 4 == 0), 6]
    assert all(0 < b["unique"] <= 3 for b in paris["series"])  # three visitors, one phone each
    # Top lists count whole UTC days, those whose noon is in the range: Oct 25 and 26 UTC, the
    # scans of hours 4..51, twelve of them Googlebot's.
    people_in_days = sum(1 for h in range(4, 52) if h % 4)
    assert people_in_days == 36
    assert paris["top"]["browsers"] == [{"value": "Mobile Safari", "count": people_in_days}]
    assert paris["top"]["os"] == [{"value": "iOS", "count": people_in_days}]
    assert paris["top"]["devices"] == [{"value": "iPhone", "count": people_in_days}]
    assert paris["top"]["referrers"] == [{"value": "poster.example", "count": people_in_days}]
    assert paris["top"]["bot_reasons"] == [{"value": "crawler", "count": 12}]
    assert paris["top"]["countries"] is None  # no GEOIP_DATABASE
    assert paris["first_scan_at"] == "2026-10-24T20:00:00Z"

    kolkata = await scans(
        client, **{"from": "2026-10-25", "to": "2026-10-26", "interval": "hour", "tz": "Asia/Kolkata"}
    )
    assert kolkata["series"][0]["start"] == "2026-10-25T00:00:00+05:30"
    # The day starts at 18:30Z on the 24th, before the first scan (20:00Z, 01:30 local); every
    # later local hour holds one scan, at half past.
    assert [b["total"] for b in kolkata["series"]] == [0] + [1] * 23
    assert sum(b["unique"] for b in kolkata["series"]) == sum(b["people"] for b in kolkata["series"])

    every = await scans(client, "/api/v1/scans", **{"from": "2026-10-24", "to": "2026-10-28"})
    assert every["code_id"] is None
    assert every["total"] == 72
    assert every["by_tag"] == [{"tag": "print", "total": 72, "people": 54, "bots": 18, "codes": 1}]


async def test_one_visitor_is_one_unique_two_agents_on_one_address_are_two(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu")
    clock.now = datetime(2026, 11, 3, 9, 0, tzinfo=UTC).timestamp()
    for _ in range(5):  # one visitor, five scans
        recorder.record("menu", PHONE, None, "203.0.113.5", None)
        clock.now += 60
    recorder.record("menu", ANDROID, None, "203.0.113.9", None)  # one address, two people
    recorder.record("menu", PHONE, None, "203.0.113.9", None)
    recorder.record("menu", GOOGLEBOT, None, "203.0.113.9", None)  # a bot: never unique
    await recorder.flush()
    for interval in ("hour", "day", "week"):
        report = await scans(client, **{"from": "2026-11-03", "to": "2026-11-04", "interval": interval})
        assert report["total"] == 8
        assert report["people"] == 7
        assert report["unique"] == 3, interval
        assert max(b["unique"] for b in report["series"]) == 3


async def test_by_tag_counts_each_code_once_per_tag_within_the_range(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu", tags=["print", "food"])
    await create(client, target_url="https://example.org/", slug="wine", tags=["food"])
    await create(client, target_url="https://example.org/", slug="bare")
    clock.now = datetime(2026, 11, 3, 9, 0, tzinfo=UTC).timestamp()
    for code, agent, times in (
        ("menu", PHONE, 3),
        ("menu", GOOGLEBOT, 1),
        ("wine", ANDROID, 2),
        ("bare", PHONE, 4),
    ):
        for _ in range(times):
            recorder.record(code, agent, None, "203.0.113.5", None)
    clock.now += 3 * 86400  # days later, outside the range asked for
    recorder.record("wine", ANDROID, None, "203.0.113.5", None)
    await recorder.flush()
    every = await scans(client, "/api/v1/scans", **{"from": "2026-11-03", "to": "2026-11-05"})
    assert every["total"] == 10
    assert every["by_tag"] == [
        {"tag": "food", "total": 6, "people": 5, "bots": 1, "codes": 2},
        {"tag": "print", "total": 4, "people": 3, "bots": 1, "codes": 1},
    ]  # untagged codes count in the totals only


async def test_bad_parameters_are_422_naming_them(client: httpx.AsyncClient) -> None:
    await create(client, target_url="https://example.org/", slug="menu")
    for params, field in (
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"interval": "minute"}, "interval"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-11-01T10:00:00"}, "from"),  # a time without its offset
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ({"from": "2020-01-01", "to": "2026-01-01", "interval": "hour"}, "interval"),
        ({"from": "1260-12-01", "to": "2026-12-01", "interval": "month"}, "from"),  # 766 years
        ({"unknown": "1"}, "unknown"),
    ):
        response = await client.get("/api/v1/qr/menu/scans", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["details"] == {"field": field}
    assert (await client.get("/api/v1/qr/nothing12/scans")).status_code == 404


async def test_a_766_year_range_is_refused_and_a_20_year_one_answers(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu")
    for moment in ("2007-03-10T12:00:00", "2016-07-01T08:00:00", "2026-11-20T23:30:00"):
        clock.now = datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp()
        recorder.record("menu", PHONE, None, "198.51.100.1", None)
    await recorder.flush()
    for path in ("/api/v1/qr/menu/scans", "/api/v1/scans"):
        long = await client.get(path, params={"from": "1260-12-01", "to": "2026-12-01", "interval": "month"})
        assert long.status_code == 422, long.text
        assert long.json()["error"]["details"] == {"field": "from"}
        assert "at most 20 years before to" in long.json()["error"]["message"]

        twenty = {"from": "2006-12-01", "to": "2026-12-01", "tz": "Europe/Paris"}
        months = await scans(client, path, **twenty, interval="month")
        assert len(months["series"]) == 240
        assert [(b["start"][:7], b["total"]) for b in months["series"] if b["total"]] == [
            ("2007-03", 1),
            ("2016-07", 1),
            ("2026-11", 1),
        ]
        days = await scans(client, path, **twenty, interval="day")
        assert len(days["series"]) == 7305
        assert (days["total"], days["unique"]) == (3, 3)
        assert [b["start"][:10] for b in days["series"] if b["total"]] == [
            "2007-03-10",
            "2016-07-01",
            "2026-11-21",  # 23:30 UTC is past midnight in Paris
        ]


async def test_an_hourly_range_is_bounded_by_the_raw_scans_it_counts_visitors_in(
    client: httpx.AsyncClient,
) -> None:
    await create(client, target_url="https://example.org/", slug="menu")
    for path in ("/api/v1/qr/menu/scans", "/api/v1/scans"):
        month = {"from": "2026-10-01T00:00:00Z", "interval": "hour"}
        assert len((await scans(client, path, **month, to="2026-11-01T00:00:00Z"))["series"]) == 31 * 24
        over = await client.get(path, params={**month, "to": "2026-11-01T01:00:00Z"})
        assert over.status_code == 422, over.text
        assert over.json()["error"]["details"] == {"field": "interval"}
        assert "hour covers at most 31 days" in over.json()["error"]["message"]


def test_the_document_states_the_bounds_the_model_enforces() -> None:
    from services.management.api.openapi import document

    for path, item in document()["paths"].items():
        if path.endswith("/scans"):
            described = {p["name"]: p["description"] for p in item["get"]["parameters"]}
            assert f"at most {limits.MAX_SCAN_YEARS} years" in described["from"]
            assert f"at most {limits.MAX_SCAN_BUCKETS:,}" in described["interval"]
            assert f"at most {limits.MAX_HOURLY_DAYS} days" in described["interval"]


def test_the_reader_names_the_tallies_as_the_writer_stores_them() -> None:
    from services.redirect import rollups

    assert (analytics.EVERY_CODE, analytics.OTHER) == (rollups.EVERY_CODE, rollups.OTHER)


def test_the_readme_states_the_bounds() -> None:
    from services.redirect.rollups import MAX_TALLY_VALUES

    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    for stated in (
        f"A range covers at most {limits.MAX_SCAN_YEARS} years, an hourly one at most "
        f"{limits.MAX_HOURLY_DAYS} days",
        f"a series holds at most {limits.MAX_SCAN_BUCKETS:,} buckets",
        f"each code keeps at most {MAX_TALLY_VALUES:,} distinct agents and referrer hosts a day",
        f"at most {analytics.PARSED_AT_ONCE:,} an answer",
    ):
        assert stated in readme, stated


async def test_top_lists_show_the_rest_of_a_crowded_day_as_other_and_parse_only_what_they_rank(
    client: httpx.AsyncClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,200 distinct iPhone agents and referrer hosts on one day, through the writer's statement:
    the first MAX_TALLY_VALUES are kept, the rest counted as Other, totals unchanged; an answer
    parses the kept agents only, and at most PARSED_AT_ONCE of them, the most scanned first."""
    from services.redirect import rollups
    from services.redirect.rollups import MAX_TALLY_VALUES, Scans

    await create(client, target_url="https://example.org/", slug="menu")
    distinct = MAX_TALLY_VALUES + 200
    noon = datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp()
    connection = await asyncpg.connect(database_url)
    try:
        ids = [
            row["id"]
            for row in await connection.fetch(
                "INSERT INTO user_agents (agent) SELECT $1 || n || ')' FROM generate_series(1, $2::int) n "
                "ORDER BY n RETURNING id",
                PHONE.decode().replace("Safari/604.1", "Safari/604.1 (build "),
                distinct,
            )
        ]
        batch = [
            Scans("menu", ids[n], None, f"h{n}.example", n.to_bytes(16), None, None, None, [noon + n])
            for n in range(distinct)
        ]
        await rollups.write(connection, batch[:900])  # most scanned first: the batch's ties by value
        await rollups.write(connection, batch[900:])

        monkeypatch.setattr(analytics, "PARSED_AT_ONCE", 400)
        parsed = "SELECT count(*) FROM user_agents WHERE parsed_at IS NOT NULL"
        day = {"from": "2026-11-03", "to": "2026-11-04"}
        first = await scans(client, **day)
        assert await connection.fetchval(parsed) == 400
        assert first["top"]["browsers"] == [
            {"value": "Other", "count": distinct - 400},  # not parsed yet, and the rest of the day
            {"value": "Mobile Safari", "count": 400},
        ]
        for _ in range(2):
            report = await scans(client, **day)
        assert await connection.fetchval(parsed) == MAX_TALLY_VALUES  # the rest were never read
    finally:
        await connection.close()
    assert report["total"] == report["people"] == distinct
    assert report["top"]["browsers"] == [
        {"value": "Mobile Safari", "count": MAX_TALLY_VALUES},
        {"value": "Other", "count": 200},
    ]
    assert report["top"]["devices"][0] == {"value": "iPhone", "count": MAX_TALLY_VALUES}
    referrers = report["top"]["referrers"]
    assert len(referrers) == 10
    assert referrers[0] == {"value": "Other", "count": 200}
    assert all(entry["count"] == 1 for entry in referrers[1:])
    every = await scans(client, "/api/v1/scans", **day)
    assert every["top"]["referrers"][0] == {"value": "Other", "count": 200}


async def test_retention_drops_raw_scans_and_tallies_and_changes_no_series_or_total(
    client: httpx.AsyncClient, database_url: str, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu")
    clock.now = datetime(
        2025, 3, 10, 12, tzinfo=UTC
    ).timestamp()  # far back: the default partition takes them
    for day in range(40):
        recorder.record("menu", PHONE if day % 5 else GOOGLEBOT, None, f"198.51.100.{day % 7}", None)
        clock.now += 86400
    await recorder.flush()
    ranges = [
        {"from": "2025-03-01", "to": "2025-05-01", "interval": "day", "tz": "UTC"},
        {"from": "2025-03-01", "to": "2025-05-01", "interval": "week", "tz": "Europe/Paris"},
        {"from": "2025-01-01", "to": "2026-01-01", "interval": "month", "tz": "Asia/Kolkata"},
    ]
    before = [await scans(client, **params) for params in ranges]
    assert before[0]["total"] == 40
    assert before[0]["raw_since"] is None
    upkeep = await maintenance.keep_partitions(
        database_url, retention_days=400, now=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert {"scans_2025_03", "scans_2025_04"} <= set(upkeep.made) & set(upkeep.dropped)
    after = [await scans(client, **params) for params in ranges]
    for old, new in zip(before, after, strict=True):
        assert new["raw_since"] is not None
        assert {k: v for k, v in new.items() if k not in ("raw_since", "top")} == {
            k: v for k, v in old.items() if k not in ("raw_since", "top")
        }
        # The top lists' tallies go with the raw scans: the lists cover the days from raw_since.
        assert old["top"]["browsers"]
        assert old["top"]["bot_reasons"]
        assert new["top"]["browsers"] == new["top"]["bot_reasons"] == []
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM scans WHERE code_id = 'menu'") == 0
    finally:
        await connection.close()
    assert (await client.get("/api/v1/qr/menu/scans.csv")).text.count("\n") == 1  # the header only


async def test_erasing_a_codes_scans_takes_them_out_of_everything(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    for slug in ("menu", "other"):
        await create(client, target_url="https://example.org/", slug=slug)
    clock.now = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    for n in range(6):
        recorder.record("menu", PHONE, b"https://poster.example/", f"198.51.100.{n}", None)
        recorder.record("other", ANDROID, None, f"198.51.100.{n}", None)
    await recorder.flush()
    params = {"from": "2026-11-20", "to": "2026-11-21"}
    assert (await scans(client, "/api/v1/scans", **params))["total"] == 12
    assert (await client.get("/api/v1/qr/menu")).json()["scan_count"] == 6

    assert (await client.delete("/api/v1/qr/menu/scans")).status_code == 204
    menu = await scans(client, **params)
    assert (menu["total"], menu["unique"], menu["first_scan_at"]) == (0, 0, None)
    assert all(not entries for entries in (menu["top"]["browsers"], menu["top"]["referrers"]))
    every = await scans(client, "/api/v1/scans", **params)
    assert every["total"] == 6
    assert every["top"]["browsers"] == [{"value": "Chrome Mobile", "count": 6}]
    assert every["top"]["referrers"] == []
    assert (await client.get("/api/v1/qr/menu")).json()["scan_count"] == 0
    history = (await client.get("/api/v1/qr/menu/history")).json()["items"]
    assert history[0]["action"] == "erase"
    assert history[0]["changes"] == {"scans": {"old": 6, "new": 0}}
    assert (await client.get("/api/v1/qr/menu/scans.csv")).text.count("\n") == 1
    assert (await client.delete("/api/v1/qr/nothing12/scans")).status_code == 404


async def test_the_csv_holds_every_raw_scan_formula_safe_and_no_visitor_hash(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, clock = writer
    await create(client, target_url="https://example.org/", slug="menu")
    recorder.record(
        "menu", b'=HYPERLINK("https://evil.example")', b"+cmd|' /C calc'!A0", "198.51.100.1", None
    )
    clock.now += 1
    recorder.record("menu", PHONE, b"@SUM(1+1)", "198.51.100.2", None)
    await recorder.flush()
    response = await client.get("/api/v1/qr/menu/scans.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 2
    assert "visitor_hash" not in rows[0]
    assert rows[0]["user_agent"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert rows[0]["referrer"].startswith("'+")
    assert rows[1]["referrer"].startswith("'@")
    assert rows[1]["browser"] == "Mobile Safari"
    assert rows[0]["scanned_at"] == "2026-10-24T20:00:00Z"
    only_first = await client.get("/api/v1/qr/menu/scans.csv", params={"to": "2026-10-24T20:00:00.5Z"})
    assert only_first.text.count("\n") == 1 + 1
    assert (await client.get("/api/v1/qr/menu/scans.csv", params={"from": "tomorrow"})).status_code == 422


async def test_a_large_csv_streams_in_bounded_memory(client: httpx.AsyncClient, database_url: str) -> None:
    """The stream the endpoint sends, read chunk by chunk as a server sends it."""
    from services.management import exports
    from services.management.schemas import RawScansQuery
    from shared.database import FAULTS

    await create(client, target_url="https://example.org/", slug="menu")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO scans (code_id, scanned_at, agent_id, referrer, is_bot) "
            "SELECT 'menu', now() - n * interval '1 second', NULL, 'https://poster.example/' || n, false "
            "FROM generate_series(1, 200000) n"
        )
    finally:
        await connection.close()
    lines, received, peak = await measure_stream(
        database_url, lambda engine: exports.raw_scans(engine, "menu", RawScansQuery(), faults=FAULTS)
    )
    assert lines == 200_001
    assert received > 10_000_000
    assert peak < 5_000_000, (peak, received)  # a few chunks at a time, never the file


async def test_codes_most_scanned_first(
    client: httpx.AsyncClient, writer: tuple[ScanRecorder, Clock]
) -> None:
    recorder, _ = writer
    for slug, count in (("few", 1), ("many", 5), ("none", 0), ("some", 3)):
        await create(client, target_url="https://example.org/", slug=slug)
        for n in range(count):
            recorder.record(slug, PHONE, None, f"198.51.100.{n}", None)
    await recorder.flush()
    seen, cursor = [], None
    while True:
        params = {"order": "-scan_count", "limit": "1", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/qr", params=params)).json()
        seen += [(code["id"], code["scan_count"]) for code in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [("many", 5), ("some", 3), ("few", 1), ("none", 0)]
    assert (await client.get("/api/v1/qr", params={"order": "scan_count"})).status_code == 422


def write_geoip(path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City")
    writer.insert_network(
        IPSet(["198.51.100.0/25"]), {"country": {"iso_code": "DE"}, "city": {"names": {"en": "Berlin"}}}
    )
    writer.insert_network(IPSet(["198.51.100.128/25"]), {"country": {"iso_code": "FR"}})
    writer.to_db_file(str(path))


async def test_countries_from_a_geoip_file_and_never_an_address(
    environ: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    from services.management.settings import ManagementSettings
    from tests.management.conftest import serve

    geoip = tmp_path / "city.mmdb"
    write_geoip(geoip)
    recorder = ScanRecorder(database_url, trusted_proxies=(), flush_interval=60, geoip_database=geoip)
    async for client in serve(ManagementSettings.from_env({**environ, "GEOIP_DATABASE": str(geoip)})):
        await create(client, target_url="https://example.org/", slug="menu")
        await recorder.start()
        try:
            for address in ("198.51.100.1", "198.51.100.2", "198.51.100.200", "203.0.113.1"):
                recorder.record("menu", PHONE, None, address, None)
        finally:
            await recorder.close()
        report = (await client.get("/api/v1/qr/menu/scans")).json()
        assert report["top"]["countries"] == [{"value": "DE", "count": 2}, {"value": "FR", "count": 1}]
        rows = list(csv.DictReader(io.StringIO((await client.get("/api/v1/qr/menu/scans.csv")).text)))
        assert sorted((row["country"], row["city"]) for row in rows) == [
            ("", ""),
            ("DE", "Berlin"),
            ("DE", "Berlin"),
            ("FR", ""),
        ]
        assert not any("198.51.100" in value for row in rows for value in row.values())
