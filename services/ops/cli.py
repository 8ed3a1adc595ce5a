"""``qr-manage``: the operators' command line, on the server side.

It reads the same environment as the services. With ``DATABASE_URL`` unset it uses the embedded
database under the checkout's ``var/`` (the one ``make run`` uses), starting it if needed and
stopping only what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from services.ops import backups, embedded
from services.ops.connections import connection
from services.ops.settings import OpsSettings, StackSettings
from shared import logging as qrlog
from shared import settings as env
from shared.backups import newest_backup
from shared.database import FAULTS as DATABASE_FAULTS
from shared.settings import ConfigError, read_bool, read_log_level

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from services.management.schemas.tokens import NewToken

T = TypeVar("T")


def _settings() -> OpsSettings:
    try:
        return OpsSettings.from_env(os.environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def database(settings: OpsSettings) -> Iterator[str]:
    """The DSN to work on: ``DATABASE_URL``, or the embedded server (stopped again if started here)."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    from services.ops.stack import live_supervisor

    server = embedded.start(settings.var_dir)
    try:
        yield server.dsn()
    finally:
        # A stack that started meanwhile is using the server: it takes it over and stops it later.
        server.release(heir=live_supervisor(settings.var_dir))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate a QR service installation: run it locally, migrate, back up, check.

    \b
    Examples:
      qr-manage run             # the whole local stack in the foreground (what `make run` does)
      qr-manage migrate         # upgrade the schema to the newest revision
      qr-manage backup          # pg_dump into BACKUP_DIR, checked, path printed
      qr-manage restore FILE --yes   # replace the database's contents with a backup's
      qr-manage prune-backups   # keep the newest BACKUP_RETENTION archives
      qr-manage status          # is everything in order? (exit code 1 when not)
      qr-manage maintain        # VACUUM (ANALYZE) of the busy tables, while serving
      qr-manage edge-config     # a static Traefik file for compose (production, load balancer)
      qr-manage token create ci --role editor --tag print --expires-in 90
                                # a bearer token (ADMIN_AUTH=identity), printed once
    """
    try:
        # Logs to stderr: stdout is the commands' output (an archive's path, the status report).
        # `run` is the stack in the foreground: its logs go to stdout with the services' own.
        running = click.get_current_context().invoked_subcommand == "run"
        qrlog.configure(read_log_level(os.environ), stream=sys.stdout if running else sys.stderr)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@main.command()
def run() -> None:
    """Run the whole stack in the foreground until Ctrl-C or SIGTERM.

    Starts the embedded PostgreSQL (unless DATABASE_URL is set), backs up a database that holds data,
    migrates, then starts the redirect service, the management service and Traefik, and prints the
    URLs. Stopping stops every process it started.
    """
    from services.ops.stack import Stack

    try:
        settings = StackSettings.from_env(os.environ)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    sys.exit(Stack(settings, environ=dict(os.environ)).run())


@main.command()
def migrate() -> None:
    """Upgrade the database schema to the newest revision (safe to repeat)."""
    from services.ops import budget, schema  # Alembic and SQLAlchemy: imported only where needed

    with database(_settings()) as dsn:
        # Compose's and Kubernetes' first step: refuse a deployment that would run out of connections.
        environ = {k: v for k, v in os.environ.items() if k != "DATABASE_PASSWORD_FILE"}
        try:
            asyncio.run(budget.check(dsn, budget.Budget.from_env({**environ, "DATABASE_URL": dsn})))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        schema.upgrade(dsn)
        click.echo(f"schema at revision {schema.current_revision_sync(dsn)}")


@main.command()
@click.option(
    "--schedule",
    is_flag=True,
    help="Run until stopped: a backup every BACKUP_INTERVAL_HOURS (the first as soon as a code "
    "exists), keeping BACKUP_RETENTION.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Take none: exit 1 when the newest archive is older than BACKUP_MAX_AGE_HOURS while the "
    "database holds codes (a health check of the schedule).",
)
def backup(schedule: bool, check: bool) -> None:
    """Write a checked pg_dump archive (custom format) into BACKUP_DIR and print its path."""
    settings = _settings()
    if schedule and check:
        raise click.UsageError("--schedule and --check exclude each other")
    with database(settings) as dsn:
        if check:
            _check_backup_age(dsn, settings)
        elif schedule:
            _backup_on_schedule(dsn, settings)
        else:
            try:
                archive = backups.take_backup(dsn, settings.backup_dir)
            except backups.BackupError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(str(archive))


# What the backup schedule found at its last turn (at most a minute ago): a line starting with
# "ok" or "attention". Compose's health check reads it with the shell (no Python start every few
# seconds); `qr-manage backup --check` judges the same thing by itself.
BACKUP_HEALTH = Path(tempfile.gettempdir()) / "qr-backup-health"


def _backup_on_schedule(dsn: str, settings: OpsSettings) -> None:
    plan = backups.BackupSchedule(
        dsn,
        settings.backup_dir,
        interval=settings.backup_interval_hours * 3600,
        keep=settings.backup_retention,
    )
    # SIGTERM (docker stop) unwinds like Ctrl-C: a dump in progress is killed, its partial file removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    click.echo(
        f"backups every {settings.backup_interval_hours:g} h into {settings.backup_dir}, "
        f"keeping {settings.backup_retention}"
    )
    while True:
        try:
            archive = plan.run_if_due()
        except (backups.BackupError, *DATABASE_FAULTS) as exc:
            click.echo(f"backup failed, trying again later: {exc}", err=True)
        else:
            if archive is not None:
                click.echo(str(archive))
        in_order, verdict = _backup_verdict(dsn, settings)
        partial = BACKUP_HEALTH.with_name(BACKUP_HEALTH.name + ".partial")
        partial.write_text(f"{'ok' if in_order else 'attention'}: {verdict}\n")
        partial.replace(BACKUP_HEALTH)
        time.sleep(min(60.0, max(0.5, plan.seconds_until_due())))


def _backup_verdict(dsn: str, settings: OpsSettings) -> tuple[bool, str]:
    """Whether the backups are in order (the newest archive younger than BACKUP_MAX_AGE_HOURS, or
    no code to lose yet), and why."""
    newest = newest_backup(settings.backup_dir)
    if newest:
        hours = (time.time() - newest[1]) / 3600
        if hours <= settings.backup_max_age_hours:
            return True, f"newest backup {hours:.1f} h old"
        problem = (
            f"the newest backup is {hours:.1f} h old (BACKUP_MAX_AGE_HOURS={settings.backup_max_age_hours:g})"
        )
    else:
        problem = f"no backup in {settings.backup_dir}"
    try:
        codes = asyncio.run(backups.holds_codes(dsn))
    except DATABASE_FAULTS as exc:
        return False, f"{problem}; database unreachable: {type(exc).__name__}"
    if not codes:
        return True, f"{problem}, but the database holds no code yet"
    return False, problem


def _check_backup_age(dsn: str, settings: OpsSettings) -> None:
    in_order, verdict = _backup_verdict(dsn, settings)
    if not in_order:
        click.echo(f"attention: {verdict}", err=True)
        sys.exit(1)
    click.echo(verdict)


@main.command()
@click.argument("archive", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--newest", is_flag=True, help="Restore the newest archive in BACKUP_DIR instead of ARCHIVE.")
@click.option("--yes", is_flag=True, help="Replace a database that holds data (saved as a backup first).")
def restore(archive: Path | None, newest: bool, yes: bool) -> None:
    """Replace the database's contents with ARCHIVE's (a qr-manage backup), or with the newest
    archive in BACKUP_DIR (--newest).

    The archive is checked first; it is restored into a fresh database that is swapped in only when
    complete, so a failure changes nothing. The contents it replaces are saved as a backup first.
    Redirect processes drop their caches afterwards. Run `qr-manage migrate` next when the archive
    comes from an older version.

    \b
    Examples:
      qr-manage restore backups/qr-20261126T091500_000000Z.dump --yes
      qr-manage restore --newest --yes      # after losing the database's volume
    """
    from services.ops import restore as restoring
    from services.ops import schema

    settings = _settings()
    if (archive is None) == (not newest):
        raise click.UsageError("name an ARCHIVE or say --newest (not both)")
    if archive is None:
        found = newest_backup(settings.backup_dir)
        if found is None:
            raise click.ClickException(f"no archive in {settings.backup_dir}")
        archive = found[0]
    with database(settings) as dsn:
        try:
            restored = restoring.restore(dsn, archive, settings.backup_dir, replace=yes)
        except restoring.RestoreError as exc:
            raise click.ClickException(str(exc)) from None
        try:
            revision = schema.current_revision_sync(dsn)
        except DATABASE_FAULTS as exc:
            revision = f"unknown: {type(exc).__name__}"
        head = schema.head_revision()
    if restored.saved is not None:
        click.echo(f"saved the replaced contents in {restored.saved}")
    click.echo(f"restored {archive} into database {restored.database} (schema {revision})")
    for warning in restored.warnings:
        click.echo(f"warning: {warning}", err=True)
    if revision != head:
        click.echo(f"attention: schema is not at head ({head}): run qr-manage migrate", err=True)


# Where `maintain --schedule` notes its last success, for `maintain --check` in the same container.
MAINTAINED_STAMP = Path(tempfile.gettempdir()) / "qr-maintained"


@main.command()
@click.option(
    "--schedule",
    is_flag=True,
    help="Run until stopped: the upkeep every six hours (compose's maintenance job), again after "
    "five minutes when it fails.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Do none: exit 1 unless a --schedule in this container succeeded within the last seven "
    "hours (a health check of the schedule).",
)
def maintain(schedule: bool, check: bool) -> None:
    """Scheduled upkeep, safe while the services serve: partitions of scans ahead and retention
    (with the tallies and user agents of the scans dropped), visitor hashes of past days, expired
    idempotency keys, VACUUM (ANALYZE) of the busy tables.

    Run it every few hours (compose does; make run does at start and every six hours); it prints what it did.
    """
    if schedule and check:
        raise click.UsageError("--schedule and --check exclude each other")
    if check:
        _check_maintained()
    elif schedule:
        _maintain_on_schedule()
    else:
        _maintain_once()


def _maintain_on_schedule() -> None:
    from services.ops.stack import UPKEEP_INTERVAL

    # SIGTERM (docker stop) ends it at once, like Ctrl-C: a VACUUM in progress is cancelled.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    click.echo(f"maintenance every {UPKEEP_INTERVAL / 3600:g} h")
    while True:
        try:
            _maintain_once()
        except click.ClickException as exc:
            click.echo(f"{exc.message}; trying again in five minutes", err=True)
            time.sleep(300)
            continue
        MAINTAINED_STAMP.touch()
        time.sleep(UPKEEP_INTERVAL)


def _check_maintained() -> None:
    from services.ops.stack import UPKEEP_INTERVAL

    try:
        age = time.time() - MAINTAINED_STAMP.stat().st_mtime
    except OSError:
        click.echo("attention: no maintenance has succeeded here yet", err=True)
        sys.exit(1)
    if age > UPKEEP_INTERVAL + 3600:
        click.echo(f"attention: the last maintenance that succeeded is {age / 3600:.1f} h old", err=True)
        sys.exit(1)
    click.echo(f"last maintenance {age / 3600:.1f} h ago")


def _maintain_once() -> None:
    from services.ops import maintenance

    settings = _settings()
    with database(settings) as dsn:
        try:
            upkeep = asyncio.run(
                maintenance.keep_partitions(
                    dsn,
                    retention_days=settings.scan_retention_days,
                    audit_retention_days=settings.audit_retention_days,
                )
            )
            steps = asyncio.run(maintenance.maintain(dsn))
        except DATABASE_FAULTS as exc:
            raise click.ClickException(f"maintenance failed: {type(exc).__name__}: {exc}") from None
    for name in upkeep.made:
        click.echo(f"made partition {name}")
    if upkeep.moved:
        click.echo(f"moved {upkeep.moved} scans out of the default partition into their months")
    for name in upkeep.dropped:
        click.echo(
            f"dropped partition {name} (raw scans past SCAN_RETENTION_DAYS={settings.scan_retention_days})"
        )
    if upkeep.forgotten_visitors:
        click.echo(f"forgot {upkeep.forgotten_visitors} visitor hashes of past days")
    if upkeep.forgotten_tallies or upkeep.forgotten_agents:
        click.echo(
            f"forgot {upkeep.forgotten_tallies} tallies and {upkeep.forgotten_agents} user agents "
            "of the raw scans dropped"
        )
    if upkeep.expired_keys:
        click.echo(f"forgot {upkeep.expired_keys} idempotency keys past their hours")
    if upkeep.expired_audit:
        click.echo(
            f"forgot {upkeep.expired_audit} audit entries "
            f"past AUDIT_RETENTION_DAYS={settings.audit_retention_days}"
        )
    for step in steps:
        if step.skipped:
            click.echo(f"skipped {step.table}: another session holds it (a migration?); next run")
        else:
            dead = f"{step.dead_rows_before} dead rows"
            click.echo(f"vacuumed and analysed {step.table} ({dead}) in {step.seconds:.2f} s")


@main.command("prune-backups")
def prune_backups() -> None:
    """Delete all but the newest BACKUP_RETENTION archives in BACKUP_DIR; print what went."""
    settings = _settings()
    for path in backups.prune(settings.backup_dir, settings.backup_retention):
        click.echo(f"deleted {path}")


@main.group()
def token() -> None:
    """Bearer tokens the service makes, for ADMIN_AUTH=identity: create, list, revoke.

    A token has a role (viewer < editor < admin) and, with --tag, sees and changes only the codes
    carrying one of its tags. The service keeps a keyed hash of it, never the token, under a key in
    QR_DATA_DIR (.token-secret): run this where the management service's QR_DATA_DIR is.
    """


@token.command("create")
@click.argument("name")
@click.option(
    "--role", required=True, type=click.Choice(["viewer", "editor", "admin"]), help="What it may do."
)
@click.option("--tag", "tags", multiple=True, help="Only codes carrying this tag (repeat for more).")
@click.option("--expires-in", "expires_in", type=int, default=None, help="Days until it stops working.")
def token_create(name: str, role: str, tags: tuple[str, ...], expires_in: int | None) -> None:
    """Make the token NAME and print it, once, alone on the last line (kept nowhere)."""
    new = _new_token(name, role, tags, expires_in)
    from services.management.auth.tokens import kept_key
    from services.management.service import tokens as service_tokens

    settings = _settings()
    try:
        key = kept_key(settings.qr_data_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    with database(settings) as dsn:
        made = _on_database(dsn, lambda conn: service_tokens.create(conn, key, new, service_tokens.QR_MANAGE))
    expires = made.expires_at.isoformat(timespec="seconds") if made.expires_at else "never"
    click.echo(f"token {made.name}: role {made.role}, {_tags(made.tags)}, expires {expires}")
    click.echo(
        "Shown this once; the service keeps only a keyed hash of it. Use it as Authorization: Bearer …"
    )
    click.echo(made.token)


@token.command("list")
def token_list() -> None:
    """Every token the service made, revoked ones too (never a token itself)."""
    from services.management.service import tokens as service_tokens

    settings = _settings()
    with database(settings) as dsn:
        listing = _on_database(dsn, service_tokens.listing)
    rows = [("NAME", "ROLE", "TAGS", "CREATED", "EXPIRES", "LAST USED", "REVOKED")]
    for item in listing.items:
        rows.append(
            (
                item.name,
                item.role,
                ",".join(item.tags) or "*",
                _when(item.created_at),
                _when(item.expires_at),
                _when(item.last_used_at),
                _when(item.revoked_at),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke the token NAME: every management process refuses it within a few seconds."""
    from services.management.service import tokens as service_tokens

    settings = _settings()
    with database(settings) as dsn:
        _on_database(dsn, lambda conn: service_tokens.revoke(conn, name, service_tokens.QR_MANAGE))
    click.echo(f"token {name} revoked")


def _new_token(name: str, role: str, tags: tuple[str, ...], expires_in: int | None) -> NewToken:
    """The token asked for, checked as the API checks it (a usage error, exit 2, otherwise)."""
    from pydantic import ValidationError

    from services.management.schemas.tokens import MAX_TOKEN_DAYS, NewToken

    try:
        return NewToken.model_validate(
            {"name": name, "role": role, "tags": list(tags) or None, "expires_in_days": expires_in}
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        if field == "name":
            message = "NAME may hold letters, digits and _ . @ - only, at most 64 of them"
        elif field == "expires_in_days":
            message = f"--expires-in must be a whole number of days from 1 to {MAX_TOKEN_DAYS:,}"
        else:
            message = f"--tag: {error['msg']}"
        raise click.UsageError(message) from None


def _on_database(dsn: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``work`` done in one transaction on ``dsn``; a refusal of the service's (a name taken, a token
    not found) or the database away is a clear error, exit 1."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from services.management.errors import DomainError
    from shared.database import sqlalchemy_url

    async def run() -> T:
        engine = create_async_engine(sqlalchemy_url(dsn))
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    except DATABASE_FAULTS as exc:
        raise click.ClickException(f"the database cannot be reached: {type(exc).__name__}") from None


def _tags(tags: list[str]) -> str:
    return "tags " + ", ".join(tags) if tags else "every code"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment is not None else "-"


# The PostgreSQL major versions still supported upstream, each tested (docs/operations.md).
SUPPORTED_MAJORS = (14, 15, 16, 17, 18)


async def _server_version(dsn: str) -> int:
    async with connection(dsn) as conn:
        return int(await conn.fetchval("SHOW server_version_num"))


async def _replicas(dsn: str) -> list[str]:
    """The standbys streaming from this server, as pg_stat_replication shows them (their lag when
    the role may see it: a superuser or pg_monitor)."""
    async with connection(dsn) as conn:
        rows = await conn.fetch(
            "SELECT application_name, state, extract(epoch FROM replay_lag)::float8 AS lag"
            " FROM pg_stat_replication ORDER BY application_name"
        )
    shown = []
    for row in rows:
        lag = "replay lag unknown" if row["lag"] is None else f"replay lag {row['lag']:.3f} s"
        shown.append(f"{row['application_name'] or 'standby'} {row['state'] or 'unknown'}, {lag}")
    return shown


async def _counts(dsn: str) -> dict[str, int]:
    async with connection(dsn) as conn:
        return {
            "codes": await conn.fetchval("SELECT count(*) FROM qr_codes WHERE deleted_at IS NULL"),
            "deleted_codes": await conn.fetchval(
                "SELECT count(*) FROM qr_codes WHERE deleted_at IS NOT NULL"
            ),
            "scans": await conn.fetchval("SELECT count(*) FROM scans"),
        }


# Ids that differ only in case, from before ids became case-insensitive (migration 0006).
CASE_CLASHES = """
SELECT array_agg(id ORDER BY created_at, id) AS ids FROM qr_codes
GROUP BY lower(id) HAVING count(*) > 1 ORDER BY min(created_at) LIMIT 50
"""


async def _case_clashes(dsn: str) -> list[list[str]]:
    async with connection(dsn) as conn:
        if await conn.fetchval("SELECT to_regclass('public.qr_codes')") is None:
            return []
        return [list(row["ids"]) for row in await conn.fetch(CASE_CLASHES)]


def _bytes(count: int) -> str:
    """A size as people read it: 1.5 GiB, 12.0 MiB, 900 B."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _image_store(settings: OpsSettings) -> str:
    """The image store's size and bound; the service keeps it under the bound as it writes (a
    store over it shrinks at the next image rendered)."""
    from services.management.storage import usage

    files, size = usage(settings.qr_data_dir)
    bound = settings.qr_data_max_bytes
    limit = f"of {_bytes(bound)} (QR_DATA_MAX_BYTES)" if bound else "with no bound (QR_DATA_MAX_BYTES=0)"
    return f"{_bytes(size)} {limit}, {files:,} files in {settings.qr_data_dir}"


def env_flag(name: str) -> bool:
    try:
        return read_bool(os.environ, name, False)
    except ConfigError:
        return False


@main.command()
def status() -> None:
    """Report reachability, schema revision against head, the last backup, row counts and the
    image store's size against its bound (QR_DATA_MAX_BYTES).

    Exits 1 when something needs attention (database unreachable, schema not at head, no backup or
    one older than BACKUP_MAX_AGE_HOURS),
    so that a cron job or a health check can act on it.
    """
    from services.ops import schema

    settings = _settings()
    problems: list[str] = []
    with database(settings) as dsn:
        try:
            current = schema.current_revision_sync(dsn)
        except DATABASE_FAULTS as exc:
            click.echo(f"database:      unreachable ({type(exc).__name__}: {exc})")
            sys.exit(1)
        head = schema.head_revision()
        click.echo("database:      reachable")
        version = asyncio.run(_server_version(dsn))
        click.echo(f"server:        PostgreSQL {version // 10000}.{version % 10000}")
        if version // 10000 not in SUPPORTED_MAJORS:
            problems.append(
                f"PostgreSQL {version // 10000} is not one the project supports "
                f"({SUPPORTED_MAJORS[0]} to {SUPPORTED_MAJORS[-1]}: docs/operations.md)"
            )
        click.echo(f"schema:        {current or 'empty'} (head {head})")
        standbys = asyncio.run(_replicas(dsn))
        for standby in standbys:
            click.echo(f"replica:       {standby}")
        if not standbys:
            click.echo("replica:       none streaming")
            if env_flag("EMBEDDED_REPLICA"):
                problems.append("EMBEDDED_REPLICA is on, but no standby streams from the server")
        if current != head:
            problems.append("schema is not at head: run qr-manage migrate")
        if current is not None:
            for name, count in asyncio.run(_counts(dsn)).items():
                click.echo(f"{name + ':':<15}{count}")
            for ids in asyncio.run(_case_clashes(dsn)):
                # Not a problem to act on (printed codes keep their ids), but worth knowing.
                click.echo(
                    f"note: ids differ only in case: {', '.join(ids)}; /r/ answers each exact "
                    f"spelling, any other spelling goes to {ids[0]} (the oldest)",
                    err=True,
                )
        from services.ops.restore import interrupted_restore

        retired = asyncio.run(interrupted_restore(dsn))
        if retired is not None:
            problems.append(
                f"database {retired} is left from an interrupted restore: the next qr-manage restore "
                "deals with it (docs/operations.md, Restore)"
            )
    newest = newest_backup(settings.backup_dir)
    if newest:
        last, written = newest
        hours = (time.time() - written) / 3600
        click.echo(f"backup:        {last} ({hours:.1f} h old)")
        if hours > settings.backup_max_age_hours:
            limit = f"BACKUP_MAX_AGE_HOURS={settings.backup_max_age_hours:g}"
            problems.append(f"the newest backup is {hours:.1f} h old ({limit})")
    else:
        click.echo(f"backup:        none in {settings.backup_dir}")
        problems.append("no backup yet: run qr-manage backup")
    click.echo(f"images:        {_image_store(settings)}")
    for problem in problems:
        click.echo(f"attention: {problem}", err=True)
    sys.exit(1 if problems else 0)


# An ACME directory URL as it goes into the static file: https, a host, a plain path (nothing
# that could end the YAML string it is written into).
_ACME_DIRECTORY = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?")


@main.command("edge-config")
@click.option("--production", is_flag=True, help="HTTP answers 301 to HTTPS; the Let's Encrypt resolver.")
@click.option(
    "--trusted-proxies",
    default="",
    metavar="CIDR,...",
    help="Load balancers in front of Traefik whose X-Forwarded-For it keeps (default: nobody).",
)
@click.option(
    "--grace", type=click.FloatRange(0, 60), default=5.0, show_default=True, help="Seconds of drain on stop."
)
@click.option(
    "--acme-ca-server",
    envvar="EDGE_ACME_CA_SERVER",
    default="",
    metavar="URL",
    help="With --production: the ACME directory to get certificates from (default Let's Encrypt; "
    "say its staging directory while trying things out).",
)
def edge_config(production: bool, trusted_proxies: str, grace: float, acme_ca_server: str) -> None:
    """Print a static Traefik file for compose (its addresses and paths), for example with a load
    balancer in front: save it under infra/traefik/ and name it in EDGE_STATIC_FILE.

    \b
    Example:
      qr-manage edge-config --production --trusted-proxies 10.0.0.5/32 > infra/traefik/traefik.lb.yml
    """
    from services.ops import edge

    try:
        networks = env.parse_networks("--trusted-proxies", trusted_proxies) if trusted_proxies.strip() else ()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--trusted-proxies") from None
    ca_server = acme_ca_server.strip() or None
    if ca_server is not None and not _ACME_DIRECTORY.fullmatch(ca_server):
        raise click.BadParameter(
            f"{ca_server!r} is not an https:// URL of an ACME directory", param_hint="--acme-ca-server"
        )
    if ca_server is not None and not production:
        raise click.BadParameter("only with --production (the ACME resolver)", param_hint="--acme-ca-server")
    options = edge.EdgeOptions(
        https_only=production,
        trusted_proxies=tuple(str(n) for n in networks),
        grace_seconds=grace,
        acme_ca_server=ca_server,
        docker_endpoint=edge.COMPOSE_DOCKER_ENDPOINT,
    )
    click.echo(
        edge.static_config(edge.COMPOSE_ADDRESSES, dynamic_file=edge.COMPOSE_DYNAMIC_FILE, options=options),
        nl=False,
    )
