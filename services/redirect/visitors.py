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
        self._by_number: dict[int, Any] = {}  # the same by days since 1970 (no date object per scan)

    def cached_day(self, moment: float) -> Any | None:
        """The keyed hasher of the UTC day of ``moment`` (Unix time) if this process holds it."""
        return self._by_number.get(int(moment // 86400))

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
            self._by_number = {(d - _EPOCH).days: k for d, k in self._keyed.items()}
        return keyed


_EPOCH = date(1970, 1, 1)


def visitor_hash(keyed: Any, address: bytes, user_agent: bytes) -> bytes:
    """The keyed hash of (address, user agent), both UTF-8, NUL between them."""
    hasher = keyed.copy()  # a keyed BLAKE2b, copied: cheaper than keying anew per scan
    hasher.update(address + b"\x00" + user_agent)
    return bytes(hasher.digest())
