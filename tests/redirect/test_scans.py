"""The scan writer against a real PostgreSQL: batches, the bound, failures and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from services.redirect import scans
from services.redirect.scans import ScanRecorder
from shared.clients import NetworkSet, client_address
from shared.settings import parse_networks

pytestmark = pytest.mark.anyio
TRUSTED = parse_networks("TRUSTED_PROXIES", "127.0.0.1/32")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    await connection.execute(
        "INSERT INTO qr_codes (id, short_url, target_url) VALUES ('scan123abc', 'http://x/r/scan123abc', 'https://e.org/')"
    )
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_full_buffer_drops_and_counts(database_url: str, db: asyncpg.Connection) -> None:
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, max_buffered=100, flush_interval=60)
    await recorder.start()
    for _ in range(150):
        recorder.record("scan123abc", b"agent", None, "127.0.0.1", None)
    assert recorder.buffered == 100
    assert recorder.dropped == 50
    await recorder.close()
    assert await db.fetchval("SELECT count(*) FROM scans") == 100
    assert recorder.written == 100


async def test_a_failed_write_keeps_the_batch_and_close_gives_up_after_its_deadline(tmp_path: Path) -> None:
    recorder = ScanRecorder(
        f"postgresql://postgres@/qr?host={tmp_path}", trusted_proxies=TRUSTED, timeout=0.5
    )
    await recorder.start()
    for _ in range(10):
        recorder.record("scan123abc", None, None, None, None)
    with pytest.raises(OSError, match="No such file"):  # no socket where the server should be
        await recorder.flush()
    assert recorder.buffered == 10
    assert not recorder.healthy
    await recorder.close(deadline=1.0)
    assert recorder.dropped == 10  # counted and logged, never silently lost
    assert recorder.buffered == 0


async def test_batches_are_written_in_the_background_within_the_interval(
    database_url: str, db: asyncpg.Connection
) -> None:
    import asyncio

    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=0.1)
    await recorder.start()
    try:
        for _ in range(25):
            recorder.record("scan123abc", b"Mozilla/5.0 (iPhone)", None, "203.0.113.9", None)
        for _ in range(50):
            if await db.fetchval("SELECT count(*) FROM scans") == 25:
                break
            await asyncio.sleep(0.05)
        assert await db.fetchval("SELECT count(*) FROM scans") == 25
        assert await db.fetchval("SELECT total FROM scan_counts WHERE code_id = 'scan123abc'") == 25
    finally:
        await recorder.close()


async def test_a_flush_writes_what_was_buffered_when_it_began_in_whole_batches(
    database_url: str, db: asyncpg.Connection
) -> None:
    """Scans that arrive while a flush is writing wait for the next one: a flush that chased the
    buffer under load wrote a trickle of tiny batches back to back."""
    import asyncio

    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60, batch_size=100)
    await recorder.start()
    try:
        for _ in range(25):
            recorder.record("scan123abc", b"Mozilla/5.0 (iPhone)", None, "203.0.113.9", None)
        flush = asyncio.create_task(recorder.flush())
        await asyncio.sleep(0)  # the flush has begun: it waits on the database now
        for _ in range(7):
            recorder.record("scan123abc", b"Mozilla/5.0 (iPhone)", None, "203.0.113.9", None)
        await flush
        assert await db.fetchval("SELECT count(*) FROM scans") == 25
        assert recorder.buffered == 7
        assert await db.fetchval("SELECT total FROM scan_counts WHERE code_id = 'scan123abc'") == 25
    finally:
        await recorder.close()
    assert await db.fetchval("SELECT count(*) FROM scans") == 32  # the rest at shutdown


async def test_scans_of_codes_that_vanished_are_dropped_not_blocking(
    database_url: str, db: asyncpg.Connection
) -> None:
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60)
    await recorder.start()
    recorder.record("scan123abc", None, None, None, None)
    recorder.record("vanished12", None, None, None, None)  # never existed (a restore of an old backup)
    await recorder.flush()
    assert await db.fetchval("SELECT count(*) FROM scans") == 1
    assert recorder.dropped == 1
    await recorder.close()


async def test_the_writer_learns_agents_ids_again_each_day(database_url: str, db: asyncpg.Connection) -> None:
    """qr-manage maintain deletes the agents only raw scans past their retention named; an id the
    writer remembered from then must not be written again. It learns them anew every UTC day."""
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60)
    await recorder.start()
    try:
        recorder.record("scan123abc", b"Mozilla/5.0 (Pruned)", None, "203.0.113.9", None)
        await recorder.flush()
        await db.execute("DELETE FROM user_agents WHERE agent = 'Mozilla/5.0 (Pruned)'")  # as maintain does
        recorder._agents_day -= 1  # the next batch is the next day's
        recorder.record("scan123abc", b"Mozilla/5.0 (Pruned)", None, "203.0.113.9", None)
        await recorder.flush()
    finally:
        await recorder.close()
    agents = await db.fetch(
        "SELECT DISTINCT s.agent_id, a.agent FROM scans s LEFT JOIN user_agents a ON a.id = s.agent_id"
    )
    latest = await db.fetchval("SELECT agent_id FROM scans ORDER BY scanned_at DESC LIMIT 1")
    assert {row["agent_id"]: row["agent"] for row in agents}[latest] == "Mozilla/5.0 (Pruned)"


async def test_the_day_key_rotates_at_midnight_utc_and_old_keys_are_deleted(
    database_url: str, db: asyncpg.Connection
) -> None:
    from datetime import UTC, datetime

    now = [datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC).timestamp()]
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60, clock=lambda: now[0])
    await recorder.start()
    try:
        agent = b"Mozilla/5.0 (iPhone)"
        recorder.record("scan123abc", agent, None, "203.0.113.9", None)
        recorder.record("scan123abc", agent, None, "203.0.113.9", None)
        await recorder.flush()
        now[0] += 2  # 00:00:01 the next day
        recorder.record("scan123abc", agent, None, "203.0.113.9", None)
        await recorder.flush()
        hashes = [
            r["visitor_hash"] for r in await db.fetch("SELECT visitor_hash FROM scans ORDER BY scanned_at")
        ]
        assert hashes[0] == hashes[1] != hashes[2]  # one visitor per day, unlinkable across days
        assert await db.fetchval("SELECT count(*) FROM visitor_keys") == 2
        now[0] += 2 * 86400  # two days on: the keys of the days before yesterday go
        recorder.record("scan123abc", agent, None, "203.0.113.9", None)
        await recorder.flush()
        days = [r["day"].isoformat() for r in await db.fetch("SELECT day FROM visitor_keys ORDER BY day")]
        assert days == ["2026-11-29"]
    finally:
        await recorder.close()


async def test_a_batch_the_database_refuses_is_dropped_and_the_rest_go_on(
    database_url: str, db: asyncpg.Connection
) -> None:
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60, batch_size=2)
    await recorder.start()
    try:
        recorder.record("x" * 70, None, None, None, None)  # longer than any id: the database refuses it
        recorder.record("scan123abc", None, None, None, None)
        recorder.record("scan123abc", None, None, None, None)
        recorder.record("scan123abc", None, None, None, None)
        await recorder.flush()
        assert await db.fetchval("SELECT count(*) FROM scans") == 2  # the second batch
        assert recorder.dropped == 2  # the whole first batch, counted
        assert recorder.buffered == 0
    finally:
        await recorder.close()


async def test_a_scan_after_close_is_counted_as_dropped(database_url: str) -> None:
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED)
    await recorder.start()
    await recorder.close()
    recorder.record("scan123abc", None, None, None, None)
    assert recorder.dropped == 1
    assert recorder.buffered == 0


async def test_the_visitor_is_the_days_keyed_hash_of_address_and_agent_and_nothing_else(
    database_url: str, db: asyncpg.Connection
) -> None:
    """What the README promises, spelt out: BLAKE2b keyed with the UTC day's key over the client
    address, a NUL and the user agent; neither is stored."""
    import hashlib

    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60)
    await recorder.start()
    try:
        agents = [b"Mozilla/5.0 (iPhone)", b"Mozilla/5.0 (iPhone)", b"Mozilla/5.0 (Android)", None]
        for agent in agents:
            # A trusted proxy's X-Forwarded-For names the client; the writer remembers what it worked out.
            recorder.record("scan123abc", agent, None, "127.0.0.1", b"203.0.113.9")
        await recorder.flush()
        key = await db.fetchval("SELECT key FROM visitor_keys")
        rows = await db.fetch(
            "SELECT nullif(ua.agent, '') AS user_agent, s.visitor_hash FROM scans s "
            "JOIN user_agents ua ON ua.id = s.agent_id ORDER BY s.scanned_at"
        )
    finally:
        await recorder.close()
    for agent, row in zip(agents, rows, strict=True):
        expected = hashlib.blake2b(b"203.0.113.9\x00" + (agent or b""), key=key, digest_size=16).digest()
        assert row["visitor_hash"] == expected
        assert row["user_agent"] == (agent.decode() if agent else None)
    assert rows[0]["visitor_hash"] == rows[1]["visitor_hash"] != rows[2]["visitor_hash"]


async def test_one_batch_over_midnight_keeps_every_moment_and_counts_each_day(
    database_url: str, db: asyncpg.Connection
) -> None:
    """The writer sends scans alike as one group with their moments: every scan still gets its own
    row at its own microsecond, and each UTC day its own totals and visitors."""
    from datetime import UTC, datetime

    await db.execute(
        "INSERT INTO qr_codes (id, short_url, target_url) VALUES ('other12345', 'http://x/r/other12345', 'https://e.org/')"
    )
    midnight = datetime(2026, 11, 27, tzinfo=UTC).timestamp()
    moments = [midnight - 1.5, midnight - 0.000_001, midnight + 0.25, midnight + 0.25, midnight + 1.123_456]
    clock = iter(moments * 2)
    recorder = ScanRecorder(
        database_url, trusted_proxies=TRUSTED, flush_interval=60, clock=lambda: next(clock)
    )
    await recorder.start()
    try:
        for code_id in ("scan123abc", "other12345"):
            for moment in moments:
                agent = b"Mozilla/5.0 (iPhone)" if moment != midnight + 0.25 else b"Mozilla/5.0 (Android)"
                recorder.record(code_id, agent, None, "203.0.113.9", None)
        await recorder.flush()
    finally:
        await recorder.close()
    for code_id in ("scan123abc", "other12345"):
        stored = [
            row["t"]
            for row in await db.fetch(
                "SELECT extract(epoch FROM scanned_at) AS t FROM scans WHERE code_id = $1 ORDER BY 1",
                code_id,
            )
        ]
        assert [float(t) for t in stored] == sorted(round(m, 6) for m in moments)
        days = await db.fetch(
            "SELECT day::text, total, visitors FROM scan_days WHERE code_id = $1 ORDER BY day", code_id
        )
        # The day before: one iPhone twice; the day after: an Android twice and the iPhone once.
        assert [tuple(row) for row in days] == [("2026-11-26", 2, 1), ("2026-11-27", 3, 2)]
        assert await db.fetchval("SELECT total FROM scan_counts WHERE code_id = $1", code_id) == 5
    hashes = [
        row["visitor_hash"]
        for row in await db.fetch(
            "SELECT visitor_hash FROM scans WHERE code_id = 'scan123abc' ORDER BY scanned_at"
        )
    ]
    assert hashes[0] == hashes[1] != hashes[4]  # the iPhone, under each day's key
    every = await db.fetch("SELECT day::text, total, visitors FROM scan_days WHERE code_id = '' ORDER BY day")
    assert [tuple(row) for row in every] == [("2026-11-26", 4, 1), ("2026-11-27", 6, 2)]


async def test_headers_are_cut_to_what_is_stored_before_they_are_buffered_or_remembered(
    database_url: str, db: asyncpg.Connection
) -> None:
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60)
    await recorder.start()
    try:
        huge = 300 * 1024
        for n in range(20):
            agent = f"agent {n} ".encode() + b"a" * huge
            referrer = f"https://ref{n}.example/".encode() + b"r" * huge
            forwarded = b"198.51.100.7, " * (huge // 14) + b"203.0.113.9"
            recorder.record("scan123abc", agent, referrer, "127.0.0.1", forwarded)
        held = [(agent, referrer, forwarded) for _, _, agent, referrer, _, forwarded, _ in recorder._buffer]
        assert all(agent is not None and len(agent) == scans.MAX_USER_AGENT for agent, _, _ in held)
        assert all(referrer is not None and len(referrer) == scans.MAX_REFERRER for _, referrer, _ in held)
        assert all(f is not None and len(f) <= scans.MAX_FORWARDED_FOR + 2 for _, _, f in held)
        await recorder.flush()
        for memo in (recorder._agents, recorder._referrers, recorder._clients):
            assert memo.held_bytes <= 20 * 3 * scans.MAX_REFERRER
        keys = [*recorder._agents, *recorder._referrers, *(f for _, f in recorder._clients)]
        assert max(len(key or b"") for key in keys) <= scans.MAX_REFERRER
        # Cut, the client is still the one the trusted proxy named.
        assert [client.address for client in recorder._clients.values()] == ["203.0.113.9"]
    finally:
        await recorder.close()
    assert await db.fetchval("SELECT max(length(agent)) FROM user_agents") == scans.MAX_USER_AGENT
    assert await db.fetchval("SELECT max(length(referrer)) FROM scans") == scans.MAX_REFERRER
    assert await db.fetchval("SELECT count(*) FROM scans") == 20


def test_forwarded_for_keeps_its_last_hops_whole_and_fails_closed_past_the_cut() -> None:
    trusted = NetworkSet(parse_networks("TRUSTED_PROXIES", "10.0.0.0/8"))
    short = b"203.0.113.9, 10.0.0.2"
    assert scans.last_hops(short) is short
    forwarded = b"198.51.100.1, " * 100 + b"203.0.113.9, 10.0.0.2"
    cut = scans.last_hops(forwarded)
    assert len(cut) <= scans.MAX_FORWARDED_FOR + 2
    assert client_address("10.0.0.1", cut.decode(), trusted) == "203.0.113.9"
    every_hop_a_proxy = b", ".join(b"10.0.0.%d" % (n % 250) for n in range(100))
    assert client_address("10.0.0.1", scans.last_hops(every_hop_a_proxy).decode(), trusted) is None
    assert scans.last_hops(b"x" * 10_000) == b"_"  # one entry, cut: no address in it


WORDY_AGENT = b"Mozilla/5.0 (X11; Linux x86_64) " * 40


async def test_the_writers_memories_are_bounded_in_bytes(
    database_url: str, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scans, "MAX_REMEMBERED_BYTES", 64 * 1024)
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60)
    await recorder.start()
    try:
        for batch in range(5):
            for n in range(100):  # distinct agents of the stored length, from distinct clients
                # (words, not one letter repeated: the crawler patterns take a tenth of a second
                # over that, and the test is about memory)
                agent = (b"%d-%d " % (batch, n) + WORDY_AGENT)[: scans.MAX_USER_AGENT]
                recorder.record("scan123abc", agent, b"https://e.org/%d" % n, f"203.0.113.{n}", None)
            await recorder.flush()
            assert recorder._agents.held_bytes <= 64 * 1024
            assert len(recorder._agents) <= 64 * 1024 // scans.MAX_USER_AGENT
    finally:
        await recorder.close()
    assert await db.fetchval("SELECT count(*) FROM scans") == 500


async def test_the_buffer_is_bounded_in_header_bytes_too(database_url: str) -> None:
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, max_buffered=100, flush_interval=60)
    await recorder.start()
    try:
        big = b"a" * scans.MAX_USER_AGENT, b"r" * scans.MAX_REFERRER, b"203.0.113.9"
        for _ in range(100):
            recorder.record("scan123abc", *big[:2], "127.0.0.1", big[2])
        per_scan = sum(len(header) for header in big)
        assert recorder.buffered == 100 * scans.BUFFERED_BYTES_PER_SCAN // per_scan
        assert recorder.dropped == 100 - recorder.buffered
        await recorder.flush()
        assert recorder._buffered_bytes == 0
        recorder.record("scan123abc", *big[:2], "127.0.0.1", big[2])  # room again
        assert recorder.buffered == 1
    finally:
        await recorder.close()


# -- the tallies' bound -----------------------------------------------------------------------------

TALLY_ROWS = """
SELECT code_id, dimension, count(*) AS kept, sum(count) AS total,
       coalesce(sum(count) FILTER (WHERE value = $1), 0) AS other
FROM scan_tallies GROUP BY 1, 2 ORDER BY 1, 2
"""


async def test_tallies_stay_bounded_after_100000_distinct_agents_and_referrers(
    database_url: str, db: asyncpg.Connection
) -> None:
    """A day of a code with 100,000 distinct user agents and referrer hosts (as anyone can send),
    through the writer's own statement in batches as it writes them: each dimension keeps at most
    MAX_TALLY_VALUES values, per code and for every code, and counts the rest as OTHER, so its
    totals are the day's people. A value kept before the cap still adds to its own row after it."""
    from datetime import UTC, datetime

    from services.redirect import rollups
    from services.redirect.rollups import MAX_TALLY_VALUES, OTHER, Scans

    distinct = 100_000
    ids = [
        row["id"]
        for row in await db.fetch(
            "INSERT INTO user_agents (agent) SELECT 'Agent/' || n FROM generate_series(1, $1::int) n "
            "ORDER BY n RETURNING id",
            distinct,
        )
    ]
    noon = datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp()

    def scan(n: int, agent_id: int, host: str) -> Scans:
        return Scans(
            "scan123abc",
            agent_id,
            f"https://{host}/",
            host,
            n.to_bytes(16),
            None,
            "FR",
            None,
            [noon + n / 1e4],
        )

    for at in range(0, distinct, 2_000):  # the writer's batches
        await rollups.write(db, [scan(n, ids[n], f"h{n}.example") for n in range(at, at + 2_000)])
    # The first agent and host, kept, come back after the cap: 5 more scans on their own rows.
    await rollups.write(db, [scan(distinct + n, ids[0], "h0.example") for n in range(5)])

    rows = {(r["code_id"], r["dimension"]): r for r in await db.fetch(TALLY_ROWS, OTHER)}
    people = distinct + 5
    for code_id in ("scan123abc", rollups.EVERY_CODE):
        for dimension in ("agent", "referrer"):
            row = rows[(code_id, dimension)]
            assert row["kept"] == MAX_TALLY_VALUES + 1, (code_id, dimension)  # and one row for OTHER
            assert row["total"] == people
            assert row["other"] == distinct - MAX_TALLY_VALUES
        assert rows[(code_id, "country")]["kept"] == 1  # never capped, and never near it
        assert rows[(code_id, "country")]["total"] == people
    first = await db.fetchval(
        "SELECT count FROM scan_tallies WHERE code_id = 'scan123abc' AND dimension = 'agent' AND value = $1",
        str(ids[0]),
    )
    assert first == 1 + 5
    assert await db.fetchval("SELECT total FROM scan_days WHERE code_id = 'scan123abc'") == people
    assert await db.fetchval("SELECT count(*) FROM scans") == people  # the raw rows are all there


async def test_a_day_far_from_the_cap_keeps_every_value(database_url: str, db: asyncpg.Connection) -> None:
    """Through the recorder: agents and referrers of a day under the cap are each their own row."""
    recorder = ScanRecorder(database_url, trusted_proxies=TRUSTED, flush_interval=60)
    await recorder.start()
    try:
        for n in range(30):
            agent = f"Mozilla/5.0 (Test {n % 10})".encode()
            recorder.record(
                "scan123abc", agent, f"https://h{n % 7}.example/".encode(), f"203.0.113.{n}", None
            )
        await recorder.flush()
    finally:
        await recorder.close()
    from services.redirect.rollups import OTHER

    rows = {(r["code_id"], r["dimension"]): r for r in await db.fetch(TALLY_ROWS, OTHER)}
    assert (rows[("scan123abc", "agent")]["kept"], rows[("scan123abc", "agent")]["other"]) == (10, 0)
    assert (rows[("scan123abc", "referrer")]["kept"], rows[("", "referrer")]["total"]) == (7, 30)
