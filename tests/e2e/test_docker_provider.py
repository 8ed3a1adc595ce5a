"""`docker compose up -d --scale redirect=3`, as far as it can be tried without Docker's engine:
the real Traefik with the compose static file's Docker provider and the shared dynamic file, in
front of three real redirect processes that a stand-in for Docker's API presents as the compose
containers, labels read from compose.yaml itself.

The stand-in answers the read-only calls Traefik makes (ping, version, the container list, one
inspection per container, the event stream), and records them: they must all be calls the
compose file's socket proxy lets through. It is a stand-in for the engine only; Traefik, the
redirect service and PostgreSQL are the real ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.ops import edge
from services.ops.processes import Child, granian_command, spawn, venv_command, wait_ready
from tests.e2e.conftest import RunningStack, created
from tests.e2e.test_edge import own_edge, wait_routed

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "qr"
NETWORK = edge.STATIC_FILES["traefik.yml"].docker_network
# Loopback addresses stand for the containers' addresses on traefik_net: every container listens
# on the port its label names, as in compose.
REPLICAS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")
UNHEALTHY = "127.0.0.24"  # a fourth container whose health check fails: nothing listens there


def compose_labels() -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    labels: dict[str, str] = compose["services"]["redirect"]["labels"]
    return {name: str(value) for name, value in labels.items()}


@dataclasses.dataclass
class Container:
    number: int
    address: str
    labels: dict[str, str]
    health: str = "healthy"

    @property
    def id(self) -> str:
        return f"{self.number:064x}"

    @property
    def name(self) -> str:
        return f"/{PROJECT}-redirect-{self.number}"

    def summary(self) -> dict[str, Any]:
        return {"Id": self.id, "Names": [self.name], "Labels": self.labels, "State": "running"}

    def inspection(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": self.name,
            "State": {"Status": "running", "Running": True, "Health": {"Status": self.health}},
            "Config": {"Labels": self.labels},
            "HostConfig": {"NetworkMode": NETWORK},
            "NetworkSettings": {
                "Ports": {},
                "Networks": {NETWORK: {"IPAddress": self.address, "NetworkID": "traefik_net"}},
            },
        }


class DockerApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, containers: list[Container]) -> None:
        super().__init__(("127.0.0.1", 0), _DockerApiHandler)
        self.containers = containers
        self.calls: list[tuple[str, str]] = []
        self.closing = threading.Event()

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.server_address[1]}"


class _DockerApiHandler(BaseHTTPRequestHandler):
    server: DockerApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: object, *, stream: bool = False) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.47")
        self.send_header("Ostype", "linux")
        if stream:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            self.server.closing.wait()  # events only when a test makes some; none here
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = re.sub(r"^/v[0-9.]+", "", self.path.split("?", 1)[0])
        self.server.calls.append((self.command, path))
        containers = {c.id: c for c in self.server.containers}
        if path == "/_ping":
            self._send(200, None)
        elif path == "/version":
            self._send(
                200, {"Version": "27.3.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24", "Os": "linux"}
            )
        elif path == "/containers/json":
            self._send(200, [c.summary() for c in self.server.containers])
        elif (found := re.fullmatch(r"/containers/([0-9a-f]+)/json", path)) and found[1] in containers:
            self._send(200, containers[found[1]].inspection())
        elif path == "/events":
            self._send(200, None, stream=True)
        else:
            self._send(404, {"message": f"no such thing: {path}"})

    def do_POST(self) -> None:
        self.server.calls.append((self.command, self.path))
        self._send(403, {"message": "the socket proxy refuses POST"})


@contextlib.contextmanager
def docker_api(containers: list[Container]) -> Iterator[DockerApi]:
    server = DockerApi(containers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def replicas(running_stack: RunningStack) -> Iterator[list[str]]:
    """Three redirect processes on the session stack's database, one per stand-in address."""
    port = compose_labels()["traefik.http.services.redirect.loadbalancer.server.port"]
    environ = {**os.environ, "DATABASE_URL": running_stack.stack.dsn, "LOG_LEVEL": "WARNING"}
    children: list[Child] = []
    try:
        for address in REPLICAS:
            args = venv_command(granian_command(address, port, workers=1))
            children.append(spawn(f"redirect@{address}", args, env=environ))
            wait_ready(children[-1], f"http://{address}:{port}/livez", timeout=30)
        yield [f"http://{address}:{port}" for address in REPLICAS]
    finally:
        for child in children:
            child.stop()


def redirects_served(base: str) -> float:
    """The redirect answers one process has given, from its own metrics."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("qr_http_requests_total{") and 'route="/r/{id}"' in line and 'status="302"' in line
    )


def containers(labels: dict[str, str]) -> list[Container]:
    compose = {"com.docker.compose.project": PROJECT, "com.docker.compose.service": "redirect"}
    found = [Container(n, address, {**labels, **compose}) for n, address in enumerate(REPLICAS, 1)]
    found.append(Container(len(found) + 1, UNHEALTHY, {**labels, **compose}, health="unhealthy"))
    return found


def docker_options(api: DockerApi) -> edge.EdgeOptions:
    """The compose static file's options, its Docker endpoint pointed at the stand-in."""
    return dataclasses.replace(
        edge.STATIC_FILES["traefik.yml"], docker_endpoint=api.endpoint, grace_seconds=0
    )


def test_scaled_redirect_containers_share_the_load_through_the_files_chains(
    tmp_path: Path, running_stack: RunningStack, replicas: list[str]
) -> None:
    with httpx.Client(base_url=running_stack.edge, timeout=10) as admin:
        code = created(admin.post("/api/v1/qr", json={"target_url": "https://example.org/scaled"}))["id"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["traefik"]["environment"]["REDIRECT_SERVICE"]
    assert service == "redirect@docker"
    with (
        docker_api(containers(compose_labels())) as api,
        own_edge(tmp_path, running_stack, docker_options(api), REDIRECT_SERVICE=service) as own,
    ):
        wait_routed(f"{own.http}/r/{code}", 302)
        before = [redirects_served(base) for base in replicas]
        with httpx.Client(base_url=own.http, timeout=10) as client:
            answers = [client.get(f"/r/{code}", headers={"Connection": "close"}) for _ in range(90)]
        # Every answer a redirect: the unhealthy fourth container (nothing listens there) got none.
        assert [a.status_code for a in answers] == [302] * 90
        assert {a.headers["location"] for a in answers} == {"https://example.org/scaled"}
        # Through the public chain: its security headers on every answer.
        assert all(a.headers["x-content-type-options"] == "nosniff" for a in answers)
        served = [redirects_served(base) - b for base, b in zip(replicas, before, strict=True)]
        assert sum(served) >= 90
        assert all(n >= 15 for n in served), served  # round robin: about 30 each
        # The admin API still reaches the management service through the file's own service.
        assert httpx.get(f"{own.http}/health", timeout=10).status_code == 200
        # No router of the Docker provider's own: the host its default rule would match reaches
        # the file's catch-all (a 404 page), never the services' /metrics.
        around = httpx.get(f"{own.http}/metrics", headers={"Host": f"redirect-{PROJECT}"}, timeout=10)
        assert around.status_code == 404
        assert "qr_http_requests_total" not in around.text
    # Traefik asked only what the socket proxy allows (CONTAINERS, EVENTS, PING, VERSION; no POST).
    assert api.calls
    assert {method for method, _ in api.calls} <= {"GET", "HEAD"}
    allowed = re.compile(r"/_ping|/version|/events|/containers/json|/containers/[0-9a-f]+/json")
    assert all(allowed.fullmatch(path) for _, path in api.calls), api.calls


def test_without_the_second_service_the_providers_own_router_would_go_around_the_chains(
    tmp_path: Path, running_stack: RunningStack, replicas: list[str]
) -> None:
    """Why compose.yaml declares a service that nothing routes to: with one service only, Traefik
    makes a router for the containers from its default rule, and that router answers past every
    middleware (here the services' /metrics, which the edge never serves)."""
    labels = {k: v for k, v in compose_labels().items() if ".redirect-unrouted." not in k}
    with (
        docker_api(containers(labels)) as api,
        own_edge(tmp_path, running_stack, docker_options(api), REDIRECT_SERVICE="redirect@docker") as own,
    ):
        wait_routed(f"{own.http}/health", 200)
        deadline = time.monotonic() + 10
        while True:
            around = httpx.get(f"{own.http}/metrics", headers={"Host": f"redirect-{PROJECT}"}, timeout=10)
            if around.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert around.status_code == 200
        assert "qr_http_requests_total" in around.text
