"""Visitor hashing: who scanned, countable per day, never identifiable.

A visitor is a keyed BLAKE2b of (client address, user agent) under the key of the scan's UTC day.
Every redirect process shares the day's key through the ``visitor_keys`` table (the first to need
it makes it), and keys of days before yesterday are deleted: hashes can be counted per day but never
linked across days, and no address can be recovered by trying them all against a key that still
exists. No raw address is stored anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, timedelta
from typing import Any

import asyncpg

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

INSERT_DAY_KEY = "INSERT INTO visitor_keys (day, key) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING"
SELECT_DAY_KEY = "SELECT key FROM visitor_keys WHERE day = $1"
FORGET_OLD_KEYS = "DELETE FROM visitor_keys WHERE day < $1"
ALL = (INSERT_DAY_KEY, SELECT_DAY_KEY, FORGET_OLD_KEYS)


class VisitorHasher:
    """The day keys one process holds (today's and yesterday's), fetched or made on first use."""

    def __init__(self) -> None:
        self._keyed: dict[date, Any] = {}  # day -> a BLAKE2b keyed with the day's key

    def cached(self, day: date) -> Any | None:
        """The keyed hasher of ``day`` if this process already holds it (no database needed)."""
        return self._keyed.get(day)

    async def for_day(self, connection: Connection, day: date) -> Any:
        """A BLAKE2b hasher keyed with ``day``'s key, made (and shared with every process through
        ``visitor_keys``) on first use."""
        keyed = self._keyed.get(day)
        if keyed is None:
            await connection.execute(INSERT_DAY_KEY, day, secrets.token_bytes(32))
            key = await connection.fetchval(SELECT_DAY_KEY, day)
            # Yesterday's key stays for scans flushed just after midnight; older ones go.
            await connection.execute(FORGET_OLD_KEYS, day - timedelta(days=1))
            self._keyed = {d: k for d, k in self._keyed.items() if d >= day - timedelta(days=1)}
            keyed = self._keyed[day] = hashlib.blake2b(key=key, digest_size=16)
        return keyed


def visitor_hash(keyed: Any, address: str | None, user_agent: str | None) -> bytes:
    hasher = keyed.copy()  # a keyed BLAKE2b, copied: cheaper than keying anew per scan
    hasher.update(f"{address or ''}\x00{user_agent or ''}".encode())
    return bytes(hasher.digest())
