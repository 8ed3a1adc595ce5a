"""``qr-manage restore``: replace the database's contents with a backup's, all or nothing.

The archive is checked first (a pg_dump archive, complete, and one of ours), then restored into a
fresh staging database next to the live one, stopping at the first error. Only a complete restore
is swapped in: the live database is renamed away, the staging one takes its name, the old one is
dropped. A failure at any point before the swap leaves the live database as it was. The replaced
contents are first saved as an ordinary backup, so a restore of the wrong archive can be undone.

Afterwards a ``*`` change notification tells every redirect process to forget what it cached.
Restoring needs a role that may create databases (``CREATEDB``, checked before anything is done)
and end the services' sessions (a superuser, or ``pg_signal_backend``); the services' connections
to the old database are ended at the swap and reconnect to the restored one by name.

Servers older than the bundled tools (PostgreSQL 14 to 16 against pg_restore 18): pg_restore writes
``SET transaction_timeout``, which they do not know. For them the archive goes through pg_restore
as a script, without that line, into psql (one transaction, stopping at the first error): the same
restore, spelled for the older server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import asyncpg

from services.ops.backups import BackupError, libpq_target, take_backup
from services.ops.connections import connection
from services.ops.embedded import bin_dir
from shared.database import CHANGE_CHANNEL, FLUSH_ALL, AdvisoryLock, database_name, with_database
from shared.database import FAULTS as DATABASE_FAULTS

# Tables every archive of this service holds; an archive without them is someone else's.
OUR_TABLES = frozenset({"alembic_version", "qr_codes", "scans"})
MAINTENANCE_DATABASE = "postgres"
SWAP_ATTEMPTS = 20
STAGING_SUFFIX = "_restoring"
RETIRED_SUFFIX = "_replaced"
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL truncates longer names, which would make two names one
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (?:DATA )?(\S+) (\S+) ", re.MULTILINE)
TRANSACTION_TIMEOUT_FROM = 170000  # server_version_num: the first server that knows the setting
_UNKNOWN_BEFORE_17 = b"SET transaction_timeout = 0;\n"
_SCRIPT_BODY = (b"CREATE ", b"COPY ", b"ALTER ", b"SELECT pg_catalog.setval")


class RestoreError(RuntimeError):
    """The restore was refused or failed; the live database is as it was."""


# What the server, the network or a tool can do to a restore; each becomes a RestoreError.
FAULTS = (*DATABASE_FAULTS, subprocess.SubprocessError)


@dataclass(frozen=True)
class Restored:
    database: str
    saved: Path | None  # the backup of the contents that were replaced, if there were any
    warnings: tuple[str, ...] = ()  # done, but with something the operator should know


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=6 * 3600, check=False)


def _last_lines(text: str, count: int = 3) -> str:
    return " / ".join(line.strip() for line in text.strip().splitlines()[-count:])


def check_archive(archive: Path, env: dict[str, str]) -> None:
    """Refuse anything but a complete custom-format pg_dump archive of this service's schema."""
    if not archive.is_file():
        raise RestoreError(f"{archive}: no such file")
    listing = _run([str(bin_dir() / "pg_restore"), "--list", str(archive)], env)
    if listing.returncode != 0:
        if "end of file" in listing.stderr:
            raise RestoreError(f"{archive} is truncated ({_last_lines(listing.stderr, 1)})")
        raise RestoreError(
            f"{archive} is not a pg_dump archive in custom format ({_last_lines(listing.stderr, 1)})"
        )
    tables = {name for schema, name in _TOC_TABLE.findall(listing.stdout) if schema == "public"}
    if not tables >= OUR_TABLES:
        missing = ", ".join(sorted(OUR_TABLES - tables))
        raise RestoreError(f"{archive} is not a backup of this service: it has no table {missing}")
    # The table of contents sits at the start of the file: a truncated archive lists fine. Reading
    # every data block (into an SQL script thrown away) finds the missing end before anything changes.
    whole = _run([str(bin_dir() / "pg_restore"), "--file", "/dev/null", str(archive)], env)
    if whole.returncode != 0:
        raise RestoreError(f"{archive} is truncated or damaged ({_last_lines(whole.stderr, 1)})")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _holds_rows(dsn: str) -> bool:
    """Whether any table (but Alembic's revision) has a row: an empty migrated schema, as a fresh
    compose database has, is nothing to lose."""
    async with connection(dsn) as conn:
        tables = await conn.fetch(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'alembic_version'"
        )
        for (table,) in tables:
            # The name comes from the catalogue, quoted by format('%I'): not from any input.
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):  # noqa: S608
                return True
        return False


async def interrupted_restore(dsn: str) -> str | None:
    """The name of the replaced database an interrupted restore left on the server, if any."""
    retired = database_name(dsn) + RETIRED_SUFFIX
    async with connection(dsn) as conn:
        found = await conn.fetchval("SELECT datname FROM pg_database WHERE datname = $1", retired)
        return None if found is None else str(found)


class _Restore:
    """One restore, holding a session on the maintenance database (and the restore lock) throughout."""

    def __init__(self, dsn: str, admin: asyncpg.Connection) -> None:
        self.dsn = dsn
        self.admin = admin
        self.live = database_name(dsn)
        self.staging = self.live + STAGING_SUFFIX
        self.retired = self.live + RETIRED_SUFFIX
        self.warnings: list[str] = []

    async def names(self) -> dict[str, bool]:
        """The server's databases, with whether each accepts connections."""
        rows = await self.admin.fetch("SELECT datname, datallowconn FROM pg_database")
        return {row["datname"]: row["datallowconn"] for row in rows}

    async def recover(self) -> bool:
        """Undo what an interrupted restore left; return whether the live database exists."""
        names = await self.names()
        if self.retired in names:
            if self.live in names:
                raise RestoreError(
                    f"database {self.retired} (the contents an interrupted restore was replacing) sits "
                    f"beside {self.live}: look at both, drop the one you do not want, and run restore again"
                )
            await self.admin.execute(f"ALTER DATABASE {_ident(self.retired)} RENAME TO {_ident(self.live)}")
            names[self.live] = names.pop(self.retired)
            self.warnings.append(f"an interrupted restore had left {self.retired}: it is {self.live} again")
        if self.live in names and not names[self.live]:
            await self.admin.execute(f"ALTER DATABASE {_ident(self.live)} ALLOW_CONNECTIONS true")
        if self.staging in names:  # a half-restored copy: never live data
            await self.admin.execute(f"DROP DATABASE {_ident(self.staging)} WITH (FORCE)")
        return self.live in names

    async def create_staging(self, owner: str | None) -> None:
        clause = f" OWNER {_ident(owner)}" if owner else ""
        await self.admin.execute(f"CREATE DATABASE {_ident(self.staging)} TEMPLATE template0{clause}")

    async def drop_staging(self) -> None:
        with contextlib.suppress(Exception):
            await self.admin.execute(f"DROP DATABASE IF EXISTS {_ident(self.staging)} WITH (FORCE)")

    async def swap(self, live_exists: bool) -> None:
        """Give the staging database the live one's name. The live one's sessions are ended (the
        services reconnect, by name, to the restored database) and it is dropped at the end."""
        live, staging, retired = _ident(self.live), _ident(self.staging), _ident(self.retired)
        if live_exists:
            # No new sessions from here on; the open ones are ended, then the name is free.
            await self.admin.execute(f"ALTER DATABASE {live} ALLOW_CONNECTIONS false")
            try:
                for attempt in range(SWAP_ATTEMPTS):
                    await self.admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()",
                        self.live,
                    )
                    try:
                        await self.admin.execute(f"ALTER DATABASE {live} RENAME TO {retired}")
                        break
                    except asyncpg.ObjectInUseError:
                        if attempt == SWAP_ATTEMPTS - 1:
                            raise
                        await asyncio.sleep(0.1)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.admin.execute(f"ALTER DATABASE {live} ALLOW_CONNECTIONS true")
                raise
        try:
            await self.admin.execute(f"ALTER DATABASE {staging} RENAME TO {live}")
        except BaseException:
            if live_exists:  # put the live database back as it was (or the next run will)
                with contextlib.suppress(Exception):
                    await self.admin.execute(f"ALTER DATABASE {retired} RENAME TO {live}")
                    await self.admin.execute(f"ALTER DATABASE {live} ALLOW_CONNECTIONS true")
            raise
        if live_exists:
            try:
                await self.admin.execute(f"DROP DATABASE {retired} WITH (FORCE)")
            except asyncpg.PostgresError as exc:
                self.warnings.append(f"the replaced database is left as {self.retired}; drop it ({exc})")

    async def notify(self) -> None:
        try:
            async with connection(self.dsn) as conn:
                await conn.execute("SELECT pg_notify($1, $2)", CHANGE_CHANNEL, FLUSH_ALL)
        except DATABASE_FAULTS as exc:
            self.warnings.append(
                f"could not notify the redirect processes ({exc}); they drop their caches when they reconnect"
            )


CAN_CREATE_DATABASES = "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"


async def _restore(dsn: str, archive: Path, backup_dir: Path, env: dict[str, str], replace: bool) -> Restored:
    async with connection(with_database(dsn, MAINTENANCE_DATABASE)) as admin:
        if not await admin.fetchval(CAN_CREATE_DATABASES):
            role = await admin.fetchval("SELECT current_user")
            raise RestoreError(
                f"role {role} may not create databases, and a restore builds a fresh one to swap in: "
                f"ALTER ROLE {role} CREATEDB (or restore as a superuser). Nothing changed"
            )
        job = _Restore(dsn, admin)
        if len(job.staging.encode()) > MAX_IDENTIFIER_BYTES:
            raise RestoreError(
                f"database name {job.live!r} is too long to restore beside it (at most 53 bytes)"
            )
        if not await admin.fetchval("SELECT pg_try_advisory_lock($1)", AdvisoryLock.RESTORE):
            raise RestoreError("another restore is running on this server; wait for it")
        live_exists = await job.recover()
        saved = None
        owner = None
        if live_exists:
            owner = await admin.fetchval(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", job.live
            )
            if await _holds_rows(dsn):
                if not replace:
                    raise RestoreError(
                        f"database {job.live} holds data: restoring replaces all of it (it is saved as a "
                        "backup first); pass --yes to go on"
                    )
                try:
                    saved = await asyncio.to_thread(take_backup, dsn, backup_dir)
                except BackupError as exc:
                    raise RestoreError(
                        f"could not save the current contents first, nothing changed: {exc}"
                    ) from None
        try:
            return await _restore_into_staging(job, env, archive, live_exists, owner, saved)
        except (RestoreError, *FAULTS) as exc:
            if saved is None:
                raise
            raise RestoreError(
                f"{_describe(exc)} (the current contents were also saved in {saved})"
            ) from None


async def _restore_into_staging(
    job: _Restore,
    env: dict[str, str],
    archive: Path,
    live_exists: bool,
    owner: str | None,
    saved: Path | None,
) -> Restored:
    admin = job.admin
    current_user = await admin.fetchval("SELECT current_user")
    await job.create_staging(owner if owner != current_user else None)
    try:
        staging_target, _ = libpq_target(with_database(job.dsn, job.staging))
        options = ["--no-owner", "--no-privileges"]
        if owner and owner != current_user:
            options.append(f"--role={owner}")  # the objects belong to the database's owner, as before
        if int(await admin.fetchval("SHOW server_version_num")) >= TRANSACTION_TIMEOUT_FROM:
            command = [str(bin_dir() / "pg_restore"), "--exit-on-error", "--single-transaction", *options]
            result = await asyncio.to_thread(_run, [*command, "--dbname", staging_target, str(archive)], env)
            failure = result.stderr if result.returncode != 0 else None
        else:
            failure = await asyncio.to_thread(_restore_as_script, archive, options, staging_target, env)
        if failure is not None:
            raise RestoreError(f"pg_restore failed, nothing changed: {_last_lines(failure)}")
        try:
            await job.swap(live_exists)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise RestoreError(
                f"could not end the sessions on {job.live} ({exc}); restore as a superuser. Nothing changed"
            ) from None
    except BaseException:
        await job.drop_staging()
        raise
    await job.notify()
    return Restored(database=job.live, saved=saved, warnings=tuple(job.warnings))


def _restore_as_script(archive: Path, options: list[str], target: str, env: dict[str, str]) -> str | None:
    """pg_restore's script of ``archive`` into psql, one transaction, stopping at the first error,
    without the header's ``SET transaction_timeout`` (servers before 17 refuse it). What failed
    (stderr of either tool), or ``None``."""
    dump = subprocess.Popen(
        [str(bin_dir() / "pg_restore"), *options, "--file=-", str(archive)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    load = subprocess.Popen(
        [
            str(bin_dir() / "psql"),
            "--no-psqlrc",
            "--quiet",
            "--single-transaction",
            "--set=ON_ERROR_STOP=1",
            "--dbname",
            target,
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Pipes, as asked for above.
    dump_out, dump_err = cast(IO[bytes], dump.stdout), cast(IO[bytes], dump.stderr)
    load_in, load_err = cast(IO[bytes], load.stdin), cast(IO[bytes], load.stderr)
    errors: dict[str, bytes] = {}
    # Both tools' stderr drained meanwhile: a full pipe would stop either one mid-way.
    drains = [
        threading.Thread(target=lambda n=name, f=stream: errors.__setitem__(n, f.read()), daemon=True)
        for name, stream in (("pg_restore", dump_err), ("psql", load_err))
    ]
    for drain in drains:
        drain.start()
    try:
        header = True
        for line in dump_out:
            if header:
                if line == _UNKNOWN_BEFORE_17:
                    continue
                header = not line.startswith(_SCRIPT_BODY)
            try:
                load_in.write(line)
            except BrokenPipeError:  # psql stopped at an error: its stderr says which
                break
        with contextlib.suppress(BrokenPipeError):
            load_in.close()
        load.wait(timeout=6 * 3600)
        dump_out.close()
        dump.wait(timeout=60)
        for drain in drains:
            drain.join(timeout=60)
    finally:
        for process in (dump, load):
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in (("psql", load), ("pg_restore", dump)):
        if process.returncode != 0:
            return f"{name}: " + errors.get(name, b"").decode("utf-8", "replace")
    return None


def restore(dsn: str, archive: Path, backup_dir: Path, *, replace: bool) -> Restored:
    """Replace the contents of the database ``dsn`` names with ``archive``'s.

    ``replace``: allowed to replace a database that holds data (whose contents are saved first as
    a backup in ``backup_dir``). Raises :class:`RestoreError`, with the live database unchanged.
    """
    _, env = libpq_target(dsn)
    check_archive(archive, env)
    try:
        return asyncio.run(_restore(dsn, archive, backup_dir, env, replace))
    except FAULTS as exc:
        raise RestoreError(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RestoreError):
        return str(exc)
    return f"restore failed, the database is as it was: {type(exc).__name__}: {exc}"
