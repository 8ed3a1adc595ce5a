"""The local stack behind ``make run``: database, migrations, both services and Traefik.

Start order: the embedded PostgreSQL (unless ``DATABASE_URL`` is set), a backup when the database
already holds data (so a bad migration can be undone), the migrations, the redirect service
(Granian), the management service (Hypercorn), Traefik. While it runs it takes a backup every
``BACKUP_INTERVAL_HOURS`` (counted from the newest archive; the first as soon as a code exists) and
keeps ``BACKUP_RETENTION`` of them. It stays in the foreground; SIGINT or
SIGTERM stops everything it started in the reverse order, by pid, so the redirect service can
flush its scans while the database is still up. If any child dies, the whole stack stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TextIO

from services.ops import backups, budget, edge, embedded, maintenance, schema
from services.ops.processes import (
    Child,
    StartError,
    granian_command,
    pid_alive,
    spawn,
    venv_command,
    wait_ready,
)
from services.ops.settings import StackSettings
from shared import settings as env
from shared.database import FAULTS, redacted

log = logging.getLogger(__name__)


STATE_FILE = "stack.json"
UPKEEP_INTERVAL = 6 * 3600.0  # seconds between runs of qr-manage maintain's work, as compose runs it


class Stopped(Exception):
    """A stop signal arrived."""


class Stack:
    def __init__(self, settings: StackSettings, *, environ: dict[str, str], out: TextIO = sys.stdout) -> None:
        self.settings = settings
        self.environ = environ
        self.out = out
        self.children: list[Child] = []
        self.database: embedded.EmbeddedServer | None = None
        self.replica: embedded.EmbeddedServer | None = None  # EMBEDDED_REPLICA: the lookups' standby
        self.dsn = ""
        self._owns_state_file = False
        self.backups: backups.BackupSchedule | None = None
        self._backing_up: threading.Thread | None = None

    @property
    def state_file(self) -> Path:
        return self.settings.ops.var_dir / STATE_FILE

    # -- start ---------------------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse to start beside another stack: ports taken, or this var/ in use by a live supervisor."""
        s = self.settings
        other = live_supervisor(s.ops.var_dir)
        if other is not None and other != os.getpid():
            raise StartError(f"another stack (pid {other}) is running on {s.ops.var_dir}; stop it first")
        for name, port in (
            ("EDGE_HTTP_PORT", s.http_port),
            ("EDGE_HTTPS_PORT", s.https_port),
            ("EDGE_ADMIN_PORT", s.edge_admin_port),
            ("REDIRECT_PORT", s.redirect_port),
            ("MANAGEMENT_PORT", s.management_port),
        ):
            with socket.socket() as probe:
                # SO_REUSEADDR: connections of a previous run in TIME_WAIT must not count as in use;
                # a socket that really listens there still does.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((s.host, port))
                except OSError:
                    raise StartError(
                        f"{s.host}:{port} ({name}) is already in use; stop whatever listens there "
                        f"or set {name} to a free port"
                    ) from None

    def start(self) -> None:
        s = self.settings
        self.preflight()
        s.ops.var_dir.mkdir(parents=True, exist_ok=True)
        if s.ops.database_url is None:
            self.database = embedded.start(s.ops.var_dir)
            self.dsn = self.database.dsn()
        else:
            self.dsn = s.ops.database_url
        self._write_state()
        self._check_budget()
        if s.embedded_replica:
            assert self.database is not None
            self.replica = start_replica(s.ops.var_dir / REPLICA_DIR, self.database)
            self._write_state()

        if backups.holds_data_sync(self.dsn):
            archive = backups.take_backup(self.dsn, s.ops.backup_dir)
            backups.prune(s.ops.backup_dir, s.ops.backup_retention)
            self._say(f"backup before migrating: {archive}")
        schema.upgrade(self.dsn)
        self.backups = backups.BackupSchedule(
            self.dsn,
            s.ops.backup_dir,
            interval=s.ops.backup_interval_hours * 3600,
            keep=s.ops.backup_retention,
        )
        self.upkeep(vacuum=False)  # this month's partition of scans and the next ones, at least

        service_env = {
            **self.environ,
            # A server of the operator's: the URL as given (with DATABASE_PASSWORD_FILE the
            # services read the password themselves, and it stays out of their environment).
            "DATABASE_URL": self.environ["DATABASE_URL"].strip() if self.database is None else self.dsn,
            "PUBLIC_BASE_URL": s.public_base_url,
            "QR_DATA_DIR": str(s.qr_data_dir),
            "ADMIN_ALLOWLIST": s.admin_allowlist,
            "MANAGEMENT_HOST": s.host,
            "MANAGEMENT_PORT": str(s.management_port),
            "BACKUP_DIR": str(s.ops.backup_dir),
            "PYTHONUNBUFFERED": "1",
        }
        if self.replica is not None:
            service_env["REDIRECT_DATABASE_URL"] = self.replica.dsn()
        if s.edge_trusted_proxies and "TRUSTED_PROXIES" not in self.environ:
            # Behind a load balancer the services must believe it too, to see the real client.
            service_env["TRUSTED_PROXIES"] = ",".join((env.LOOPBACK_NETWORKS, *s.edge_trusted_proxies))
        # Granian's workers write their metrics to files that a scrape of any one of them sums up;
        # the folder starts empty at every start, or counters of dead workers would linger.
        metrics_dir = s.ops.var_dir / "metrics" / "redirect"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        redirect = self._spawn(
            "redirect service",
            venv_command(granian_command(s.host, s.redirect_port, workers=s.redirect_workers)),
            {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        )
        management = self._spawn(
            "management service", [sys.executable, "-m", "services.management"], service_env
        )
        wait_ready(redirect, f"http://{s.host}:{s.redirect_port}/livez")
        wait_ready(management, f"http://{s.host}:{s.management_port}/livez")

        cert, key = s.tls_files or edge.ensure_certificate(s.ops.var_dir / "tls")
        edge_env = {
            **self.environ,
            **s.edge_environment(),
            "REDIRECT_UPSTREAM": f"http://{s.host}:{s.redirect_port}",
            "MANAGEMENT_UPSTREAM": f"http://{s.host}:{s.management_port}",
            "EDGE_TLS_CERT": str(cert),
            "EDGE_TLS_KEY": str(key),
        }
        traefik = edge.launch(
            s.ops.var_dir / "traefik",
            edge.EdgeAddresses(
                http=f"{s.host}:{s.http_port}",
                https=f"{s.host}:{s.https_port}",
                admin=f"{s.host}:{s.edge_admin_port}",
            ),
            edge_env,
            edge.EdgeOptions(trusted_proxies=s.edge_trusted_proxies),
        )
        self.children.append(traefik)
        self._write_state()
        # The routers appear once the dynamic file is loaded: wait until the edge really routes.
        wait_ready(traefik, f"http://{s.host}:{s.http_port}/health")
        self._say(self._banner())

    def upkeep(self, *, vacuum: bool = True) -> None:
        """What ``qr-manage maintain`` does: partitions of scans ahead, retention, visitor hashes of
        past days, and (``vacuum``) VACUUM (ANALYZE). A failure is logged; the stack goes on."""
        ops = self.settings.ops
        try:
            upkeep = asyncio.run(
                maintenance.keep_partitions(
                    self.dsn,
                    retention_days=ops.scan_retention_days,
                    audit_retention_days=ops.audit_retention_days,
                )
            )
            if vacuum:
                asyncio.run(maintenance.maintain(self.dsn))
        except FAULTS as exc:
            log.warning("maintenance failed, tried again later: %s: %s", type(exc).__name__, exc)
            return
        if upkeep.made or upkeep.dropped:
            log.info("scan partitions", extra={"made": upkeep.made, "dropped": upkeep.dropped})

    def back_up_if_due(self) -> None:
        """Start the scheduled backup in a thread when it is due (the supervisor keeps watching
        its children meanwhile); a failure is logged and tried again later."""
        if self.backups is None or (self._backing_up is not None and self._backing_up.is_alive()):
            return
        if self.backups.seconds_until_due() > 0:
            return
        schedule = self.backups

        def back_up() -> None:
            try:
                archive = schedule.run_if_due()
            except (backups.BackupError, *FAULTS) as exc:
                log.warning("scheduled backup failed, tried again later: %s", exc)
                return
            if archive is not None:
                log.info("scheduled backup", extra={"archive": str(archive)})
                self._say(f"backup: {archive}")

        self._backing_up = threading.Thread(target=back_up, name="qr-backup", daemon=True)
        self._backing_up.start()

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = spawn(name, args, env=env)
        self.children.append(child)
        self._write_state()
        return child

    def _write_state(self) -> None:
        """Pids and addresses of this run, for tests and for an operator wondering what runs."""
        state = {
            "supervisor": os.getpid(),
            "database": self.database.pid if self.database else None,
            "database_owned": bool(self.database and self.database.owned),
            "children": {child.name: child.pid for child in self.children},
            "edge": f"http://{self.settings.host}:{self.settings.http_port}",
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")
        self._owns_state_file = True

    def _banner(self) -> str:
        s = self.settings
        h = s.host
        database = (
            f"embedded PostgreSQL, data in {s.ops.var_dir / 'pgdata'}"
            if self.database
            else redacted(self.dsn)
        )
        certificate = (
            f"certificate {s.tls_files[0]}"
            if s.tls_files
            else f"self-signed certificate in {s.ops.var_dir / 'tls'}"
        )
        return "\n".join(
            [
                "",
                "QR service is running.",
                f"  short links      {s.public_base_url}/r/{{id}}",
                f"  management API   http://{h}:{s.http_port}/api/v1/qr",
                f"                   (allowed from {s.admin_allowlist}, as {s.admin_hosts})",
                f"  HTTPS            https://{h}:{s.https_port}/",
                f"                   ({certificate})",
                f"  health           http://{h}:{s.http_port}/health",
                f"  edge ping        http://{h}:{s.edge_admin_port}/ping",
                f"  database         {database}",
                *(
                    [f"  replica          hot standby for the lookups, data in {s.ops.var_dir / REPLICA_DIR}"]
                    if self.replica
                    else []
                ),
                f"  backups          {s.ops.backup_dir} (every {s.ops.backup_interval_hours:g} h, "
                f"keeping {s.ops.backup_retention})",
                "Press Ctrl-C to stop.",
                "",
            ]
        )

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child in reverse start order (the edge first), then the database if we own it
        (after a backup in progress, for up to a minute)."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.backups = None
        if self._backing_up is not None:
            self._backing_up.join(timeout=60)
        if self.replica is not None:
            self.replica.release()
        self.replica = None
        if self.database is not None:
            self.database.release()
        self.database = None
        if self._owns_state_file:
            self.state_file.unlink(missing_ok=True)

    # -- foreground ----------------------------------------------------------------------------

    def _check_budget(self) -> None:
        """Refuse to start with more connections asked of PostgreSQL than it has (services/ops/budget.py)."""
        environ = {k: v for k, v in self.environ.items() if k != "DATABASE_PASSWORD_FILE"}
        environ["DATABASE_URL"] = self.dsn
        if self.settings.embedded_replica:  # the lookups will be the replica's
            environ["REDIRECT_DATABASE_URL"] = f"{self.dsn.split('?', 1)[0]}?host=/replica"
        try:
            wanted = budget.Budget.from_env(environ, workers=self.settings.redirect_workers)
            asyncio.run(budget.check(self.dsn, wanted))
        except env.ConfigError as exc:
            raise StartError(str(exc)) from None

    def run(self) -> int:
        """Start, wait for a signal or a dying child, stop. Returns the exit code."""
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            if not stopping:  # a second Ctrl-C must not cut the orderly stop short
                stopping = True
                raise Stopped(signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            self.start()
            next_upkeep = time.monotonic() + UPKEEP_INTERVAL
            next_backup_check = 0.0
            while True:
                if time.monotonic() >= next_upkeep:
                    self.upkeep()
                    next_upkeep = time.monotonic() + UPKEEP_INTERVAL
                if time.monotonic() >= next_backup_check:
                    self.back_up_if_due()
                    next_backup_check = time.monotonic() + 1.0
                for child in self.children:
                    status = child.exited()
                    if status is not None:
                        stopping = True
                        self._say(f"{child.name} exited with code {status}; stopping the stack")
                        code = 1
                        raise Stopped(child.name)
                time.sleep(0.2)
        except Stopped as reason:
            stopping = True
            self._say(f"stopping ({reason}) ...")
        except StartError as exc:
            stopping = True
            self._say(f"could not start the stack: {exc}")
            code = 1
        except Exception as exc:
            stopping = True
            log.exception("the stack failed")
            self._say(f"could not start the stack: {exc}")
            code = 1
        finally:
            stopping = True
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._say("stopped.")
        return code


REPLICA_DIR = "replica"
CATCH_UP_SECONDS = 30.0


def start_replica(folder: Path, primary: embedded.EmbeddedServer) -> embedded.EmbeddedServer:
    """The standby under ``folder``: made the first time, reused afterwards, and made again when it
    cannot catch up with the primary (the WAL it needs recycled while it was stopped)."""
    for attempt in (1, 2):
        replica = embedded.start_replica(folder, primary)
        if asyncio.run(_caught_up(primary, replica, CATCH_UP_SECONDS)):
            return replica
        replica.release()
        if attempt == 1:
            log.warning("the replica cannot catch up with the primary: making it again")
            shutil.rmtree(folder / "pgdata", ignore_errors=True)
    raise StartError(f"the replica in {folder} does not follow the primary (its log says why)")


async def _caught_up(
    primary: embedded.EmbeddedServer, replica: embedded.EmbeddedServer, within: float
) -> bool:
    import asyncpg

    source = await asyncpg.connect(primary.dsn())
    try:
        position = await source.fetchval("SELECT pg_current_wal_lsn()")
    finally:
        await source.close()
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            standby = await asyncpg.connect(replica.dsn(), timeout=5)
            try:
                row = await standby.fetchrow(
                    "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn() AS replayed"
                )
            finally:
                await standby.close()
            assert row is not None
            if not row["standby"]:
                return False  # a server of its own now (its standby.signal gone): no copy to follow with
            if row["replayed"] is not None and row["replayed"] >= position:
                return True
        except (OSError, asyncpg.PostgresError):
            pass  # still starting
        await asyncio.sleep(0.1)
    return False


def live_supervisor(var_dir: Path) -> int | None:
    """The pid of a stack supervisor running on ``var_dir``, if one is."""
    try:
        pid = json.loads((var_dir / STATE_FILE).read_text())["supervisor"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) and pid_alive(pid) else None
