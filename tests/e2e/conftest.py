"""A real stack for end-to-end tests: both services and Traefik on free ports, in front of a fresh
database of the session's PostgreSQL, started and stopped exactly as ``make run`` does."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
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


@contextlib.contextmanager
def own_stack(
    server: embedded.EmbeddedServer, var_dir: Path, **overrides: str
) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A stack started as ``make run`` does, on a fresh empty database of its own (migrated by the
    start), and its environment; stopped, and the database dropped, at the end."""
    name = create_database(server, template=None)
    environ = stack_environ(var_dir, DATABASE_URL=server.dsn(name), **overrides)
    stack = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
    try:
        stack.start()
        yield stack, environ
    finally:
        stack.stop()
        drop_database(server, name)


@pytest.fixture(scope="session")
def running_stack(
    pg_server: embedded.EmbeddedServer, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    with own_stack(pg_server, tmp_path_factory.mktemp("stack-var")) as (stack, _):
        settings = stack.settings
        yield RunningStack(
            edge=f"http://127.0.0.1:{settings.http_port}",
            edge_tls=f"https://127.0.0.1:{settings.https_port}",
            settings=settings,
            stack=stack,
        )


def created(response: httpx.Response) -> dict[str, Any]:
    """The code a create answered with; any other answer fails with its status and body (a 429 from
    the edge's admin limit names itself instead of surfacing as a missing key)."""
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code == 201, f"{request}: {response.status_code} {response.text[:500]}"
    code: dict[str, Any] = response.json()
    return code
