"""The recovery drill of docs/operations.md, on a running stack: codes and scans, a backup, more
writes, the database lost, restored and migrated while the services keep running; afterwards every
code from before the backup redirects where it did, its scans are counted as backed up, and new
writes go on without collisions."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.ops import embedded
from tests.conftest import lose_database
from tests.e2e.conftest import created, own_stack
from tests.ops.test_cli import qr_manage

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(pg_server: embedded.EmbeddedServer, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A stack of its own (its database gets lost); the edge's URL and the operator's environment."""
    with own_stack(pg_server, tmp_path / "var") as (running, environ):
        yield f"http://127.0.0.1:{running.settings.http_port}", environ


def eventually(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def test_the_recovery_drill(stack: tuple[str, dict[str, str]]) -> None:
    edge, environ = stack
    operator = {"DATABASE_URL": environ["DATABASE_URL"], "BACKUP_DIR": environ["BACKUP_DIR"]}
    made: Counter[str] = Counter()  # scans made, per code
    with httpx.Client(base_url=edge, timeout=10) as admin, httpx.Client(base_url=edge, timeout=10) as phone:

        def location(code_id: str) -> tuple[int, str | None]:
            answer = phone.get(f"/r/{code_id}")
            if answer.status_code == 302:
                made[code_id] += 1
            return answer.status_code, answer.headers.get("location")

        def scan_counts() -> dict[str, int]:
            return {c["id"]: c["scan_count"] for c in admin.get("/api/v1/qr?limit=100").json()["items"]}

        def all_recorded() -> bool:
            return scan_counts() == {code_id: made[code_id] for code_id in scan_counts()}

        # Codes and scans.
        codes = {}
        for n in range(8):
            code = created(admin.post("/api/v1/qr", json={"target_url": f"https://example.org/before/{n}"}))
            codes[code["id"]] = f"https://example.org/before/{n}"
        for n, code_id in enumerate(codes):
            for _ in range(n % 3 + 1):
                assert location(code_id) == (302, codes[code_id])
        eventually(all_recorded, "scans recorded")
        backed_up = scan_counts()

        backup = qr_manage("backup", **operator)
        assert backup.returncode == 0, backup.stderr
        archive = Path(backup.stdout.strip())

        # More writes, which the backup does not hold (and the redirect caches hold).
        first = next(iter(codes))
        assert admin.patch(f"/api/v1/qr/{first}", json={"target_url": "https://example.org/after"}).is_success
        later = created(admin.post("/api/v1/qr", json={"target_url": "https://example.org/later"}))["id"]
        eventually(lambda: location(first) == (302, "https://example.org/after"), "the change followed")
        assert location(later)[0] == 302
        eventually(all_recorded, "later scans recorded")  # none left in a buffer to land after

        # The loss, and the recovery: restore (there is nothing to replace), then migrate.
        lose_database(environ["DATABASE_URL"])
        restored = qr_manage("restore", str(archive), **operator)
        assert restored.returncode == 0, restored.stderr
        migrated = qr_manage("migrate", **operator)
        assert migrated.returncode == 0, migrated.stderr
        status = qr_manage("status", **operator)
        assert status.returncode == 0, status.stdout + status.stderr

        # The scan counts are the backed-up ones; what came after the backup is gone.
        assert scan_counts() == backed_up
        assert admin.get(f"/api/v1/qr/{later}").status_code == 404
        made.clear()
        made.update(backed_up)
        # Every code from before the backup redirects where it did then, the redirect processes'
        # caches included (they held the later target of the first code).
        eventually(
            lambda: all(location(code_id) == (302, target) for code_id, target in codes.items()),
            "every code redirects as before the backup",
        )
        assert location(later)[0] == 404

        # Writes go on without collisions: new codes, changes with history, scans.
        again = admin.post("/api/v1/qr", json={"target_url": "https://example.org/again"})
        assert again.status_code == 201, again.text
        assert admin.patch(f"/api/v1/qr/{first}", json={"title": "restored"}).is_success
        history = admin.get(f"/api/v1/qr/{first}/history").json()["items"]
        assert history[0]["changes"] == {"title": {"old": None, "new": "restored"}}
        assert location(again.json()["id"]) == (302, "https://example.org/again")
        eventually(all_recorded, "every scan since the restore recorded, on top of the restored ones")

        # Restoring over the live database, with every service connected to it, goes the same way.
        replaced = qr_manage("restore", str(archive), "--yes", **operator)
        assert replaced.returncode == 0, replaced.stderr
        assert "saved the replaced contents" in replaced.stdout
        eventually(lambda: location(again.json()["id"])[0] == 404, "the restored state is served")
        assert scan_counts() == backed_up
