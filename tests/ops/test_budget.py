"""The connection budget: its sum, and ``qr-manage migrate`` (compose's and Kubernetes' first step)
refusing a deployment that PostgreSQL has too few connections for, before it changes anything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from services.ops import embedded
from services.ops.budget import Budget
from services.ops.processes import StartError
from tests.e2e.conftest import own_stack
from tests.ops.test_cli import qr_manage


def budget(**fields: object) -> Budget:
    values: dict[str, object] = {
        "replicas": 1,
        "workers": 2,
        "lookup_pool": 16,
        "lookups_elsewhere": False,
        "management_pool": 4,
        "management_overflow": 4,
        **fields,
    }
    return Budget(**values)  # type: ignore[arg-type]


def test_the_sum_is_the_one_the_documents_give() -> None:
    # docs/operations.md: four workers with the defaults use 4 x (16 + 3) + (4 + 4) + 2 = 86.
    assert budget(workers=4).total == 86
    assert budget(workers=4).refusal(97, 100, 3) is None
    # Three replicas of two workers, lookups on a replica: writers, listeners and the fallback.
    assert budget(replicas=3, lookups_elsewhere=True).total == 3 * 2 * (3 + 2) + 8 + 2
    too_many = budget(replicas=3, workers=2).refusal(97, 100, 3)
    assert too_many is not None
    assert "3 redirect replica(s) x 2 worker(s) x (16 lookups + 3)" in too_many
    assert "= 124 connections, but PostgreSQL gives 97 (max_connections 100 - 3 reserved)" in too_many
    assert "lower REDIRECT_DB_POOL_SIZE to 11" in too_many  # 6 x (11 + 3) + 10 = 94
    assert budget(replicas=3, workers=2, lookup_pool=11).refusal(97, 100, 3) is None
    hopeless = budget(replicas=40, workers=2).refusal(97, 100, 3)
    assert hopeless is not None
    assert "REDIRECT_DB_POOL_SIZE" not in hopeless  # no pool size helps: 80 workers x 3 alone
    assert "raise max_connections" in hopeless


async def _tables(dsn: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows}


def test_migrate_refuses_a_budget_that_cannot_fit_and_changes_nothing(empty_database_url: str) -> None:
    refused = qr_manage(
        "migrate", DATABASE_URL=empty_database_url, REDIRECT_WORKERS="4", REDIRECT_DB_POOL_SIZE="40"
    )
    assert refused.returncode == 1
    assert "the connection budget does not fit" in refused.stderr
    assert "4 worker(s) x (40 lookups + 3)" in refused.stderr
    assert "lower REDIRECT_DB_POOL_SIZE to 18" in refused.stderr  # 4 x (18 + 3) + 10 = 94 of 97
    assert "Traceback" not in refused.stderr
    assert asyncio.run(_tables(empty_database_url)) == set()  # not migrated
    # With the lookups on another server (a replica, PgBouncer), 5 per worker stay here.
    elsewhere = qr_manage(
        "migrate",
        DATABASE_URL=empty_database_url,
        REDIRECT_DATABASE_URL="postgresql://qr@replica.invalid:5432/qr",
        REDIRECT_WORKERS="4",
        REDIRECT_DB_POOL_SIZE="40",
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "alembic_version" in asyncio.run(_tables(empty_database_url))


@pytest.mark.parametrize("value", ["0", "-2", "many", "1001", "2.5", ""])
def test_hostile_replica_counts_are_refused(empty_database_url: str, value: str) -> None:
    result = qr_manage("migrate", DATABASE_URL=empty_database_url, REDIRECT_REPLICAS=value)
    if value == "":
        assert result.returncode == 0, result.stderr  # unset: one
        return
    assert result.returncode != 0
    assert "REDIRECT_REPLICAS" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_run_refuses_it_too_before_starting_anything(
    pg_server: embedded.EmbeddedServer, tmp_path: Path
) -> None:
    with (
        pytest.raises(
            StartError, match=r"the connection budget does not fit: 1 redirect replica\(s\) x 8 worker"
        ),
        own_stack(pg_server, tmp_path / "var", REDIRECT_WORKERS="8", REDIRECT_DB_POOL_SIZE="40") as (
            stack,
            _,
        ),
    ):
        pytest.fail(f"the stack started: {stack}")
