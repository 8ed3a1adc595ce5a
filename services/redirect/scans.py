"""Scan recording: a bounded buffer filled by the request, written in batches in the background.

The request does one thing: append the raw facts (time, id, user agent, referrer, peer address,
forwarded-for header) to a list, the headers cut to what is stored of them (what a request brings
beyond that is never kept, not even as a key). Everything else happens in the writer, off the
request: the client address behind trusted proxies (and its country, with GEOIP_DATABASE), the
visitor hash, the user agent's id and bot classification, and the write itself: one statement per
batch that stores the rows and adds them to every rollup (:mod:`services.redirect.rollups`).

Guarantees: flushed at least every ``flush_interval`` seconds and at shutdown, so a graceful stop
loses nothing and a crash at most the last interval. The buffer is bounded: past ``max_buffered``
scans, or as many KiB of their headers (the database down for long under load), new scans are
dropped, counted and logged, never allowed to eat the memory. A failed write is retried with
back-off, the batch kept in front.
Visitor hashes: :mod:`services.redirect.visitors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg

from services.redirect import rollups
from services.redirect.bots import classify_fully
from services.redirect.geo import GeoIP
from services.redirect.rollups import Scans
from services.redirect.visitors import Connection, VisitorHasher, visitor_hash
from shared.clients import NetworkSet, client_address
from shared.database import TRANSIENT
from shared.logging import request_id
from shared.settings import Network

log = logging.getLogger(__name__)

# (unix time, code id, user agent, referrer, peer address, X-Forwarded-For), as the request saw them,
# and which redirect rule served the scan (services/redirect/rules.py; None: the code has none).
RawScan = tuple[float, str, bytes | None, bytes | None, str | None, bytes | None, str | None]

EXISTING_CODES = "SELECT id FROM qr_codes WHERE id = ANY($1::text[])"
# Agents the writer has not seen yet, by text: their ids (made now or by another writer before).
UPSERT_AGENTS = """
INSERT INTO user_agents (agent, bot_reason)
SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1
ON CONFLICT (agent) DO UPDATE SET agent = EXCLUDED.agent
RETURNING id, agent
"""
ALL = (EXISTING_CODES, UPSERT_AGENTS, *rollups.ALL)
# The host of a referrer URL, lower case: what the referrers' top list counts (as migration 0007).
_REFERRER_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:@]+)")

# What is stored of the headers a scan keeps, in bytes: they are cut to this before anything else
# (user_agents.agent is unique, and a btree entry must stay well under 2,704 bytes).
MAX_USER_AGENT = 512
MAX_REFERRER = 2048
# X-Forwarded-For is read from the right (shared/clients.py) as far as the trusted proxies go: a dozen
# hops of IPv6 addresses fit. Past the cut, an entry that is no address stands for the rest.
MAX_FORWARDED_FOR = 512
# The buffer's bound in header bytes (as cut), per scan it may hold: ordinary scans bring a few
# hundred bytes, so the count binds first; a flood of maximal headers meets this one.
BUFFERED_BYTES_PER_SCAN = 1024
# Groups worked out between yields to the event loop: scans of as many clients as scans cost about
# 10 µs each here, and redirects must not wait for a whole batch of them.
PREPARE_CHUNK = 250
MAX_REMEMBERED = 50_000  # user agents, clients and referrers whose facts the writer keeps ...
MAX_REMEMBERED_BYTES = 16 * 1024 * 1024  # ... and request bytes kept with them, in each (then afresh)
MAX_BACKOFF = 10.0


def last_hops(forwarded: bytes) -> bytes:
    """``X-Forwarded-For`` cut to its last MAX_FORWARDED_FOR bytes, whole entries only, after an
    entry that is no address: a client address is never read from a cut entry (it cannot be told
    if every hop kept is a trusted proxy)."""
    if len(forwarded) <= MAX_FORWARDED_FOR:
        return forwarded
    _, comma, whole = forwarded[-MAX_FORWARDED_FOR:].partition(b",")
    return b"_," + whole if comma else b"_"


def header_bytes(scans: Sequence[RawScan]) -> int:
    """The header bytes (user agent, referrer, forwarded-for) ``scans`` hold."""
    return sum(
        (len(agent) if agent else 0)
        + (len(referrer) if referrer else 0)
        + (len(forwarded) if forwarded else 0)
        for _, _, agent, referrer, _, forwarded, _ in scans
    )


K = TypeVar("K")
V = TypeVar("V")


class Memo(dict[K, V]):
    """What the writer worked out per user agent, client or referrer, kept for the next batches:
    started afresh at MAX_REMEMBERED entries or MAX_REMEMBERED_BYTES of request bytes (the key's,
    and the text kept from it)."""

    __slots__ = ("held_bytes",)

    def __init__(self) -> None:
        super().__init__()
        self.held_bytes = 0

    def remember(self, key: K, value: V, size: int) -> V:
        if len(self) >= MAX_REMEMBERED or self.held_bytes + size > MAX_REMEMBERED_BYTES:
            self.forget()
        self[key] = value
        self.held_bytes += size
        return value

    def forget(self) -> None:
        self.clear()
        self.held_bytes = 0


def _text(raw: bytes | None, limit: int) -> str | None:
    if raw is None:
        return None
    # Headers are bytes of any kind; PostgreSQL text holds no NUL.
    return raw[:limit].decode("utf-8", "replace").replace("\x00", "")


@dataclass(slots=True)
class Agent:
    """A user agent as the writer knows it: stored text ('' for none), the bytes hashed, why it is
    a bot (``None``: a person), and its id in ``user_agents`` once known."""

    text: str
    hashed: bytes
    bot_reason: str | None
    id: int | None = None
    classified: bool = False  # bot_reason is known


@dataclass(frozen=True, slots=True)
class Client:
    address: str | None  # never stored: hashed, and looked up in the GeoIP file
    hashed: bytes
    country: str | None
    city: str | None


# Scans a write takes at most, and how many buffered wake the writer before its interval ends. A
# write's fixed cost (a transaction, four statements, PostgreSQL planning the rollups' statement)
# is paid per batch: at 2,000 a batch, under a redirect worker's full load (~45,000 scans a second,
# a flush every 45 ms), PostgreSQL spent 4.6 µs of CPU a scan and 10,000 cut it to 2.7, which gave
# the worker's redirects 8% more of a 2-core machine (make bench's setup, interleaved rounds).
BATCH_SIZE = 10_000


class ScanRecorder:
    def __init__(
        self,
        dsn: str,
        *,
        trusted_proxies: Sequence[Network],
        flush_interval: float = 1.0,
        max_buffered: int = 100_000,
        batch_size: int = BATCH_SIZE,
        timeout: float = 10.0,
        geoip_database: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dsn = dsn
        self._geoip_database = geoip_database
        self._geoip: GeoIP | None = None
        self._trusted = NetworkSet(trusted_proxies)
        self.flush_interval = flush_interval
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered * BUFFERED_BYTES_PER_SCAN
        self.batch_size = batch_size
        self._timeout = timeout
        self._clock = clock
        self._buffer: list[RawScan] = []
        self._buffered_bytes = 0  # header bytes held in _buffer
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._visitors = VisitorHasher()
        self._clients: Memo[tuple[str | None, bytes | None], Client] = Memo()
        self._agents: Memo[bytes | None, Agent] = Memo()
        # The UTC day the agents' ids were learned on: learned again each day, so that none outlives
        # the rows qr-manage maintain prunes (agents named only by raw scans past their retention;
        # an agent seen today is named by today's scans).
        self._agents_day = 0
        self._referrers: Memo[bytes, tuple[str | None, str | None]] = Memo()
        self.written = 0
        self.dropped = 0
        self._dropped_unlogged = 0
        self.healthy = True  # the last write succeeded
        self._stopping = False
        self._closed = False
        self._flush_lock = asyncio.Lock()
        self._flushes = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def stats(self) -> ScanStats:
        return ScanStats(len(self._buffer), self.written, self.dropped, self.healthy)

    # -- the request side: as little as possible --------------------------------------------------

    def record(
        self,
        code_id: str,
        user_agent: bytes | None,
        referrer: bytes | None,
        peer: str | None,
        forwarded: bytes | None,
        served: str | None = None,
    ) -> None:
        buffer = self._buffer
        if len(buffer) >= self.max_buffered or self._closed:
            self.dropped += 1
            self._dropped_unlogged += 1
            return
        size = 0
        if user_agent is not None:
            size = len(user_agent)
            if size > MAX_USER_AGENT:
                user_agent, size = user_agent[:MAX_USER_AGENT], MAX_USER_AGENT
        if referrer is not None:
            if len(referrer) > MAX_REFERRER:
                referrer = referrer[:MAX_REFERRER]
            size += len(referrer)
        if forwarded is not None:
            if len(forwarded) > MAX_FORWARDED_FOR:
                forwarded = last_hops(forwarded)
            size += len(forwarded)
        size += self._buffered_bytes
        if size > self.max_buffered_bytes:
            self.dropped += 1
            self._dropped_unlogged += 1
            return
        self._buffered_bytes = size
        buffer.append((self._clock(), code_id, user_agent, referrer, peer, forwarded, served))
        if len(buffer) == self.batch_size:
            self._wake.set()

    # -- what redirect rules ask of a client (services/redirect/rules.py) --------------------------

    def country(self, peer: str | None, forwarded: bytes | None) -> str | None:
        """The country of the client behind trusted proxies (``None`` without a GeoIP file), looked
        up as the writer looks it up, and remembered for the writer."""
        if self._geoip is None:
            return None
        if forwarded is not None and len(forwarded) > MAX_FORWARDED_FOR:
            forwarded = last_hops(forwarded)
        return (self._clients.get((peer, forwarded)) or self._client(peer, forwarded)).country

    async def visitor(
        self, peer: str | None, forwarded: bytes | None, user_agent: bytes | None, moment: float
    ) -> bytes:
        """The visitor hash the writer will store for this scan: the same all day (what keeps a
        split's variant). The day's key is fetched, or made, on the first scan of the day that
        needs it; while the database cannot give it, a hash of the same facts without the key."""
        if forwarded is not None and len(forwarded) > MAX_FORWARDED_FOR:
            forwarded = last_hops(forwarded)
        if user_agent is not None:
            user_agent = user_agent[:MAX_USER_AGENT]
        client = self._clients.get((peer, forwarded)) or self._client(peer, forwarded)
        agent = self._agents.get(user_agent) or self._agent(user_agent)
        keyed = self._visitors.cached_day(moment)
        if keyed is None and self._pool is not None:
            try:
                async with self._pool.acquire(timeout=self._timeout) as connection:
                    keyed = await self._visitors.for_day(
                        connection, datetime.fromtimestamp(moment, UTC).date()
                    )
            except (*TRANSIENT, TimeoutError) as exc:
                log.warning("no visitor key for a split: %s", type(exc).__name__)
        if keyed is None:
            return hashlib.blake2b(client.hashed + b"\x00" + agent.hashed, digest_size=16).digest()
        return visitor_hash(keyed, client.hashed, agent.hashed)

    # -- the writer -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._geoip_database is not None:
            self._geoip = GeoIP(self._geoip_database)
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=0, max_size=2, timeout=self._timeout, command_timeout=self._timeout
        )
        self._task = asyncio.create_task(self._run(), name="qr-scan-writer")

    async def close(self, *, deadline: float = 10.0) -> None:
        """Stop the writer and flush what is buffered, retrying until ``deadline`` seconds pass.

        The writer is asked to stop, not cancelled: a cancel landing after the server committed a
        batch would put that batch back and write it twice.
        """
        give_up = time.monotonic() + deadline
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=deadline)
            if not done:  # a write hanging on a frozen database: nothing else left to do
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._closed = True  # from now on a scan has nowhere to go: counted as dropped
        while self._buffer and time.monotonic() < give_up:
            try:
                async with asyncio.timeout(max(0.1, give_up - time.monotonic())):
                    await self.flush()
            except (*TRANSIENT, TimeoutError) as exc:
                log.warning("final scan flush failed, retrying: %s", type(exc).__name__)
                await asyncio.sleep(min(0.5, max(0.0, give_up - time.monotonic())))
        if self._buffer:
            self.dropped += len(self._buffer)
            log.error(
                "scans lost at shutdown: the database did not take them", extra={"lost": len(self._buffer)}
            )
            self._buffer = []
            self._buffered_bytes = 0
        self._log_drops()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 2.0)
            except TimeoutError:
                self._pool.terminate()
        if self._geoip is not None:
            self._geoip.close()

    async def _run(self) -> None:
        backoff = self.flush_interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            self._log_drops()
            try:
                await self.flush()
                backoff = self.flush_interval
            except TRANSIENT as exc:
                log.warning("scan flush failed, will retry: %s", type(exc).__name__)
                backoff = min(backoff * 2, MAX_BACKOFF)

    def _log_drops(self) -> None:
        if self._dropped_unlogged:
            log.error(
                "scans dropped",
                extra={"dropped": self._dropped_unlogged, "max_buffered": self.max_buffered},
            )
            self._dropped_unlogged = 0

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._dropped_unlogged += count

    async def flush(self) -> None:
        """Write everything buffered now, in batches. A transient fault puts the batch back in front
        and raises; any other failure (a value the database refuses, which would fail forever) drops
        that batch, counted and logged, and the others go on. One flush at a time: a second caller
        waits, then writes what is left."""
        async with self._flush_lock:
            # Log lines of one flush share an id, as a request's do.
            self._flushes += 1
            token = request_id.set(f"scans-{os.getpid()}-{self._flushes}")
            try:
                await self._flush_locked()
            finally:
                request_id.reset(token)

    async def _flush_locked(self) -> None:
        # What is buffered now, not what arrives meanwhile: chasing the buffer under load wrote a
        # trickle of small batches back to back (64 scans each behind the edge), every one paying
        # a batch's fixed cost in the worker and the database.
        pending = len(self._buffer)
        while pending > 0 and self._buffer:
            size = min(self.batch_size, pending)
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            batch_bytes = header_bytes(batch)
            self._buffered_bytes -= batch_bytes
            pending -= len(batch)
            try:
                await self._write(batch)
            except (*TRANSIENT, asyncio.CancelledError):
                self._buffer = batch + self._buffer
                self._buffered_bytes += batch_bytes
                overflow = len(self._buffer) - self.max_buffered
                if overflow > 0:  # keep the oldest: they are the ones a crash would lose first
                    del self._buffer[self.max_buffered :]
                    self._buffered_bytes = header_bytes(self._buffer)
                    self._drop(overflow)
                self.healthy = False
                raise
            except Exception:
                log.exception(
                    "a batch of scans could not be written and was dropped", extra={"dropped": len(batch)}
                )
                self._drop(len(batch))
                continue
            self.written += len(batch)
            self.healthy = True

    async def _write(self, batch: list[RawScan]) -> None:
        assert self._pool is not None
        async with self._pool.acquire(timeout=self._timeout) as connection:
            groups = await self._prepare(connection, batch)
            try:
                await rollups.write(connection, groups)
            except asyncpg.ForeignKeyViolationError:
                # A code gone from qr_codes (a restore of an older backup, say): keep the scans of the
                # codes that exist, drop the others and say so.
                existing = {
                    row["id"]
                    for row in await connection.fetch(EXISTING_CODES, list({g.code_id for g in groups}))
                }
                kept = [group for group in groups if group.code_id in existing]
                await rollups.write(connection, kept)
                lost = sum(len(group.moments) for group in groups if group.code_id not in existing)
                self._drop(lost)
                log.error("scans of unknown codes dropped", extra={"dropped": lost})

    async def _prepare(self, connection: Connection, batch: list[RawScan]) -> list[Scans]:
        """The scans of ``batch`` as they are stored and counted, in groups alike in everything but
        their moment. Scans are grouped first by what the request saw (a tuple and a dictionary
        look-up each); user agents, clients, referrers and the visitor hash are then worked out once
        per group, and each of the first three once per process (kept for the next batches)."""
        today = int(time.time() // 86400)
        if today != self._agents_day:
            self._agents.forget()
            self._agents_day = today
        alike: dict[
            tuple[str, bytes | None, bytes | None, str | None, bytes | None, int, str | None], list[float]
        ] = {}
        for moment, code_id, raw_agent, raw_referrer, peer, forwarded, served in batch:
            key = (code_id, raw_agent, raw_referrer, peer, forwarded, int(moment // 86400), served)
            moments = alike.get(key)
            if moments is None:
                alike[key] = [moment]
            else:
                moments.append(moment)
        prepared = []
        agents, clients, referrers = self._agents, self._clients, self._referrers
        for n, ((code_id, raw_agent, raw_referrer, peer, forwarded, _, served), moments) in enumerate(
            alike.items()
        ):
            if n and n % PREPARE_CHUNK == 0:
                await asyncio.sleep(0)
            agent = agents.get(raw_agent) or self._agent(raw_agent)
            client = clients.get((peer, forwarded)) or self._client(peer, forwarded)
            keyed = self._visitors.cached_day(moments[0]) or await self._visitors.for_day(
                connection, datetime.fromtimestamp(moments[0], UTC).date()
            )
            referrer, host = (
                (None, None)
                if raw_referrer is None
                else referrers.get(raw_referrer) or self._referrer(raw_referrer)
            )
            visitor = visitor_hash(keyed, client.hashed, agent.hashed)
            prepared.append((code_id, agent, referrer, host, visitor, client, moments, served))
        await self._identify(connection, {id(agent): agent for _, agent, *_ in prepared if agent.id is None})
        return [
            Scans(
                code_id,
                agent.id,
                referrer,
                host,
                visitor,
                agent.bot_reason,
                client.country,
                client.city,
                moments,
                served,
            )
            for code_id, agent, referrer, host, visitor, client, moments, served in prepared
        ]

    async def _identify(self, connection: Connection, unknown: dict[int, Agent]) -> None:
        """Classify agents seen for the first time (in a thread: crawlerdetect takes half a
        millisecond an agent) and give them their ids in ``user_agents``."""
        if not unknown:
            return
        unclassified = [agent for agent in unknown.values() if not agent.classified]
        if unclassified:
            reasons = await asyncio.to_thread(
                lambda: [classify_fully(agent.text or None) for agent in unclassified]
            )
            for agent, reason in zip(unclassified, reasons, strict=True):
                agent.bot_reason, agent.classified = reason, True
        texts = {agent.text: agent.bot_reason for agent in unknown.values()}
        rows = await connection.fetch(UPSERT_AGENTS, list(texts), list(texts.values()))
        ids = {row["agent"]: row["id"] for row in rows}
        for agent in unknown.values():  # two raw agents may come to one text (cut at 512)
            agent.id = ids[agent.text]

    def _agent(self, raw: bytes | None) -> Agent:
        text = _text(raw, MAX_USER_AGENT) or ""
        hashed = text.encode()
        return self._agents.remember(raw, Agent(text, hashed, None), len(raw or b"") + 2 * len(hashed))

    def _client(self, peer: str | None, forwarded: bytes | None) -> Client:
        """The client's address (and as hashed) behind trusted proxies, and where it is; most scans
        come through the same proxy from clients seen before."""
        address = client_address(
            peer, None if forwarded is None else forwarded.decode("latin-1"), self._trusted
        )
        country, city = self._geoip.locate(address) if self._geoip is not None else (None, None)
        client = Client(address, (address or "").encode(), country, city)
        return self._clients.remember((peer, forwarded), client, len(peer or "") + len(forwarded or b""))

    def _referrer(self, raw: bytes) -> tuple[str | None, str | None]:
        text = _text(raw, MAX_REFERRER)
        match = _REFERRER_HOST.match(text or "")
        referrer = (text, match.group(1).lower() if match else None)
        return self._referrers.remember(raw, referrer, len(raw) + 2 * len(text or ""))


@dataclass(frozen=True)
class ScanStats:
    buffered: int  # waiting to be written
    written: int  # running totals since the process started
    dropped: int
    healthy: bool  # the last write succeeded
