"""``qr-manage token``: made, listed and revoked as an operator runs it, and the service accepting the
token it printed (the same key, in the same QR_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from services.management.settings import ManagementSettings
from services.ops.cli import main
from tests.management.conftest import serve
from tests.ops.test_cli import qr_manage


def test_create_list_revoke(database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url, "QR_DATA_DIR": str(tmp_path / "data")}
    made = qr_manage(
        "token", "create", "ci-print", "--role", "editor", "--tag", "print", "--expires-in", "90", **env
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.strip().splitlines()
    token = lines[-1]
    assert token.startswith("qr_")
    assert token == token.strip()
    assert all(token not in line for line in lines[:-1])
    assert (tmp_path / "data" / ".token-secret").stat().st_mode & 0o777 == 0o600

    listed = qr_manage("token", "list", **env)
    assert listed.returncode == 0, listed.stderr
    assert "ci-print" in listed.stdout
    assert "editor" in listed.stdout
    assert "print" in listed.stdout
    assert token not in listed.stdout
    assert token[3:20] not in listed.stdout

    again = qr_manage("token", "create", "ci-print", "--role", "viewer", **env)
    assert again.returncode == 1
    assert "never reused" in again.stderr

    revoked = qr_manage("token", "revoke", "ci-print", **env)
    assert revoked.returncode == 0, revoked.stderr
    twice = qr_manage("token", "revoke", "ci-print", **env)
    assert twice.returncode == 1
    assert "no token named 'ci-print'" in twice.stderr
    unknown = qr_manage("token", "revoke", "nobody", **env)
    assert unknown.returncode == 1
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("bad name", "--role", "viewer"), "NAME may hold"),
        (("x" * 65, "--role", "viewer"), "NAME may hold"),
        (("ok", "--role", "owner"), "'owner' is not one of"),
        (("ok",), "Missing option '--role'"),
        (("ok", "--role", "viewer", "--expires-in", "0"), "--expires-in must be"),
        (("ok", "--role", "viewer", "--expires-in", "-3"), "--expires-in must be"),
        (("ok", "--role", "viewer", "--expires-in", "99999999999"), "--expires-in must be"),
        (("ok", "--role", "viewer", "--expires-in", "soon"), "'soon' is not a valid integer"),
        (("ok", "--role", "viewer", "--tag", ""), "--tag"),
        (("ok", "--role", "viewer", "--tag", "   "), "--tag"),
    ],
)
@pytest.mark.anyio
async def test_hostile_arguments_are_usage_errors_and_write_nothing(
    database_url: str, tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    # The command itself, in this process (a usage error never reaches the database; a process
    # start per row would cost seconds and show nothing more: test_create_list_revoke runs it whole).
    environ = {"DATABASE_URL": database_url, "QR_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["token", "create", *args], env=environ)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM admin_tokens") == 0
    finally:
        await connection.close()


@pytest.mark.anyio
async def test_the_service_takes_the_token_qr_manage_printed(database_url: str, tmp_path: Path) -> None:
    environ = {"DATABASE_URL": database_url, "QR_DATA_DIR": str(tmp_path / "data")}
    data = environ["QR_DATA_DIR"]
    made = qr_manage(
        "token", "create", "reader", "--role", "viewer", DATABASE_URL=database_url, QR_DATA_DIR=data
    )
    token = made.stdout.strip().splitlines()[-1]
    settings = ManagementSettings.from_env({**environ, "ADMIN_AUTH": "identity"})
    async for http in serve(settings):
        assert (await http.get("/api/v1/qr", headers={"authorization": f"Bearer {token}"})).status_code == 200
        refused = await http.post(
            "/api/v1/qr",
            json={"target_url": "https://example.org/"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == "this needs the editor role"
        assert (await http.get("/api/v1/qr")).status_code == 401
    connection = await asyncpg.connect(database_url)
    try:
        entry = await connection.fetchrow("SELECT actor, action, target, detail FROM audit_log")
    finally:
        await connection.close()
    assert (entry["actor"], entry["action"], entry["target"]) == ("qr-manage", "token.create", "reader")
    assert '"via": "qr-manage"' in entry["detail"]
