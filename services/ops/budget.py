"""The connection budget: what every process of the deployment may hold open on the primary, and
whether PostgreSQL has that many connections to give.

    REDIRECT_REPLICAS x REDIRECT_WORKERS x (REDIRECT_DB_POOL_SIZE + 3)
      + MANAGEMENT_DB_POOL_SIZE + MANAGEMENT_DB_MAX_OVERFLOW + TOOLS
    <= max_connections - superuser_reserved_connections

Each redirect worker holds up to REDIRECT_DB_POOL_SIZE lookup connections, 2 for scan writes and 1
for the change listener; with REDIRECT_DATABASE_URL on another server (a replica, PgBouncer) its
lookups are that server's, and 2 more for the lookups the replica cannot answer yet
(services/redirect/replica.py) count here instead. REDIRECT_REPLICAS is how many redirect
containers or pods run (compose's --scale, a Deployment's replicas), since no one process can
see the others. ``qr-manage migrate`` (compose's and Kubernetes' first step) and ``qr-manage run``
refuse to go on with a budget that cannot fit, before anything runs out of connections under load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from services.management.settings import ManagementSettings
from services.redirect.replica import PRIMARY_POOL_SIZE
from services.redirect.settings import RedirectSettings
from shared import settings as env
from shared.database import asyncpg_dsn

WRITER_CONNECTIONS = 2  # each redirect worker's scan writer
LISTENER_CONNECTIONS = 1  # each redirect worker's change listener
TOOLS = 2  # qr-manage, a backup, a migration beside the services


@dataclass(frozen=True)
class Budget:
    replicas: int
    workers: int
    lookup_pool: int
    lookups_elsewhere: bool  # REDIRECT_DATABASE_URL names another server
    management_pool: int
    management_overflow: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, workers: int | None = None) -> Budget:
        redirect = RedirectSettings.from_env(environ)
        management = ManagementSettings.from_env({**environ, "DATABASE_URL": redirect.primary_database_url})
        return cls(
            replicas=env.read_int(environ, "REDIRECT_REPLICAS", 1, minimum=1, maximum=1000),
            workers=workers
            if workers is not None
            else env.read_int(environ, "REDIRECT_WORKERS", 1, minimum=1, maximum=64),
            lookup_pool=redirect.db_pool_size,
            lookups_elsewhere=redirect.lookup_database_url != redirect.primary_database_url,
            management_pool=management.db_pool_size,
            management_overflow=management.db_max_overflow,
        )

    @property
    def per_worker(self) -> int:
        lookups = PRIMARY_POOL_SIZE if self.lookups_elsewhere else self.lookup_pool
        return lookups + WRITER_CONNECTIONS + LISTENER_CONNECTIONS

    @property
    def total(self) -> int:
        return (
            self.replicas * self.workers * self.per_worker
            + self.management_pool
            + self.management_overflow
            + TOOLS
        )

    def sum_text(self) -> str:
        lookups = f"{PRIMARY_POOL_SIZE} fallback" if self.lookups_elsewhere else f"{self.lookup_pool} lookups"
        lookups += " + "
        return (
            f"{self.replicas} redirect replica(s) x {self.workers} worker(s) x ({lookups}3) + management "
            f"{self.management_pool + self.management_overflow} + tools {TOOLS} = {self.total}"
        )

    def refusal(self, available: int, max_connections: int, reserved: int) -> str | None:
        """Why this budget cannot fit in ``available`` connections, with the way out; or None."""
        if self.total <= available:
            return None
        advice = "raise max_connections, put PgBouncer in front of the lookups (docs/operations.md)"
        others = self.total - self.replicas * self.workers * self.per_worker
        fixed = WRITER_CONNECTIONS + LISTENER_CONNECTIONS
        room = (available - others) // (self.replicas * self.workers) - fixed
        if not self.lookups_elsewhere and room >= 1:
            advice = f"lower REDIRECT_DB_POOL_SIZE to {room}, " + advice
        return (
            f"the connection budget does not fit: {self.sum_text()} connections, but PostgreSQL gives "
            f"{available} (max_connections {max_connections} - {reserved} reserved); {advice}, or "
            "run fewer redirect workers"
        )


async def server_limits(dsn: str) -> tuple[int, int]:
    """The server's max_connections and superuser_reserved_connections."""
    connection = await asyncpg.connect(asyncpg_dsn(dsn), timeout=10)
    try:
        row = await connection.fetchrow(
            "SELECT current_setting('max_connections')::int AS max,"
            " current_setting('superuser_reserved_connections')::int AS reserved"
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["max"]), int(row["reserved"])


async def check(dsn: str, budget: Budget) -> None:
    """:class:`ConfigError` when the budget cannot fit in the server at ``dsn``."""
    max_connections, reserved = await server_limits(dsn)
    reason = budget.refusal(max_connections - reserved, max_connections, reserved)
    if reason is not None:
        raise env.ConfigError(reason)
