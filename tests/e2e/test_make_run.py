"""``make run`` itself, as an operator starts and stops it: twice on the same ``var/``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from services.ops.processes import pid_alive
from services.ops.settings import CHECKOUT
from tests.e2e.conftest import stack_environ
from tests.ops.test_cli import qr_manage

pytestmark = pytest.mark.e2e


def start(environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # Its own process group, like a terminal's foreground job, so that a "Ctrl-C" reaches make and
    # the supervisor (and nothing else) exactly as a terminal would deliver it.
    with log.open("ab") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=CHECKOUT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_serving(process: subprocess.Popen[bytes], edge: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, f"make run exited early:\n{log.read_text()}"
        try:
            if (
                httpx.get(f"{edge}/health", timeout=1).status_code == 200
                and "Press Ctrl-C" in log.read_text()
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"make run did not serve in time:\n{log.read_text()}")


def started_pids(var_dir: Path) -> list[int]:
    state = json.loads((var_dir / "stack.json").read_text())
    pids = [state["supervisor"], state["database"], *state["children"].values()]
    assert len(pids) == 5
    assert all(isinstance(pid, int) for pid in pids)
    return pids


def processes_of(var_dir: Path) -> list[int]:
    """Every process whose environment names this run's var/: all that make run started, whatever
    started them (Granian's workers, PostgreSQL's backends, anything forgotten)."""
    marker = f"QR_VAR_DIR={var_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def stop(process: subprocess.Popen[bytes], signum: int, pids: list[int]) -> None:
    try:
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        else:
            process.send_signal(signum)  # `kill <pid of make>`
        process.wait(timeout=90)
    finally:
        for pid in pids:  # never leave anything behind, whatever the test found
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_make_run_serves_stops_cleanly_and_runs_again(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    environ = stack_environ(var_dir)
    edge = f"http://127.0.0.1:{environ['EDGE_HTTP_PORT']}"
    log = tmp_path / "make-run.log"

    first = start(environ, log)
    pids: list[int] = []
    try:
        wait_until_serving(first, edge, log)
        pids = started_pids(var_dir)
        assert set(pids) <= set(processes_of(var_dir))
        assert len(processes_of(var_dir)) > len(pids)  # workers and backends are found too
        output = log.read_text()
        assert f"{edge}/api/v1/qr" in output
        assert "/r/{id}" in output
        code = httpx.post(
            f"{edge}/api/v1/qr", json={"target_url": "https://example.org/kept"}, timeout=10
        ).json()
    finally:
        stop(first, signal.SIGTERM, pids)
    assert [pid for pid in pids if pid_alive(pid)] == [], "processes left running after SIGTERM"
    assert processes_of(var_dir) == []
    assert not (var_dir / "stack.json").exists()

    log = tmp_path / "make-run-second.log"  # a fresh log: the first run's banner is no sign
    second = start(environ, log)
    pids = []
    try:
        wait_until_serving(second, edge, log)
        pids = started_pids(var_dir)
        # The database held data, so this start took a backup before migrating.
        assert list((var_dir / "backups").glob("qr-*.dump"))
        kept = httpx.get(f"{edge}/r/{code['id']}", timeout=10)
        assert kept.status_code == 302
        assert kept.headers["location"] == "https://example.org/kept"

        # An operator backs up and restores the running stack's embedded database, DATABASE_URL unset.
        operator = {"QR_VAR_DIR": environ["QR_VAR_DIR"], "BACKUP_DIR": environ["BACKUP_DIR"]}
        backup = qr_manage("backup", **operator)
        assert backup.returncode == 0, backup.stderr
        later = httpx.post(f"{edge}/api/v1/qr", json={"target_url": "https://example.org/later"}, timeout=10)
        assert httpx.get(f"{edge}/r/{later.json()['id']}", timeout=10).status_code == 302
        restored = qr_manage("restore", backup.stdout.strip(), "--yes", **operator)
        assert restored.returncode == 0, restored.stderr
        deadline = time.monotonic() + 10  # the redirect processes drop their caches as they reconnect
        while httpx.get(f"{edge}/r/{later.json()['id']}", timeout=10).status_code != 404:
            assert time.monotonic() < deadline, "the restored state is not served"
            time.sleep(0.1)
        assert (
            httpx.get(f"{edge}/r/{code['id']}", timeout=10).headers["location"] == "https://example.org/kept"
        )
        assert pid_alive(pids[1])  # the stack's database is still running: qr-manage was its guest
    finally:
        stop(second, signal.SIGINT, pids)
    assert [pid for pid in pids if pid_alive(pid)] == [], "processes left running after Ctrl-C"
    assert processes_of(var_dir) == []
    assert "stopped." in log.read_text()


def test_make_run_refuses_a_bad_allowlist_with_a_clear_message(tmp_path: Path) -> None:
    environ = stack_environ(tmp_path / "var", ADMIN_ALLOWLIST="")
    result = subprocess.run(
        ["make", "--no-print-directory", "run"],
        cwd=CHECKOUT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ADMIN_ALLOWLIST must list at least one address" in result.stderr
    assert not (tmp_path / "var").exists()  # nothing was started or written


def test_after_a_crash_the_next_run_cleans_up_what_the_crashed_one_left(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    environ = stack_environ(var_dir)
    edge = f"http://127.0.0.1:{environ['EDGE_HTTP_PORT']}"
    log = tmp_path / "make-run.log"

    crashed = start(environ, log)
    pids: list[int] = []
    try:
        wait_until_serving(crashed, edge, log)
        pids = started_pids(var_dir)
        os.kill(pids[0], signal.SIGKILL)  # the supervisor dies without cleaning up
        crashed.wait(timeout=30)
        # Its services follow it (they asked the kernel for SIGTERM when their parent dies) ...
        deadline = time.monotonic() + 30
        while any(pid_alive(pid) for pid in pids[2:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(pid_alive(pid) for pid in pids[2:])
        # ... while the database, a daemon of its own, is left behind.
        assert pid_alive(pids[1])

        log = tmp_path / "make-run-again.log"  # a fresh log: the first run's banner is no sign
        again = start(environ, log)
        try:
            wait_until_serving(again, edge, log)
            assert started_pids(var_dir)[1] == pids[1]  # the orphan was adopted
        finally:
            stop(again, signal.SIGTERM, started_pids(var_dir) if (var_dir / "stack.json").exists() else [])
        assert processes_of(var_dir) == []
    finally:
        for pid in processes_of(var_dir):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_make_run_backs_up_on_schedule_and_keeps_the_retention(tmp_path: Path) -> None:
    """BACKUP_INTERVAL_HOURS at its floor (3.6 s): nothing while the database holds no code, the
    first backup soon after the first code, then one per interval, pruned to BACKUP_RETENTION."""
    var_dir = tmp_path / "var"
    environ = stack_environ(var_dir, BACKUP_INTERVAL_HOURS="0.001", BACKUP_RETENTION="2")
    edge = f"http://127.0.0.1:{environ['EDGE_HTTP_PORT']}"
    backups = var_dir / "backups"
    log = tmp_path / "make-run.log"
    process = start(environ, log)
    pids: list[int] = []
    try:
        wait_until_serving(process, edge, log)
        pids = started_pids(var_dir)
        time.sleep(5)  # more than an interval: a freshly migrated database is not worth a backup
        assert list(backups.glob("qr-*.dump")) == []
        created = httpx.post(f"{edge}/api/v1/qr", json={"target_url": "https://example.org/a"}, timeout=10)
        assert created.status_code == 201
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"backups seen: {sorted(seen)}\n{log.read_text()}"
            archives = sorted(path.name for path in backups.glob("qr-*.dump"))
            assert len(archives) <= 2, archives  # BACKUP_RETENTION
            seen.update(archives)
            time.sleep(0.2)
        assert not list(backups.glob("*.partial"))
        # qr-manage status, as an operator would run it beside the stack: the backup is fresh.
        status = qr_manage("status", QR_VAR_DIR=environ["QR_VAR_DIR"], BACKUP_DIR=str(backups))
        assert "attention" not in status.stderr, status.stderr
    finally:
        stop(process, signal.SIGINT, pids)
    assert "backup: " in log.read_text()
    assert processes_of(var_dir) == []
