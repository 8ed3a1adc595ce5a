"""docs/operations.md is true: every ``qr-manage`` command in its code blocks is run here, in the
page's order, against a real database, and must succeed (the lost-volume section first loses the
database, as the page describes). Lines that are not ``qr-manage`` commands are the few the other
tests cover: ``make run`` (tests/e2e/test_make_run.py) and compose (tests/test_repository.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from shared.backups import list_backups
from tests.conftest import lose_database
from tests.ops.test_cli import qr_manage

PAGE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
# Lines of the page's code blocks that are not qr-manage commands, and where they are tested.
ELSEWHERE = {
    "make run": "tests/e2e/test_make_run.py",
    "cp .env.example .env && $EDITOR .env": "tests/test_repository.py (.env.example)",
    "docker compose up -d": "tests/test_repository.py (compose.yaml)",
    "mkdir -p secrets backups && chmod 700 secrets": "tests/test_compose.py (the secret file)",
    "openssl rand -hex 24 > secrets/postgres_password && chmod 644 secrets/postgres_password": (
        "tests/test_compose.py (the secret file)"
    ),
}
ARCHIVE = re.compile(r"\S*qr-\d{8}T\d{6}_\d{6}Z\.dump")


def commands_by_section() -> list[tuple[str, list[str]]]:
    """(section heading, command lines of its ``sh`` blocks), in the page's order."""
    sections: list[tuple[str, list[str]]] = []
    in_block = False
    for line in PAGE.read_text().splitlines():
        if line.startswith("## "):
            sections.append((line[3:], []))
        elif line.startswith("```"):
            in_block = line == "```sh"
        elif in_block and line.strip():
            command = line.split("  #", 1)[0].strip()
            sections[-1][1].append(command)
    return sections


def test_every_command_on_the_operations_page_runs(empty_database_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": empty_database_url, "BACKUP_DIR": str(tmp_path / "backups")}
    ran: list[str] = []
    for heading, commands in commands_by_section():
        if heading == "Recover from a lost volume":
            lose_database(empty_database_url)
        for command in commands:
            if command in ELSEWHERE:
                continue
            words = shlex.split(command)
            assert "qr-manage" in words, f"not a qr-manage command and not tested elsewhere: {command!r}"
            args = words[words.index("qr-manage") + 1 :]
            newest = list_backups(tmp_path / "backups")
            args = [str(newest[-1]) if ARCHIVE.fullmatch(arg) else arg for arg in args]
            result = qr_manage(*args, **env)
            if args == ["status"] and not newest:
                # Right after deploying there is no backup yet: status says so, with exit code 1.
                assert result.returncode == 1
                assert "no backup yet" in result.stderr
            else:
                assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
            ran.append(args[0])
    # The page covers the whole operator's cycle.
    assert {"migrate", "backup", "prune-backups", "restore", "status", "maintain"} <= set(ran)
