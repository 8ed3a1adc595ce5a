"""Who stops the embedded server: its owner; an orphan is adopted; a guest leaves it alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.ops import embedded
from services.ops.processes import pid_alive


def in_subprocess(var_dir: Path, code: str) -> None:
    program = (
        f"from pathlib import Path\nfrom services.ops import embedded\nvar = Path({str(var_dir)!r})\n{code}"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=120, env=dict(os.environ))


def test_an_orphaned_server_is_adopted_and_stopped(tmp_path: Path) -> None:
    # Its starter "crashes": exits without stopping it.
    in_subprocess(tmp_path, "embedded.start(var)")
    orphan = embedded.running((tmp_path / "pgdata").resolve())
    assert orphan is not None
    try:
        server = embedded.start(tmp_path)
        assert server.owned
        assert server.pid == orphan.pid
        server.release()
        assert not pid_alive(orphan.pid)
        assert not (tmp_path / embedded.OWNER_FILE).exists()
    finally:
        if pid_alive(orphan.pid):
            orphan.stop()


def test_a_guest_leaves_the_server_to_its_owner(tmp_path: Path) -> None:
    server = embedded.start(tmp_path)
    try:
        assert server.owned
        in_subprocess(tmp_path, "s = embedded.start(var)\nassert not s.owned\ns.release()")
        assert pid_alive(server.pid)
    finally:
        server.release()
    assert not pid_alive(server.pid)


def test_ownership_can_be_handed_to_a_process_that_still_needs_it(tmp_path: Path) -> None:
    heir = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = embedded.start(tmp_path)
    try:
        server.release(heir=heir.pid)
        assert pid_alive(server.pid)  # handed over, not stopped
        heir.kill()
        heir.wait()
        adopted = embedded.start(tmp_path)  # the heir is gone: adopted again
        assert adopted.owned
        adopted.release()
        assert not pid_alive(server.pid)
    finally:
        heir.kill()
        heir.wait()
        if pid_alive(server.pid):
            server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="as root only: the server then runs as a user of its own")
def test_a_replicas_copy_changes_no_permission_above_it(
    pg_server: embedded.EmbeddedServer, tmp_path: Path
) -> None:
    """pg_basebackup runs as root (who reaches any folder) and the copy is then given to the
    server's user: no folder above it is opened to anyone by that."""
    import pwd

    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    pgdata = closed / "replica" / "pgdata"
    embedded._base_backup(pg_server, pgdata)
    assert closed.stat().st_mode & 0o777 == 0o700
    owner = pwd.getpwnam(embedded.SERVER_USER).pw_uid
    assert pgdata.parent.stat().st_uid == owner
    assert (pgdata / "PG_VERSION").stat().st_uid == owner
    assert (pgdata / "standby.signal").exists()
