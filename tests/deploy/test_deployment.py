"""The design's deployment, run for real (make test-compose): `docker compose up -d --wait` on a real
Docker engine with the images `make images` builds, and then every sentence of the design and of the
README's production section that can be executed, in order: health and start order, the hardening
read back from the engine, network isolation, the admin chain from real remote addresses, backups
on the host, the edge without a redirect container, crashes of each container under a steady
scanner, scaling, Prometheus, the update procedure, the disaster recovery drill, production
certificates and a `down`/`up`.

The tests share one deployment (tests/deploy/conftest.py) and run in this order; each leaves what
a later one reads in ``deployment.notes``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from cryptography import x509
from PIL import Image

from tests.deploy.harness import (
    BACKUP_UID,
    DOMAIN,
    GATEWAY,
    OFFICE,
    PHASES,
    PROJECT,
    STRANGER,
    Deployment,
    can_make_namespaces,
    checked_json,
    set_env_values,
)

LONG_RUNNING = ("db", "redirect", "management", "backup", "maintenance", "traefik", "docker-socket-proxy")
APP = ("redirect", "management", "backup", "maintenance")

# The README's production commands that these tests run exactly as written (ports as in the test's
# .env); tests/test_compose.py checks that every command of that section is here or in SHOWN.
RUN_AS_WRITTEN = {
    "status": "docker compose run --rm backup qr-manage status",
    "ps": "docker compose ps",
    "host_health": "curl -s http://127.0.0.1:8081/health",
    "host_api": "curl -s 'http://127.0.0.1:8081/api/v1/qr?limit=5'",
    "backup": "docker compose run --rm backup qr-manage backup",
    "build": "docker compose build",
    "up": "docker compose up -d --wait",
    "migrate": "docker compose run --rm migrate",
    "down": "docker compose down",
    "volume_rm": 'docker volume rm "$(basename "$PWD")_postgres_data"',
    "restore": "docker compose run --rm backup qr-manage restore --newest --yes",
    "scale": "docker compose up -d --wait --scale redirect=3",
    "monitoring": "docker compose --profile monitoring up -d prometheus",
    "ls_backups": "ls -l backups/",
}
# Commands the README shows with their expected output instead: they need what a test cannot have
# (the operator's clone, a registry, DNS), or run here in another form (make images with the
# checkout's virtualenv; COMPOSE_ENV_FILES set for every command rather than exported).
SHOWN = {
    "git pull",
    "make images",
    "export COMPOSE_ENV_FILES=.env,.env.images",
    "curl https://qr.example.org/health",
}


def readme(deployment: Deployment, key: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = deployment.sh(RUN_AS_WRITTEN[key], **kwargs)
    if key in ("up", "scale"):  # every long-running container up, or what the command said
        running = set(deployment.compose("ps", "--format", "{{.Service}}").stdout.split())
        assert set(LONG_RUNNING) <= running, (running, result.stdout[-3000:], result.stderr[-3000:])
    if key == "down":  # gone from compose's own list too before anything else is asked of it
        deployment.wait(
            "the containers removed", lambda: not deployment.compose("ps", "-aq").stdout.strip(), timeout=60
        )
    return result


def compose_ps(deployment: Deployment) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in deployment.compose("ps", "-a", "--format", "json").stdout.splitlines():
        if line.strip():
            row = json.loads(line)
            rows.setdefault(row["Service"], []).append(row)
    return rows


def host_pid_uid(pid: int) -> int:
    """The real uid of a process on this machine (a container's process, seen from the host)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def decode_png(body: bytes) -> str:
    import io

    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(body)))
    assert len(results) == 1, results
    return str(results[0].text)


def create_code(deployment: Deployment, target: str, **fields: Any) -> dict[str, Any]:
    with deployment.local_admin() as admin:
        code: dict[str, Any] = checked_json(
            admin.post("/api/v1/qr", json={"target_url": target, **fields}), 201
        )
    return code


def scan_count(deployment: Deployment, code_id: str) -> int:
    with deployment.local_admin() as admin:
        return int(checked_json(admin.get(f"/api/v1/qr/{code_id}"), 200)["scan_count"])


def settled_codes(deployment: Deployment) -> list[dict[str, Any]]:
    """Every code as the API lists it, once two readings a scan flush apart agree (scans of a
    moment ago reach scan_count within a second)."""

    def reading() -> list[dict[str, Any]]:
        with deployment.local_admin() as admin:
            items: list[dict[str, Any]] = checked_json(admin.get("/api/v1/qr", params={"limit": 500}), 200)[
                "items"
            ]
        return items

    def agreeing() -> list[dict[str, Any]] | None:
        first = reading()
        time.sleep(1.5)
        return first if reading() == first else None

    found: list[dict[str, Any]] = deployment.wait("the codes settled", agreeing, timeout=30, interval=0)
    return found


def same_codes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Every code back as it was, field by field (a failure names the field)."""
    assert [code["id"] for code in after] == [code["id"] for code in before]
    for old, new in zip(before, after, strict=True):
        changed = {key: (old[key], new.get(key)) for key in old if new.get(key) != old[key]}
        assert not changed, (old["id"], changed)


def wait_redirecting(deployment: Deployment, code_id: str, timeout: float = 90) -> None:
    def redirects() -> bool:
        with deployment.public() as client:
            return client.get(f"/r/{code_id}").status_code == 302

    deployment.wait(f"/r/{code_id} redirecting", redirects, timeout=timeout)


def wait_healthy(deployment: Deployment, service: str, count: int = 1, timeout: float = 120) -> None:
    def healthy() -> bool:
        rows = [row for row in compose_ps(deployment).get(service, []) if row["State"] == "running"]
        return len(rows) == count and all(row["Health"] == "healthy" for row in rows)

    deployment.wait(f"{count} healthy {service}", healthy, timeout=timeout, interval=1)


def crash(deployment: Deployment, service: str) -> tuple[str, int]:
    """Kill a container's main process from this machine, as a crash would (`docker kill` counts as
    a deliberate stop, which restart policies leave alone); its id and restart count before."""
    container = deployment.container(service)
    state = deployment.inspect(container)
    os.kill(int(state["State"]["Pid"]), 9)
    return container, int(state["RestartCount"])


# --- 1. health and start order ----------------------------------------------------------------------


def test_every_service_is_healthy_and_the_migration_ran_first(deployment: Deployment) -> None:
    rows = compose_ps(deployment)
    first_up = deployment.notes["first_up"]
    assert set(LONG_RUNNING) <= set(rows), (rows, first_up.stdout, first_up.stderr)
    for service in LONG_RUNNING:
        (row,) = rows[service]
        assert (row["State"], row["Health"]) == ("running", "healthy"), (service, row)
    (migrate,) = rows["migrate"]
    assert (migrate["State"], migrate["ExitCode"]) == ("exited", 0), migrate
    finished = deployment.inspect(migrate["ID"])["State"]["FinishedAt"]
    for service in APP:
        started = deployment.inspect(rows[service][0]["ID"])["State"]["StartedAt"]
        assert finished < started, (service, finished, started)  # RFC 3339 in UTC: text order is time order
    with deployment.public() as client:
        health = checked_json(client.get("/health"), 200)
    assert health["status"] == "ok", health
    assert "healthy" in readme(deployment, "ps").stdout
    status = readme(deployment, "status")
    assert "schema" in status.stdout + status.stderr
    # Every container logs JSON lines, Traefik too.
    for line in deployment.compose("logs", "--no-color", "--no-log-prefix", "traefik").stdout.splitlines():
        assert json.loads(line)["level"], line


def test_the_jobs_stop_at_once(deployment: Deployment) -> None:
    """The backup and maintenance jobs run Python as PID 1: a stop ends them at once, not after
    the engine's ten seconds and a SIGKILL."""
    for service in ("maintenance", "backup"):
        started = time.monotonic()
        deployment.compose("stop", service)
        assert time.monotonic() - started < 5, service
        assert deployment.inspect(deployment.container(service))["State"]["ExitCode"] == 0, service
    deployment.compose("start", "maintenance", "backup")


# --- 12. hardening, read back from the engine ------------------------------------------------------


def test_the_hardening_compose_promises_is_what_the_engine_runs(deployment: Deployment) -> None:
    rows = compose_ps(deployment)
    for service in (*APP, "traefik", "docker-socket-proxy", "db"):
        container = rows[service][0]["ID"]
        state = deployment.inspect(container)
        host = state["HostConfig"]
        capabilities = {
            key: [name.removeprefix("CAP_") for name in host[key] or []] for key in ("CapAdd", "CapDrop")
        }
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), service
        if service != "db":  # the database's entrypoint owns its volume as root, then drops to postgres
            assert capabilities["CapDrop"] == ["ALL"], service
            assert host["ReadonlyRootfs"] is True, service
        pid = int(state["State"]["Pid"])
        uid = host_pid_uid(pid)
        if service in APP:
            assert uid != 0, (service, uid)  # the image's user, or BACKUP_UID for the backup job
            assert state["Config"]["User"] in ("10001:10001", f"{BACKUP_UID}:{BACKUP_UID}"), service
        if service == "backup":
            assert uid == BACKUP_UID
        if service == "db":
            assert uid != 0  # the server itself, PID 1 after the entrypoint
        if service == "traefik":
            assert capabilities["CapAdd"] == ["NET_BIND_SERVICE"]
        mounts = state["Mounts"]
        sockets = [mount for mount in mounts if mount.get("Source") == "/var/run/docker.sock"]
        if service == "docker-socket-proxy":
            assert len(sockets) == 1, sockets
            assert sockets[0]["RW"] is False, sockets
        else:
            assert sockets == [], service
        published = {
            port: sorted({binding["HostIp"] for binding in bindings or []})
            for port, bindings in (state["NetworkSettings"]["Ports"] or {}).items()
            if bindings
        }
        if service == "traefik":
            assert set(published) == {"80/tcp", "443/tcp", "8081/tcp", "8082/tcp"}, published
            assert published["8081/tcp"] == ["127.0.0.1"]
            assert published["8082/tcp"] == ["127.0.0.1"]
        else:
            assert published == {}, (service, published)


# --- 3. network isolation ----------------------------------------------------------------------------


def _address_on(state: dict[str, Any], network: str) -> str:
    for name, settings in state["NetworkSettings"]["Networks"].items():
        if name.endswith(network):
            return str(settings["IPAddress"])
    raise AssertionError(f"not on {network}: {list(state['NetworkSettings']['Networks'])}")


def test_the_networks_keep_the_database_out_of_reach(deployment: Deployment) -> None:
    rows = compose_ps(deployment)
    db, traefik, redirect = (rows[name][0]["ID"] for name in ("db", "traefik", "redirect"))
    db_address = _address_on(deployment.inspect(db), "qr_generator_network")
    traefik_address = _address_on(deployment.inspect(traefik), "traefik_net")
    # The probe works: the services reach PostgreSQL, and PostgreSQL itself.
    assert deployment.probe_tcp(redirect, db_address, 5432)
    assert deployment.probe_tcp(db, "127.0.0.1", 5432)
    # Traefik cannot reach PostgreSQL; PostgreSQL reaches nothing outside its internal network:
    # not Traefik, not this machine's published ports, not the rest of the world.
    assert not deployment.probe_tcp(traefik, db_address, 5432)
    assert not deployment.probe_tcp(db, traefik_address, 80)
    assert not deployment.probe_tcp(db, GATEWAY, deployment.ports.http)
    assert not deployment.probe_tcp(db, "10.213.51.1", deployment.ports.http)


# --- 2. the admin chain with real addresses --------------------------------------------------------


@pytest.mark.skipif(not can_make_namespaces(), reason="network namespaces need root and iproute2")
def test_the_admin_chain_judges_remote_clients_by_their_own_addresses(deployment: Deployment) -> None:
    http = f"http://{OFFICE.host}:{deployment.ports.http}"
    host = {"Host": DOMAIN}
    (created,) = OFFICE.requests(
        {
            "method": "POST",
            "url": f"{http}/api/v1/qr",
            "headers": {**host, "content-type": "application/json"},
            "body": '{"target_url": "https://example.org/office", "title": "From the office"}',
        }
    )
    assert created["status"] == 201, created
    code = json.loads(created["body"])
    deployment.notes["office_code"] = code
    image, redirect, history = OFFICE.requests(
        {"url": f"{http}/api/v1/qr/{code['id']}/image.png?size=300", "headers": host},
        {"url": f"{http}/r/{code['id']}", "headers": host},
        {"url": f"{http}/api/v1/qr/{code['id']}/history", "headers": host},
    )
    assert image["status"] == 200
    assert decode_png(image["body"]) == code["short_url"]
    assert (redirect["status"], redirect["headers"]["location"]) == (302, "https://example.org/office")
    # Traefik (and the management service behind it) saw the office's own address.
    assert json.loads(history["body"])["items"][0]["client_address"] == OFFICE.address

    stranger_http = f"http://{STRANGER.host}:{deployment.ports.http}"
    answers = STRANGER.requests(
        {"url": f"{stranger_http}/api/v1/qr", "headers": host},
        {"url": f"{stranger_http}/console/", "headers": host},
        {"url": f"{stranger_http}/api/v1/qr", "headers": {**host, "X-Forwarded-For": OFFICE.address}},
        {"url": f"{stranger_http}/api/v1/qr", "headers": {**host, "X-Real-Ip": OFFICE.address}},
        {"url": f"{stranger_http}/r/{code['id']}", "headers": host},
    )
    assert [answer["status"] for answer in answers] == [403, 403, 403, 403, 302], answers
    assert json.loads(answers[0]["body"])["error"]["code"] == "forbidden"


def test_the_docker_host_reaches_the_admin_api_only_through_its_loopback_door(deployment: Deployment) -> None:
    """The README's advice, followed: from the Docker host itself, the admin API on 127.0.0.1:8081.
    Its public ports see the host as traefik_net's gateway, as they see every client Docker's proxy
    hands over (IPv6 ones too): refused there."""
    assert '"status":"ok"' in readme(deployment, "host_health").stdout.replace(" ", "")
    assert '"items"' in readme(deployment, "host_api").stdout
    with httpx.Client(timeout=10) as client:
        for url in (
            f"http://127.0.0.1:{deployment.ports.http}/api/v1/qr",
            f"http://[::1]:{deployment.ports.http}/api/v1/qr",
        ):
            if "[::1]" in url and not socket.has_ipv6:
                continue
            try:
                answer = client.get(url, headers={"Host": "127.0.0.1"})
            except httpx.ConnectError:
                assert "[::1]" in url  # no IPv6 on this machine's loopback: nothing published there
                continue
            assert answer.status_code == 403, (url, answer.text)
        # The loopback door is published on IPv4's loopback only.
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://[::1]:{deployment.ports.local_admin}/api/v1/qr")


# --- 4. backups on the host -------------------------------------------------------------------------


def test_backups_land_on_the_host_readable_by_their_owner_alone(deployment: Deployment) -> None:
    if "office_code" not in deployment.notes:
        deployment.notes["office_code"] = create_code(deployment, "https://example.org/office")
    folder = deployment.folder / "backups"

    def archives() -> list[Path]:
        return sorted(folder.glob("qr-*.dump"))

    # The schedule's first archive follows the first code within one interval (14.4 s here).
    found = deployment.wait("an archive in ./backups", archives, timeout=60)
    first = found[0]
    info = first.stat()
    assert (info.st_uid, info.st_gid) == (BACKUP_UID, BACKUP_UID)
    assert info.st_mode & 0o777 == 0o600, oct(info.st_mode)

    def read_as(uid: int) -> subprocess.CompletedProcess[str]:
        """The archive's first bytes read by ``uid`` (in a throwaway container: the test's own
        folders above ./backups are root's alone)."""
        return deployment.run(
            [
                "docker", "run", "--rm", "--user", f"{uid}:{uid}", "-v", f"{folder}:/backups:ro",
                deployment.notes["base_image"], "head", "-c", "5", f"/backups/{first.name}",
            ],
            check=False,
        )  # fmt: skip

    owner, other = read_as(BACKUP_UID), read_as(BACKUP_UID + 1)
    assert owner.returncode == 0, owner
    assert owner.stdout == "PGDMP", owner
    assert other.returncode != 0, other
    assert "Permission denied" in other.stderr, other
    assert first.name in readme(deployment, "ls_backups").stdout
    deployment.notes["first_archive"] = first.name


# --- 2b. the edge without a redirect container ------------------------------------------------------


def test_the_edge_keeps_serving_with_every_redirect_container_stopped(deployment: Deployment) -> None:
    code = deployment.notes["office_code"]
    with PHASES.timed("stop and start the redirect service"):
        deployment.compose("stop", "redirect")
        try:
            with deployment.public() as client, deployment.local_admin() as admin:
                assert checked_json(client.get("/health"), 200)["status"] == "ok"
                assert checked_json(admin.get(f"/api/v1/qr/{code['id']}"), 200)["id"] == code["id"]

                # Until Traefik's Docker provider drops the stopped container (its events, then a
                # reload), the answer is Traefik's own 502 or 503; then the edge's 503 page.
                def unavailable_page() -> httpx.Response | None:
                    answer = client.get(f"/r/{code['id']}")
                    assert answer.status_code in (502, 503), (answer.status_code, answer.text)
                    return answer if answer.headers.get("content-type") == "application/json" else None

                answer = deployment.wait(
                    "the edge's 503 page on /r/", unavailable_page, timeout=30, interval=0.2
                )
                assert answer.headers["retry-after"]
                assert answer.headers["x-frame-options"] == "DENY"
                assert answer.json()["error"]["code"] == "unavailable"
                for _ in range(10):
                    assert client.get(f"/r/{code['id']}").status_code == 503
                page = client.get(f"/r/{code['id']}", headers={"Accept": "text/html"})
                assert page.status_code == 503, page.text
                assert page.text.startswith("<!doctype html>"), page.text
                # The edge's refusal pages come from the management service meanwhile.
                refused = deployment.wait(
                    "a JSON 403 for a stranger's admin request",
                    lambda: client.get("/api/v1/qr", headers={"Host": "127.0.0.1"}).json(),
                    timeout=15,
                )
                assert refused["error"]["code"] == "forbidden"
        finally:
            deployment.compose("start", "redirect")
        wait_healthy(deployment, "redirect")
        wait_redirecting(deployment, code["id"])


# --- 6. crashes under a steady scanner --------------------------------------------------------------


class Scanner:
    """A bounded client through the public port: one GET of /r/{id} every 50 ms, each answer noted
    with its moment; pause() stops it for a while (so that a crash finds no scan in memory)."""

    def __init__(self, deployment: Deployment, code_id: str) -> None:
        self.url = f"http://127.0.0.1:{deployment.ports.http}/r/{code_id}"
        self.answers: list[tuple[float, int]] = []
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                if self._running.is_set():
                    try:
                        status = client.get(
                            self.url, headers={"User-Agent": "Mozilla/5.0 (iPhone)"}
                        ).status_code
                    except httpx.HTTPError:
                        status = 0
                    self.answers.append((time.monotonic(), status))
                time.sleep(0.05)

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    @contextmanager
    def paused(self, seconds: float) -> Iterator[None]:
        """Stopped for ``seconds``, then for the block."""
        self._running.clear()
        time.sleep(seconds)
        try:
            yield
        finally:
            self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def served(self, since: float = 0.0, until: float = float("inf")) -> list[int]:
        return [status for moment, status in self.answers if since <= moment <= until]


@contextmanager
def scanning(deployment: Deployment, code_id: str) -> Iterator[Scanner]:
    scanner = Scanner(deployment, code_id)
    scanner.start()
    try:
        yield scanner
    finally:
        scanner.stop()


def test_each_container_comes_back_after_a_crash_and_no_scan_is_lost(deployment: Deployment) -> None:
    code = create_code(deployment, "https://example.org/steady")  # its every scan from the scanner
    with (
        PHASES.timed("crashes of redirect, management and PostgreSQL"),
        scanning(deployment, code["id"]) as scanner,
    ):
        time.sleep(2)
        # The redirect container: scans flushed first (a crash loses at most the last second).
        with scanner.paused(2.5):
            container, restarts = crash(deployment, "redirect")
        deployment.wait(
            "redirect restarted", lambda: deployment.inspect(container)["RestartCount"] > restarts
        )
        wait_healthy(deployment, "redirect")
        deployment.wait("302 again", lambda: scanner.served()[-1:] == [302], timeout=60)
        # The management container: the admin API comes back, the redirects never stop.
        killed = time.monotonic()
        container, restarts = crash(deployment, "management")
        deployment.wait(
            "management restarted", lambda: deployment.inspect(container)["RestartCount"] > restarts
        )
        wait_healthy(deployment, "management")
        assert set(scanner.served(since=killed)) == {302}
        # PostgreSQL: the cached code keeps redirecting while it is down; its scans wait in memory.
        killed = time.monotonic()
        container, restarts = crash(deployment, "db")
        deployment.wait("db restarted", lambda: deployment.inspect(container)["RestartCount"] > restarts)
        wait_healthy(deployment, "db")
        back = time.monotonic()
        time.sleep(2)
        during = scanner.served(since=killed, until=back)
        assert during, "nothing was served while PostgreSQL was down"
        assert set(during) == {302}, during
    served = scanner.served().count(302)
    assert served > 100, served

    def all_recorded() -> bool:
        recorded = scan_count(deployment, code["id"])
        assert recorded == served, f"{recorded} scans recorded"
        return True

    deployment.wait(f"{served} scans recorded for {served} redirects", all_recorded, timeout=60)
    time.sleep(3)
    assert scan_count(deployment, code["id"]) == served  # and no more: each redirect one scan
    deployment.notes["steady"] = (code, served)


# --- 9. three redirect containers ---------------------------------------------------------------------


def _redirects_answered(deployment: Deployment, container: str) -> float:
    text = deployment.metrics(container, 8001)
    return sum(
        float(value)
        for outcome, value in re.findall(r'^qr_redirect_outcomes_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
        if outcome in ("hit", "miss", "stale")
    )


def test_three_redirect_containers_share_the_public_path_behind_the_chain(deployment: Deployment) -> None:
    code = deployment.notes["office_code"]
    with PHASES.timed("scale the redirect service to three"):
        readme(deployment, "scale", timeout=300)
        wait_healthy(deployment, "redirect", count=3)
    containers = deployment.containers("redirect")
    assert len(containers) == 3
    before = {container: _redirects_answered(deployment, container) for container in containers}

    # Traefik adds a container once its health check passes: wait until all three answer.
    def all_three_answer() -> bool:
        with deployment.public() as client:
            for _ in range(30):
                client.get(f"/r/{code['id']}")
        return all(_redirects_answered(deployment, c) > before[c] for c in containers)

    deployment.wait("each container answering /r/", all_three_answer, timeout=60, interval=1)
    before = {container: _redirects_answered(deployment, container) for container in containers}
    statuses: list[int] = []
    with deployment.public() as client:
        for _ in range(300):
            answer = client.get(f"/r/{code['id']}")
            statuses.append(answer.status_code)
            # The public chain on every answer, whichever container gave it.
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "server" not in answer.headers
    after = {container: _redirects_answered(deployment, container) for container in containers}
    shares = [after[c] - before[c] for c in containers]
    assert all(share > 0 for share in shares), shares
    assert sum(shares) == statuses.count(302), (shares, statuses.count(302))
    assert set(statuses) <= {302, 429}, statuses
    # Its rate limit too: a burst past RATE_LIMIT_BURST (100 here) from one client meets 429.
    import asyncio

    async def burst() -> list[int]:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{deployment.ports.http}", timeout=30
        ) as client:
            answers = await asyncio.gather(*(client.get(f"/r/{code['id']}") for _ in range(600)))
        return [answer.status_code for answer in answers]

    statuses = asyncio.run(burst())
    assert 429 in statuses, statuses
    assert 302 in statuses, statuses
    # No router of the Docker provider's own goes around the chains: the containers' default-rule
    # host names find only the edge's 404, never a service's /metrics.
    with deployment.public() as client:
        for name in ("redirect", f"redirect-{PROJECT}", f"{PROJECT}-redirect-1"):
            answer = client.get("/metrics", headers={"Host": name})
            assert answer.status_code == 404, (name, answer.text[:200])
            assert "qr_" not in answer.text, (name, answer.text[:200])


# --- 10. Prometheus ---------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_target_and_loads_the_alert_rules(deployment: Deployment) -> None:
    with PHASES.timed("Prometheus up, every target scraped"):
        readme(deployment, "monitoring")
        api = f"http://127.0.0.1:{deployment.ports.prometheus}/api/v1"

        def targets_up() -> list[dict[str, Any]] | None:
            answer = httpx.get(f"{api}/targets", timeout=5)
            if answer.status_code != 200:  # still starting
                return None
            active = answer.json()["data"]["activeTargets"]
            jobs = [target["labels"]["job"] for target in active]
            if sorted(jobs) != ["management", "redirect", "redirect", "redirect", "traefik"]:
                return None
            return active if all(target["health"] == "up" for target in active) else None

        try:
            active = deployment.wait("every target up", targets_up, timeout=120, interval=2)
            up = httpx.get(f"{api}/query", params={"query": "up"}, timeout=5).json()["data"]["result"]
            assert len(up) == 5, up
            assert {sample["value"][1] for sample in up} == {"1"}, up
            assert len({target["labels"]["instance"] for target in active}) == 5
            groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
            names = {rule["name"] for group in groups for rule in group["rules"]}
            declared = set(
                re.findall(
                    r"^\s+- alert: (\w+)$",
                    (deployment.folder / "infra/prometheus/alerts.yml").read_text(),
                    re.M,
                )
            )
            assert declared
            assert declared <= names, (declared, names)
            # Hardened as the rest: no capabilities, no setuid gains, read-only, not root.
            state = deployment.inspect(deployment.container("prometheus"))
            assert [c.removeprefix("CAP_") for c in state["HostConfig"]["CapDrop"]] == ["ALL"]
            assert "no-new-privileges:true" in state["HostConfig"]["SecurityOpt"]
            assert state["HostConfig"]["ReadonlyRootfs"] is True
            assert host_pid_uid(int(state["State"]["Pid"])) != 0
        finally:
            # Stopped and removed: a plain `down` leaves the containers of a profile it is not given.
            deployment.compose("--profile", "monitoring", "rm", "--stop", "--force", "prometheus")


# --- 8. the update procedure -----------------------------------------------------------------------------


def test_the_update_procedure_rebuilds_and_loses_nothing(deployment: Deployment) -> None:
    code = deployment.notes["office_code"]
    steady, served = deployment.notes["steady"]
    before = settled_codes(deployment)
    old_image = deployment.inspect(deployment.container("management"))["Image"]
    marker = f"# build {uuid.uuid4().hex}"
    with (deployment.folder / "shared" / "__init__.py").open("a") as module:
        module.write(f"{marker}\n")  # a change without a migration
    with PHASES.timed("update: backup, build, up, migrate twice"):
        archive = readme(deployment, "backup").stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"/backups/qr-\d{8}T\d{6}_\d{6}Z\.dump", archive), archive
        readme(deployment, "build", timeout=900)
        readme(deployment, "up", timeout=400)
        for _ in range(2):
            assert "schema at revision" in readme(deployment, "migrate").stdout
    container = deployment.container("management")
    assert deployment.inspect(container)["Image"] != old_image
    installed = deployment.in_container(
        container, "import shared, pathlib; print(pathlib.Path(shared.__file__).read_text())"
    )
    assert marker in installed
    same_codes(before, settled_codes(deployment))
    with deployment.local_admin() as admin:
        image = admin.get(f"/api/v1/qr/{code['id']}/image.png", params={"size": 300})
    assert image.status_code == 200
    assert decode_png(image.content) == code["short_url"]
    assert scan_count(deployment, steady["id"]) == served
    wait_redirecting(deployment, code["id"])


# --- 5. disaster recovery ---------------------------------------------------------------------------------


def test_the_disaster_recovery_drill_brings_everything_back(deployment: Deployment) -> None:
    code = deployment.notes["office_code"]
    steady, served = deployment.notes["steady"]
    folder = deployment.folder / "backups"
    # Retention: the first archive of the schedule is long gone, the two newest are kept.
    archives = sorted(folder.glob("qr-*.dump"))
    assert deployment.notes["first_archive"] not in [path.name for path in archives]
    assert len(archives) == 2, archives
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in archives)
    # The newest archive holds everything so far: one the schedule takes after the last scan.
    codes = settled_codes(deployment)
    with deployment.local_admin() as admin:
        history = checked_json(admin.get(f"/api/v1/qr/{code['id']}/history"), 200)["items"]
    settled = time.time()
    deployment.wait(
        "a scheduled archive newer than the last scans",
        lambda: max(p.stat().st_mtime for p in folder.glob("qr-*.dump")) > settled + 1,
        timeout=60,
    )
    with PHASES.timed("disaster recovery: down, volume rm, up, restore, migrate"):
        readme(deployment, "down", timeout=300)
        readme(deployment, "volume_rm")
        assert deployment.inspect_volume("postgres_data") is None
        readme(deployment, "up", timeout=400)
        with deployment.local_admin() as admin:
            assert checked_json(admin.get("/api/v1/qr"), 200)["items"] == []  # a new, empty database
        restored = readme(deployment, "restore", timeout=300)
        assert "restored /backups/qr-" in restored.stdout, restored.stdout + restored.stderr
        assert "schema at revision" in readme(deployment, "migrate").stdout
    same_codes(codes, settled_codes(deployment))
    with deployment.local_admin() as admin:
        assert checked_json(admin.get(f"/api/v1/qr/{code['id']}/history"), 200)["items"] == history
    assert scan_count(deployment, steady["id"]) == served
    wait_redirecting(deployment, code["id"])


# --- 11 and 7. production certificates, then down and up ----------------------------------------------------


def served_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=DOMAIN) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def issued_by_pebble(port: int) -> x509.Certificate | None:
    certificate = served_certificate(port)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return certificate if DOMAIN in names.get_values_for_type(x509.DNSName) else None


def volume_files(deployment: Deployment, volume: str) -> list[str]:
    listing = deployment.run(
        [
            "docker", "run", "--rm", "-v", f"{PROJECT}_{volume}:/volume:ro", deployment.notes["base_image"],
            "find", "/volume", "-type", "f",
        ]
    )  # fmt: skip
    return sorted(listing.stdout.split())


def redirects_over_https(deployment: Deployment, code_id: str) -> bool:
    with httpx.Client(timeout=10, verify=False) as secure:  # Pebble's chain is its own
        # SNI and Host are the domain's, the address this machine's published port.
        answer = secure.get(
            f"https://127.0.0.1:{deployment.ports.https}/r/{code_id}",
            headers={"Host": DOMAIN},
            extensions={"sni_hostname": DOMAIN},
        )
    if answer.status_code == 302:
        assert "max-age" in answer.headers["strict-transport-security"]
    return answer.status_code == 302


def test_production_https_then_everything_kept_over_down_and_up(deployment: Deployment) -> None:
    """With Pebble: the production static file, a certificate from the ACME CA, HTTP's 301. Then,
    with or without it: `down` and `up -d` keep the codes, the stored images and the certificate."""
    code = deployment.notes["office_code"]
    certificate = None
    if "pebble_directory" in deployment.notes:
        static = deployment.run(
            [
                "qr-manage",
                "edge-config",
                "--production",
                "--acme-ca-server",
                deployment.notes["pebble_directory"],
            ]
        ).stdout
        (deployment.folder / "infra" / "traefik" / "traefik.pebble.yml").write_text(static)
        set_env_values(
            deployment.folder / ".env",
            {"EDGE_STATIC_FILE": "traefik.pebble.yml", "EDGE_ACME_DOMAINS": DOMAIN},
        )
        with PHASES.timed("production: the certificate from the ACME CA"):
            readme(deployment, "up", timeout=400)
            certificate = deployment.wait(
                "a certificate for the domain", lambda: issued_by_pebble(deployment.ports.https), timeout=90
            )
        assert "Pebble" in certificate.issuer.rfc4514_string()
        with httpx.Client(timeout=10) as client:
            moved = client.get(
                f"http://127.0.0.1:{deployment.ports.http}/r/{code['id']}", headers={"Host": DOMAIN}
            )
        assert moved.status_code == 301, moved.headers
        assert moved.headers["location"].startswith(f"https://{DOMAIN}"), moved.headers
        assert redirects_over_https(deployment, code["id"])
        assert "/volume/acme.json" in volume_files(deployment, "traefik-certificates")
    with deployment.local_admin() as admin:
        assert admin.get(f"/api/v1/qr/{code['id']}/image.svg").status_code == 200
    codes = settled_codes(deployment)
    stored_images = volume_files(deployment, "qr_data")
    assert stored_images, "no rendered image in the qr_data volume"

    with PHASES.timed("down, then up -d --wait"):
        readme(deployment, "down", timeout=300)
        readme(deployment, "up", timeout=400)
    assert set(stored_images) <= set(volume_files(deployment, "qr_data"))
    same_codes(codes, settled_codes(deployment))
    if certificate is None:
        wait_redirecting(deployment, code["id"])
        pytest.skip(
            "pebble not installed (apt-get install pebble): codes and images kept; no certificate to keep"
        )
    kept = deployment.wait(
        "the stored certificate served", lambda: issued_by_pebble(deployment.ports.https), timeout=60
    )
    assert kept.serial_number == certificate.serial_number  # kept, not asked for again
    deployment.wait(
        "/r/ redirecting over HTTPS", lambda: redirects_over_https(deployment, code["id"]), timeout=60
    )
