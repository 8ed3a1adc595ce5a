"""``qr-manage`` as an operator runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import pytest

from services.ops import schema

QR_MANAGE = str(Path(sys.executable).parent / "qr-manage")


def qr_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR")}
    environ.update(env)
    return subprocess.run([QR_MANAGE, *args], env=environ, capture_output=True, text=True, timeout=120)


def test_migrate_status_backup_prune(empty_database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": empty_database_url, "BACKUP_DIR": str(tmp_path), "BACKUP_RETENTION": "2"}
    status = qr_manage("status", **env)
    assert status.returncode == 1
    assert "schema:        empty" in status.stdout
    assert "not at head" in status.stderr

    migrated = qr_manage("migrate", **env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema at revision {schema.head_revision()}" in migrated.stdout
    assert qr_manage("migrate", **env).returncode == 0  # idempotent

    status = qr_manage("status", **env)
    assert status.returncode == 1  # no backup yet
    assert "no backup yet" in status.stderr
    assert "codes:         0" in status.stdout

    archives = []
    for _ in range(3):
        backup = qr_manage("backup", **env)
        assert backup.returncode == 0, backup.stderr
        archives.append(Path(backup.stdout.strip()))
        assert archives[-1].exists()
    status = qr_manage("status", **env)
    assert status.returncode == 0, status.stderr
    assert str(archives[-1]) in status.stdout

    # A backup older than BACKUP_MAX_AGE_HOURS needs attention too.
    old = time.time() - 30 * 3600
    os.utime(archives[-1], (old, old))
    stale = qr_manage("status", **env)
    assert stale.returncode == 1
    assert "30.0 h old" in stale.stdout
    assert "the newest backup is 30.0 h old (BACKUP_MAX_AGE_HOURS=26)" in stale.stderr
    assert qr_manage("status", **env, BACKUP_MAX_AGE_HOURS="48").returncode == 0

    pruned = qr_manage("prune-backups", **env)
    assert pruned.returncode == 0
    assert pruned.stdout.strip() == f"deleted {archives[0]}"
    assert sorted(tmp_path.iterdir()) == archives[1:]


def test_backup_check_judges_the_newest_archive_against_the_codes(
    empty_database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": empty_database_url, "BACKUP_DIR": str(tmp_path)}
    assert qr_manage("migrate", **env).returncode == 0
    empty = qr_manage("backup", "--check", **env)
    assert empty.returncode == 0, empty.stderr  # nothing to lose yet: no backup is no problem
    assert "holds no code yet" in empty.stdout
    _add_code(empty_database_url)
    missing = qr_manage("backup", "--check", **env)
    assert missing.returncode == 1
    assert f"attention: no backup in {tmp_path}" in missing.stderr
    archive = Path(qr_manage("backup", **env).stdout.strip())
    assert qr_manage("backup", "--check", **env).returncode == 0
    old = time.time() - 3 * 3600
    os.utime(archive, (old, old))
    stale = qr_manage("backup", "--check", **env, BACKUP_INTERVAL_HOURS="0.5")  # max age 2.5 h
    assert stale.returncode == 1
    assert "the newest backup is 3.0 h old (BACKUP_MAX_AGE_HOURS=2.5)" in stale.stderr
    assert qr_manage("backup", "--check", **env).returncode == 0  # the default: 24 h + 2
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "0.0001", "1e9"])
def test_a_bad_backup_interval_is_refused_before_anything_runs(value: str, tmp_path: Path) -> None:
    result = qr_manage("backup", "--schedule", BACKUP_DIR=str(tmp_path), BACKUP_INTERVAL_HOURS=value)
    assert result.returncode != 0
    assert "BACKUP_INTERVAL_HOURS" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_backup_schedule_and_check_exclude_each_other(tmp_path: Path) -> None:
    result = qr_manage("backup", "--schedule", "--check", BACKUP_DIR=str(tmp_path))
    assert result.returncode == 2
    assert "exclude each other" in result.stderr


def test_backup_schedule_waits_for_a_code_then_keeps_the_retention_and_stops_on_sigterm(
    empty_database_url: str, tmp_path: Path
) -> None:
    """compose's backup job: qr-manage backup --schedule, at the 3.6 s floor of the interval."""
    env = {"DATABASE_URL": empty_database_url, "BACKUP_DIR": str(tmp_path), "BACKUP_RETENTION": "2"}
    assert qr_manage("migrate", **env).returncode == 0
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR")}
    (tmp_path / "tmp").mkdir()
    environ.update(env, BACKUP_INTERVAL_HOURS="0.001", TMPDIR=str(tmp_path / "tmp"))
    job = subprocess.Popen(
        [QR_MANAGE, "backup", "--schedule"], env=environ, stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(5)  # more than an interval: an empty database is not backed up
        assert list(tmp_path.glob("qr-*.dump")) == []
        _add_code(empty_database_url)
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 3:
            assert time.monotonic() < deadline, sorted(seen)
            names = {path.name for path in tmp_path.glob("qr-*.dump")}
            assert len(names) <= 2, names
            seen |= names
            time.sleep(0.2)
    finally:
        job.terminate()
        out, _ = job.communicate(timeout=30)
    assert job.returncode == 0, out
    assert "backups every 0.001 h" in out
    assert not list(tmp_path.glob("*.partial"))
    # Its verdict at every turn, for compose's health check (read with the shell).
    assert (tmp_path / "tmp" / "qr-backup-health").read_text().startswith("ok: newest backup")


def test_the_maintenance_schedule_notes_each_success_and_stops_at_once_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    """compose's maintenance job: Python as PID 1, no shell loop that would ignore a SIGTERM."""
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BACKUP_DIR")}
    environ.update(DATABASE_URL=database_url, TMPDIR=str(tmp_path))
    check = subprocess.run(
        [QR_MANAGE, "maintain", "--check"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1
    assert "no maintenance has succeeded here yet" in check.stderr
    job = subprocess.Popen(
        [QR_MANAGE, "maintain", "--schedule"], env=environ, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "qr-maintained").exists():
            assert job.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.1)
        stopping = time.monotonic()
        job.terminate()
        out, _ = job.communicate(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, out
    assert time.monotonic() - stopping < 5  # at once, not after a container's stop timeout
    assert "maintenance every 6 h" in out
    check = subprocess.run(
        [QR_MANAGE, "maintain", "--check"], env=environ, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    assert "last maintenance 0.0 h ago" in check.stdout
    both = subprocess.run(
        [QR_MANAGE, "maintain", "--schedule", "--check"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 2


def test_restore_newest_takes_the_newest_archive_of_the_backup_folder(
    database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "BACKUP_DIR": str(tmp_path)}
    none = qr_manage("restore", "--newest", "--yes", **env)
    assert none.returncode == 1
    assert f"no archive in {tmp_path}" in none.stderr
    _add_code(database_url)
    assert qr_manage("backup", **env).returncode == 0
    newest = Path(qr_manage("backup", **env).stdout.strip())
    restored = qr_manage("restore", "--newest", "--yes", **env)
    assert restored.returncode == 0, restored.stderr
    assert f"restored {newest} into database" in restored.stdout
    for args in (("restore",), ("restore", str(newest), "--newest")):
        refused = qr_manage(*args, **env)
        assert refused.returncode == 2, args
        assert "name an ARCHIVE or say --newest" in refused.stderr


def _add_code(dsn: str) -> None:
    async def insert() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO qr_codes (id, short_url, target_url) "
                "VALUES ('kept1', 'http://x/r/kept1', 'https://example.org/')"
            )
        finally:
            await connection.close()

    asyncio.run(insert())


def test_two_migrations_at_once_queue_on_the_advisory_lock(empty_database_url: str) -> None:
    results: list[subprocess.CompletedProcess[str]] = []
    runners = [
        threading.Thread(target=lambda: results.append(qr_manage("migrate", DATABASE_URL=empty_database_url)))
        for _ in range(2)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["backup"], {"BACKUP_RETENTION": "many"}, "BACKUP_RETENTION"),
        (["status"], {"BACKUP_MAX_AGE_HOURS": "-1"}, "BACKUP_MAX_AGE_HOURS"),
        (["status"], {"BACKUP_MAX_AGE_HOURS": "nan"}, "BACKUP_MAX_AGE_HOURS"),
        (["status"], {"DATABASE_URL": "mysql://db/qr"}, "DATABASE_URL"),
        (["status"], {"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
        (["run"], {"ADMIN_ALLOWLIST": "everyone"}, "ADMIN_ALLOWLIST"),
        (["run"], {"EDGE_HTTP_PORT": "0"}, "EDGE_HTTP_PORT"),
        (["frobnicate"], {}, "No such command"),
        (["backup", "--now"], {}, "No such option"),
        (["edge-config", "--trusted-proxies", '10.0.0.1"], x: ['], {}, "not an IP address"),
        (["edge-config", "--trusted-proxies", "10.0.0.0/99"], {}, "not an IP address"),
        (["edge-config", "--grace", "-1"], {}, "--grace"),
        (
            ["edge-config", "--production", "--acme-ca-server", 'https://ca.test/dir"\nx: y'],
            {},
            "not an https://",
        ),
        (["edge-config", "--production", "--acme-ca-server", "http://ca.test/dir"], {}, "not an https://"),
        (["edge-config", "--acme-ca-server", "https://ca.test/dir"], {}, "only with --production"),
        (["edge-config", "--production"], {"EDGE_ACME_CA_SERVER": "file:///etc/passwd"}, "not an https://"),
    ],
)
def test_bad_arguments_and_settings_are_usage_errors(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = qr_manage(*args, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_migration_timeouts_are_refused(empty_database_url: str) -> None:
    result = qr_manage(
        "migrate", DATABASE_URL=empty_database_url, MIGRATION_LOCK_TIMEOUT="5s'; DROP TABLE x; --"
    )
    assert result.returncode != 0
    assert "MIGRATION_LOCK_TIMEOUT must be a duration" in result.stderr


def test_status_of_an_unreachable_database(tmp_path: Path) -> None:
    result = qr_manage(
        "status", DATABASE_URL=f"postgresql://postgres@/qr?host={tmp_path}", BACKUP_DIR=str(tmp_path)
    )
    assert result.returncode == 1
    assert "unreachable" in result.stdout
    assert "Traceback" not in result.stderr


def test_help_reads_like_a_manual() -> None:
    result = qr_manage("--help")
    assert result.returncode == 0
    for command in (
        "run",
        "migrate",
        "backup",
        "restore",
        "prune-backups",
        "status",
        "maintain",
        "edge-config",
    ):
        assert command in result.stdout
    assert "Examples:" in result.stdout


def test_edge_config_prints_what_compose_mounts_and_variants() -> None:
    from services.ops import edge

    production = qr_manage("edge-config", "--production")
    assert production.returncode == 0
    assert production.stdout == edge.compose_static("traefik.production.yml")
    behind = qr_manage("edge-config", "--trusted-proxies", "10.0.0.5, 10.1.0.0/16")
    assert 'trustedIPs: ["10.0.0.5/32", "10.1.0.0/16"]' in behind.stdout
    assert "redirections" not in behind.stdout
    staging = "https://acme-staging-v02.api.letsencrypt.org/directory"
    for result in (
        qr_manage("edge-config", "--production", "--acme-ca-server", staging),
        qr_manage("edge-config", "--production", EDGE_ACME_CA_SERVER=staging),
    ):
        assert result.returncode == 0, result.stderr
        assert f'caServer: "{staging}"' in result.stdout
    assert "caServer" not in production.stdout  # Let's Encrypt's production directory by default


def test_ids_that_differ_only_in_case_are_kept_by_the_migration_and_reported(empty_database_url: str) -> None:
    env = {"DATABASE_URL": empty_database_url}
    schema.upgrade(empty_database_url, "0005")

    # Made before 0006, as the API then allowed: four codes, three of them one id in three spellings.
    asyncio.run(
        sql(
            empty_database_url,
            *(
                f"INSERT INTO qr_codes (id, short_url, target_url, created_at) VALUES ('{code_id}', "
                f"'https://qr.example/r/{code_id}', 'https://example.org/', now() + interval '{n} s')"
                for n, code_id in enumerate(("Menu", "menu", "MENU", "other1"))
            ),
        )
    )
    migrated = qr_manage("migrate", **env, LOG_LEVEL="INFO")
    assert migrated.returncode == 0, migrated.stderr  # kept, not a failure
    assert "differ only in case" in migrated.stderr
    status = qr_manage("status", **env)
    assert "note: ids differ only in case: Menu, menu, MENU" in status.stderr
    assert "goes to Menu (the oldest)" in status.stderr
    assert "other1" not in status.stderr

    unique = "SELECT indisunique FROM pg_index WHERE indexrelid = 'ix_qr_codes_id_folded'::regclass"
    assert asyncio.run(sql(empty_database_url, unique)) is False
    # Without the clashes the same migration makes the index unique.
    schema.downgrade(empty_database_url, "0005")
    asyncio.run(sql(empty_database_url, "DELETE FROM qr_codes WHERE id IN ('menu', 'MENU')"))
    schema.upgrade(empty_database_url)
    assert asyncio.run(sql(empty_database_url, unique)) is True
    assert "differ only in case" not in qr_manage("status", **env).stderr


async def sql(dsn: str, *statements: str) -> object:
    """Run ``statements``; the first value of the last one."""
    connection = await asyncpg.connect(dsn)
    try:
        result = None
        for statement in statements:
            result = await connection.fetchval(statement)
        return result
    finally:
        await connection.close()


def test_status_shows_the_image_store_against_its_bound(database_url: str, tmp_path: Path) -> None:
    store = tmp_path / "qr_data"
    for key, size in (("a" * 64, 1536), ("b" * 64, 2048)):
        (store / key[:2]).mkdir(parents=True)
        (store / key[:2] / key).write_bytes(b"x" * size)
    (store / ".console-secret").write_bytes(b"s" * 64)  # not an image: not counted
    env = {"DATABASE_URL": database_url, "BACKUP_DIR": str(tmp_path), "QR_DATA_DIR": str(store)}
    status = qr_manage("status", **env)
    assert f"images:        3.5 KiB of 1.0 GiB (QR_DATA_MAX_BYTES), 2 files in {store}" in status.stdout
    unbounded = qr_manage("status", **env, QR_DATA_MAX_BYTES="0")
    assert "images:        3.5 KiB with no bound (QR_DATA_MAX_BYTES=0)" in unbounded.stdout
    bad = qr_manage("status", **env, QR_DATA_MAX_BYTES="lots")
    assert bad.returncode == 2
    assert "QR_DATA_MAX_BYTES" in bad.stderr
