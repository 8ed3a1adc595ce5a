"""Child processes of the stack: started in their own session, stopped by pid, waited for.

Each child gets a session of its own, so Ctrl-C in the terminal reaches only the supervisor, which
then stops the children in order (edge first, database last). Each also asks the kernel to send it
SIGTERM should the supervisor die without cleaning up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A child exited or did not become ready in time."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def signal_and_wait(pid: int, signum: int, timeout: float) -> bool:
    """Signal a process that is not our child and poll until it is gone; True if it went."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; then anything left in its process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Worker processes a server left behind share its process group (= its pid).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def spawn(name: str, args: Sequence[str], *, env: Mapping[str, str]) -> Child:
    process = subprocess.Popen(
        list(args),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    return Child(name, process)


def wait_ready(child: Child, url: str, *, timeout: float = 60.0, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status``; fail early if the child exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, verify=False) as client:  # noqa: S501 - our own self-signed edge
        while time.monotonic() < deadline:
            code = child.exited()
            if code is not None:
                raise StartError(f"{child.name} exited with code {code} while starting")
            try:
                if client.get(url).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise StartError(f"{child.name} did not answer {url} within {timeout:.0f} s")


REDIRECT_APP = "services.redirect.app:app_from_env"


# The most a request's line and headers may take at the redirect service (431 past it, from Granian):
# far above what a browser sends (a few KiB, cookies included), and a bound on what a connection holds.
REDIRECT_MAX_HEADER_BYTES = 32 * 1024


def granian_command(
    host: str, port: int | str, *, workers: int | str = 1, app: str = REDIRECT_APP, factory: bool = True
) -> list[str]:
    """How the redirect service is served, for ``make run``, compose (a test compares) and the tests.

    A worker that dies is started again (its metrics' live gauges are dropped at the next scrape).
    """
    return [
        "granian",
        "--interface=asgi",
        f"--host={host}",
        f"--port={port}",
        f"--workers={workers}",
        "--respawn-failed-workers",
        "--no-ws",
        # Granian's defaults are 408 KiB of HTTP/1 and 16 MiB of HTTP/2 headers.
        f"--http1-buffer-size={REDIRECT_MAX_HEADER_BYTES}",
        f"--http2-max-headers-size={REDIRECT_MAX_HEADER_BYTES}",
        # uvloop's event loop: the hot path spends a fifth of its time in loop wakeups (make bench).
        "--loop=uvloop",
        "--log-level=warning",
        *(["--factory"] if factory else []),
        app,
    ]


def venv_command(args: list[str]) -> list[str]:
    """``args`` with its program taken from this environment's bin folder."""
    return [str(Path(sys.executable).parent / args[0]), *args[1:]]
