"""A real stack for end-to-end tests: both services and Traefik on free ports, in front of a fresh
database of the session's PostgreSQL, started and stopped exactly as ``make run`` does."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.ops import embedded
from services.ops.settings import StackSettings
from services.ops.stack import Stack
from tests.conftest import create_database, drop_database, free_port


@dataclass(frozen=True)
class RunningStack:
    edge: str  # http://127.0.0.1:port
    edge_tls: str
    settings: StackSettings
    stack: Stack

    @property
    def certificate(self) -> Path:
        return self.settings.ops.var_dir / "tls" / "cert.pem"


def stack_environ(var_dir: Path, **overrides: str) -> dict[str, str]:
    names = ("EDGE_HTTP_PORT", "EDGE_HTTPS_PORT", "EDGE_ADMIN_PORT", "REDIRECT_PORT", "MANAGEMENT_PORT")
    ports: dict[str, str] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: str(free_port()) for name in names}
    environ = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environ.update(ports)
    environ.update(
        QR_VAR_DIR=str(var_dir),
        BACKUP_DIR=str(var_dir / "backups"),
        QR_DATA_DIR=str(var_dir / "qr_data"),
        LOG_LEVEL="WARNING",
    )
    environ.update(overrides)
    return environ


@pytest.fixture(scope="session")
def running_stack(
    pg_server: embedded.EmbeddedServer, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    name = create_database(pg_server, template=None)
    environ = stack_environ(tmp_path_factory.mktemp("stack-var"), DATABASE_URL=pg_server.dsn(name))
    settings = StackSettings.from_env(environ)
    stack = Stack(settings, environ=environ, out=io.StringIO())
    try:
        stack.start()
        yield RunningStack(
            edge=f"http://127.0.0.1:{settings.http_port}",
            edge_tls=f"https://127.0.0.1:{settings.https_port}",
            settings=settings,
            stack=stack,
        )
    finally:
        stack.stop()
        drop_database(pg_server, name)
