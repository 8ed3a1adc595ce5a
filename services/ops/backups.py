"""pg_dump backups: written under a temporary name, checked, then renamed into place.

A failed or partial dump therefore never looks like a backup. The ``pg_dump`` used is the one
shipped with the embedded server: it matches its major version (the one on a Debian PATH is older
and refuses to dump a newer server), and a newer pg_dump also reads older servers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from services.ops.connections import connection
from services.ops.embedded import bin_dir
from shared.backups import archive_name, list_backups, newest_backup
from shared.database import asyncpg_dsn, split_password

HOLDS_DATA = """
SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))
"""


ARCHIVE_MODE = 0o600


class BackupError(RuntimeError):
    """A dump or its check failed; nothing was left that looks like a backup."""


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password (which would show in ``ps``), and an env passing it instead."""
    target, password = split_password(asyncpg_dsn(dsn))
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return target, env


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise BackupError(
            f"{what} failed: {result.stderr.strip()[-2000:] or 'exit code ' + str(result.returncode)}"
        )


def take_backup(dsn: str, backup_dir: Path, *, now: datetime | None = None) -> Path:
    """Dump the database in custom format into ``backup_dir``; return the archive's path."""
    backup_dir.mkdir(parents=True, exist_ok=True)
    final = backup_dir / archive_name(now or datetime.now(UTC))
    partial = final.with_name(final.name + ".partial")
    target, env = libpq_target(dsn)
    try:
        # Readable by the backup's owner alone (a dump holds every code and scan): made 0600
        # before pg_dump writes into it, whatever the umask.
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, ARCHIVE_MODE))
        os.chmod(partial, ARCHIVE_MODE)
        _run(
            [
                str(bin_dir() / "pg_dump"),
                "--format=custom",
                # The day keys of the visitor hashes stay out of backups: with a kept key, hashed
                # addresses could be recovered by trying them all.
                "--exclude-table-data=visitor_keys",
                "--file",
                str(partial),
                "--dbname",
                target,
            ],
            env,
            "pg_dump",
        )
        _run(
            [str(bin_dir() / "pg_restore"), "--list", str(partial)],
            env,
            "checking the archive (pg_restore --list)",
        )
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    return final


def prune(backup_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` archives; return what was deleted. Only complete archives
    of ours count or go: anything else in the folder is left alone."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    archives = list_backups(backup_dir)
    doomed = archives[:-keep]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


async def holds_data(dsn: str) -> bool:
    """Whether the database has any table of ours (then it is worth a backup before migrating)."""
    async with connection(dsn) as conn:
        return bool(await conn.fetchval(HOLDS_DATA))


def holds_data_sync(dsn: str) -> bool:
    return asyncio.run(holds_data(dsn))


async def holds_codes(dsn: str) -> bool:
    """Whether there is anything to lose: a QR code made (a freshly migrated database holds tables
    but nothing of anyone's)."""
    async with connection(dsn) as conn:
        if await conn.fetchval("SELECT to_regclass('public.qr_codes')") is None:
            return False
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM qr_codes)"))


class BackupSchedule:
    """When the next scheduled backup is due: ``interval`` seconds after the newest archive in the
    folder (so a restart neither resets the clock nor takes a needless extra backup). While the
    database holds no code yet it is asked again every ``idle_check`` seconds, so the first backup
    follows the first code within that time. A failed backup is tried again after ``retry``."""

    def __init__(
        self,
        dsn: str,
        backup_dir: Path,
        *,
        interval: float,
        keep: int,
        idle_check: float = 60.0,
        retry: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dsn, self.backup_dir, self.interval, self.keep = dsn, backup_dir, interval, keep
        self._idle_check, self._retry = min(idle_check, interval), min(retry, interval)
        self._clock = clock
        self._not_before = 0.0

    def seconds_until_due(self) -> float:
        now = self._clock()
        newest = newest_backup(self.backup_dir)
        due = newest[1] + self.interval if newest else now
        return max(0.0, max(due, self._not_before) - now)

    def run_if_due(self) -> Path | None:
        """Take a backup and apply the retention if one is due and there is something to save; the
        archive, or ``None``. Raises what the dump raised (after setting the retry)."""
        if self.seconds_until_due() > 0:
            return None
        try:
            if not asyncio.run(holds_codes(self.dsn)):
                self._not_before = self._clock() + self._idle_check
                return None
            archive = take_backup(self.dsn, self.backup_dir)
        except BaseException:
            self._not_before = self._clock() + self._retry
            raise
        prune(self.backup_dir, self.keep)
        return archive
