"""``make run`` with ``EMBEDDED_REPLICA=true`` and two redirect workers, through the edge: a hot
standby of the embedded server takes the lookups, and no answer is ever older than the primary's."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from services.ops import embedded
from services.ops.settings import StackSettings
from services.ops.stack import REPLICA_DIR, Stack
from tests.e2e.conftest import created, stack_environ
from tests.ops.test_cli import qr_manage

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # 150 codes made one by one through the edge, faster than its admin limit allows by default.
    environ = stack_environ(
        tmp_path / "var",
        EMBEDDED_REPLICA="true",
        REDIRECT_WORKERS="2",
        ADMIN_RATE_LIMIT_AVERAGE="1000",
        ADMIN_RATE_LIMIT_BURST="1000",
    )
    running = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
    try:
        running.start()
        yield running
    finally:
        running.stop()


def lookups_on(redirect: str, source: str) -> float:
    text = httpx.get(f"{redirect}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f'qr_lookups_total{{source="{source}"}}')
    )


def usable(redirect: str) -> bool:
    return "qr_replica_usable 1.0" in httpx.get(f"{redirect}/metrics", timeout=5).text


def test_lookups_on_the_replica_never_older_than_the_primary(stack: Stack) -> None:
    s = stack.settings
    assert stack.replica is not None
    edge = f"http://127.0.0.1:{s.http_port}"
    redirect = f"http://127.0.0.1:{s.redirect_port}"
    assert "replica" in stack._banner()
    with httpx.Client(base_url=edge, timeout=10) as client:
        # 150 codes, each scanned the moment it is made.
        statuses = []
        for n in range(150):
            made = created(client.post("/api/v1/qr", json={"target_url": f"https://example.org/{n}"}))
            statuses.append(client.get(f"/r/{made['id']}").status_code)
        assert statuses == [302] * 150

        # A change: every answer is the new target a second later (both workers, through the edge).
        code = created(client.post("/api/v1/qr", json={"target_url": "https://example.org/before"}))["id"]
        assert client.get(f"/r/{code}").headers["location"] == "https://example.org/before"
        assert (
            client.patch(f"/api/v1/qr/{code}", json={"target_url": "https://example.org/after"}).status_code
            == 200
        )
        time.sleep(1.0)
        answers = {
            client.get(f"/r/{code}", headers={"Connection": "close"}).headers["location"] for _ in range(40)
        }
        assert answers == {"https://example.org/after"}
        assert lookups_on(redirect, "replica") > 0

        # The replica killed: cached codes without a pause, new ones within a second.
        pid = stack.replica.pid
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        assert client.get(f"/r/{code}").status_code == 302
        fresh = created(client.post("/api/v1/qr", json={"target_url": "https://example.org/fresh"}))["id"]
        assert client.get(f"/r/{fresh}").status_code == 302
        assert time.monotonic() - started < 1.5
        deadline = time.monotonic() + 5
        while usable(redirect):
            assert time.monotonic() < deadline, "the replica's death was never noticed"
            time.sleep(0.1)
        assert httpx.get(f"{edge}/health", timeout=5).status_code == 200  # the management service's

        # Started again: the lookups go back to it.
        deadline = time.monotonic() + 30
        while psutil.pid_exists(pid):
            assert time.monotonic() < deadline, "the killed replica lingers"
            time.sleep(0.1)
        assert stack.database is not None
        stack.replica = embedded.start_replica(s.ops.var_dir / REPLICA_DIR, stack.database)
        deadline = time.monotonic() + 15
        while not usable(redirect):
            assert time.monotonic() < deadline, "lookups never went back to the replica"
            time.sleep(0.1)
        before = lookups_on(redirect, "replica")
        later = created(client.post("/api/v1/qr", json={"target_url": "https://example.org/later"}))["id"]
        time.sleep(0.5)  # replayed by then
        assert client.get(f"/r/{later}").status_code == 302
        deadline = time.monotonic() + 3  # each worker publishes its counts every second
        while lookups_on(redirect, "replica") < before + 1:
            assert time.monotonic() < deadline, "the lookup was not the replica's"
            time.sleep(0.1)


def test_a_second_run_reuses_the_replica_and_a_third_remakes_one_that_cannot_follow(tmp_path: Path) -> None:
    environ = stack_environ(tmp_path / "var", EMBEDDED_REPLICA="true")
    pgdata = tmp_path / "var" / REPLICA_DIR / "pgdata"
    made = []
    for run in (1, 2, 3):
        if run == 3:
            (pgdata / "standby.signal").unlink()  # it came up as a server of its own: no copy to follow
        stack = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
        try:
            stack.start()
            assert stack.replica is not None
            made.append((pgdata / "standby.signal").stat().st_mtime)
            if run == 2:
                status = qr_manage("status", **environ)
                assert "replica:       walreceiver streaming, replay lag" in status.stdout, status.stdout
        finally:
            stack.stop()
        assert stack.replica is None
        assert embedded.running(pgdata.resolve()) is None  # stopped with the stack
    assert made[1] == made[0]  # the same copy, caught up, not made again
    assert made[2] > made[1]  # a new copy


def test_embedded_replica_wants_the_embedded_server(tmp_path: Path) -> None:
    from shared.settings import ConfigError

    with pytest.raises(ConfigError, match="leave DATABASE_URL unset"):
        StackSettings.from_env({"EMBEDDED_REPLICA": "true", "DATABASE_URL": "postgresql://qr@db/qr"})
    with pytest.raises(ConfigError, match="EMBEDDED_REPLICA"):
        StackSettings.from_env({"EMBEDDED_REPLICA": "maybe"})


def test_a_restore_reaches_the_lookups_through_the_replica(tmp_path: Path) -> None:
    """The new database and its swap are in the WAL the standby replays; the restore's flush keeps
    the answers from before it out of every cache, and the replica's too until it has replayed it."""
    environ = stack_environ(tmp_path / "var", EMBEDDED_REPLICA="true")
    stack = Stack(StackSettings.from_env(environ), environ=environ, out=io.StringIO())
    try:
        stack.start()
        edge = f"http://127.0.0.1:{stack.settings.http_port}"
        with httpx.Client(base_url=edge, timeout=10) as client:
            code = created(client.post("/api/v1/qr", json={"target_url": "https://example.org/kept"}))["id"]
            backup = qr_manage("backup", **environ)
            assert backup.returncode == 0, backup.stderr
            client.patch(f"/api/v1/qr/{code}", json={"target_url": "https://example.org/later"})
            time.sleep(1.0)
            assert client.get(f"/r/{code}").headers["location"] == "https://example.org/later"
            restored = qr_manage("restore", backup.stdout.strip(), "--yes", **environ)
            assert restored.returncode == 0, restored.stderr
            deadline = time.monotonic() + 45  # a standby waits for its own readers of the old one
            while True:
                answer = client.get(f"/r/{code}", headers={"Connection": "close"})
                if answer.status_code == 302 and answer.headers["location"] == "https://example.org/kept":
                    break
                assert time.monotonic() < deadline, (answer.status_code, answer.headers.get("location"))
                time.sleep(0.2)
            answers = {
                client.get(f"/r/{code}", headers={"Connection": "close"}).headers["location"]
                for _ in range(20)
            }
            assert answers == {"https://example.org/kept"}
    finally:
        stack.stop()
