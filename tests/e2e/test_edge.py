"""The edge's promises, each against the real Traefik binary with the project's configuration.

Most run through the session's stack; the ones that need other settings (low rate limits, the
production profile, a load balancer in front, broken backends) start a Traefik of their own, with
the same dynamic file, in front of the session's services or of a backend that misbehaves.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.ops import edge
from services.ops.processes import Child
from tests.conftest import free_port
from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

OUTSIDER = "127.0.0.2"
NO_GRACE = edge.EdgeOptions(
    grace_seconds=0
)  # tests' own edges stop at once  # outside the default allowlist (127.0.0.1/32, ::1/128)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_get(
    port: int, target: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> Answer:
    """One GET with the request target sent exactly as given (HTTP clients normalise dot segments
    and encodings away, which would test the client instead of the edge)."""
    headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    lines = [f"GET {target} HTTP/1.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), parsed, body)


def client_from(base_url: str, source: str, *, verify: bool = True) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source, verify=verify)  # the transport's verify counts
    return httpx.Client(base_url=base_url, timeout=10, transport=transport)


@pytest.fixture(scope="module")
def code_id(running_stack: RunningStack) -> str:
    with httpx.Client(base_url=running_stack.edge, timeout=10) as admin:
        response = admin.post("/api/v1/qr", json={"target_url": "https://example.org/edge"})
        assert response.status_code == 201
        return str(response.json()["id"])


# -- allowlist and path tricks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/r/../api/v1/qr",
        "/r/%2e%2e/api/v1/qr",
        "/r/%2E%2E/api/v1/qr",
        "/r/..%2fapi/v1/qr",
        "/r/%2e%2e%2fapi%2fv1%2fqr",
        "/r/./../api/v1/qr",
        "/r//../api/v1/qr",
        "//api/v1/qr",
        "/r/%2e%2e/%2e%2e/api/v1/qr",
        "/api/v1/%71r",
        "/r/..\\api/v1/qr",
    ],
)
def test_no_path_trick_reaches_the_api_from_outside(running_stack: RunningStack, target: str) -> None:
    answer = raw_get(running_stack.settings.http_port, target, source=OUTSIDER)
    assert answer.status in (400, 403, 404), (target, answer.status)
    assert b'"items"' not in answer.body  # never the list of codes


def test_forged_forwarding_headers_change_nothing(running_stack: RunningStack) -> None:
    port = running_stack.settings.http_port
    for header, value in (
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Real-Ip", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1"),
        ("X_Forwarded_For", "127.0.0.1"),
        ("X-Forwarded-For", "127.0.0.1, 127.0.0.1"),
    ):
        assert raw_get(port, "/api/v1/qr", source=OUTSIDER, headers={header: value}).status == 403, header


def test_a_malformed_id_from_outside_gets_the_redirect_services_404(running_stack: RunningStack) -> None:
    for target in ("/r/a", "/r/a%2Fb", "/r/%3Cb%3E", "/r/" + "x" * 300):
        answer = raw_get(running_stack.settings.http_port, target, source=OUTSIDER)
        assert answer.status == 404, target
        assert answer.body.startswith(b"Not found"), answer.body  # the service's page, not Traefik's
        assert "x-request-id" in answer.headers


# -- host names, metrics, compression ----------------------------------------------------------------


def test_a_foreign_host_name_gets_no_admin_answer(running_stack: RunningStack, code_id: str) -> None:
    port = running_stack.settings.http_port
    for host in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "LOCALHOST.", ""):
        answer = raw_get(port, "/api/v1/qr", headers={"Host": host})
        # Traefik has no router for it (404), or the service refuses it in turn (421).
        assert answer.status in (400, 404, 421), (host, answer.status)
        assert b'"items"' not in answer.body
    # The admin host names work with any port and case; the public paths answer any host.
    assert raw_get(port, "/api/v1/qr", headers={"Host": f"LocalHost:{port}"}).status == 200
    assert raw_get(port, f"/r/{code_id}", headers={"Host": "qr.example.org"}).status == 302
    assert raw_get(port, "/health", headers={"Host": "qr.example.org"}).status == 200


def test_the_services_metrics_are_not_routed(running_stack: RunningStack) -> None:
    port = running_stack.settings.http_port
    assert raw_get(port, "/metrics").status == 404
    assert raw_get(port, "/r/../metrics").status == 404
    # Traefik's own metrics are on its internal entrypoint only.
    with httpx.Client(timeout=10) as client:
        assert (
            client.get(f"http://127.0.0.1:{running_stack.settings.edge_admin_port}/metrics").status_code
            == 200
        )
        assert client.get(f"{running_stack.edge}/ping").status_code != 200


def test_large_json_is_compressed_images_are_not(running_stack: RunningStack, code_id: str) -> None:
    with httpx.Client(base_url=running_stack.edge, timeout=10) as admin:
        for n in range(15):
            admin.post("/api/v1/qr", json={"target_url": f"https://example.org/bulk/{n}", "title": "x" * 40})
        raw = admin.get(
            "/api/v1/qr", params={"limit": 50}, headers={"Accept-Encoding": "gzip"}, extensions={}
        )
        assert raw.status_code == 200
        assert raw.headers["content-encoding"] == "gzip"
        assert len(raw.json()["items"]) >= 15  # httpx decoded it: the gzip was valid
        small = admin.get("/api/v1/qr/unknown123", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers  # under 1 KiB
        image = admin.get(f"/api/v1/qr/{code_id}/image.png", headers={"Accept-Encoding": "gzip"})
        assert image.headers["content-type"] == "image/png"
        assert "content-encoding" not in image.headers
    # And the bytes on the wire really are gzip.
    answer = raw_get(
        running_stack.settings.http_port, "/api/v1/qr?limit=50", headers={"Accept-Encoding": "gzip"}
    )
    body = answer.body
    if answer.headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    assert gzip.decompress(body).startswith(b"{")


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


# -- security headers -------------------------------------------------------------------------------


def test_security_headers_over_https(running_stack: RunningStack, code_id: str) -> None:
    verify = ssl.create_default_context(cafile=running_stack.certificate)
    with httpx.Client(base_url=running_stack.edge_tls, verify=verify, timeout=10) as tls:
        answers = {
            "redirect": tls.get(f"/r/{code_id}"),
            "refusal": tls.get("/r/unknown123"),
            "health": tls.get("/health"),
            "admin": tls.get("/api/v1/qr"),
            "admin error": tls.get("/api/v1/qr/unknown123"),
        }
    for name, response in answers.items():
        headers = response.headers
        assert headers["strict-transport-security"] == "max-age=31536000", name
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["referrer-policy"] in ("no-referrer", "same-origin"), name
        assert "server" not in headers, name
        assert "x-request-id" in headers, name
    assert answers["redirect"].status_code == 302
    assert answers["admin"].headers["referrer-policy"] == "same-origin"
    assert answers["redirect"].headers["referrer-policy"] == "no-referrer"
    for name in ("refusal", "health", "admin", "admin error"):
        assert "default-src 'none'" in answers[name].headers["content-security-policy"], name
    # Plain HTTP gets no HSTS (a browser ignores it there anyway).
    with httpx.Client(base_url=running_stack.edge, timeout=10) as plain:
        assert "strict-transport-security" not in plain.get(f"/r/{code_id}").headers


# -- a Traefik of its own -----------------------------------------------------------------------------


@dataclass
class Edge:
    child: Child
    http: str
    https: str
    admin: str


@contextlib.contextmanager
def own_edge(
    tmp_path: Path,
    running_stack: RunningStack,
    options: edge.EdgeOptions = NO_GRACE,
    *,
    redirect: str | None = None,
    management: str | None = None,
    **environ: str,
) -> Iterator[Edge]:
    s = running_stack.settings
    ports = {free_port() for _ in range(3)}
    while len(ports) < 3:
        ports.add(free_port())
    http, https, admin = sorted(ports)
    addresses = edge.EdgeAddresses(
        http=f"127.0.0.1:{http}", https=f"127.0.0.1:{https}", admin=f"127.0.0.1:{admin}"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        **s.edge_environment(),
        "REDIRECT_UPSTREAM": redirect or f"http://127.0.0.1:{s.redirect_port}",
        "MANAGEMENT_UPSTREAM": management or f"http://127.0.0.1:{s.management_port}",
        "EDGE_TLS_CERT": str(running_stack.certificate),
        "EDGE_TLS_KEY": str(running_stack.certificate.with_name("key.pem")),
        **environ,
    }
    child = edge.launch(tmp_path / "traefik", addresses, env, options)
    try:
        yield Edge(
            child, f"http://127.0.0.1:{http}", f"https://127.0.0.1:{https}", f"http://127.0.0.1:{admin}"
        )
    finally:
        child.stop()


def wait_routed(url: str, status: int, *, source: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Routers load a moment after Traefik answers its ping."""
    deadline = time.monotonic() + timeout
    with client_from("", source, verify=False) as client:
        while True:
            if client.get(url).status_code == status:
                return
            assert time.monotonic() < deadline, f"{url} never answered {status}"
            time.sleep(0.05)


def test_one_client_past_its_limit_gets_429_while_another_is_served(
    tmp_path: Path, running_stack: RunningStack, code_id: str
) -> None:
    with own_edge(tmp_path, running_stack, RATE_LIMIT_AVERAGE="5", RATE_LIMIT_BURST="5") as own:
        wait_routed(f"{own.http}/health", 200, source="127.0.0.3")
        statuses, refusals = [], []
        with client_from(own.http, "127.0.0.1") as greedy:
            for n in range(30):
                # A forged address per request does not buy a fresh bucket.
                response = greedy.get(f"/r/{code_id}", headers={"X-Forwarded-For": f"198.51.100.{n}"})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    refusals.append(response)
        assert set(statuses) == {302, 429}, statuses
        assert 5 <= statuses.count(302) <= 12, statuses  # the burst, and what refilled meanwhile
        for refusal in refusals:
            assert int(refusal.headers["retry-after"]) >= 1
            assert refusal.headers["x-content-type-options"] == "nosniff"  # headers come first
        with client_from(own.http, OUTSIDER) as other:
            assert other.get(f"/r/{code_id}").status_code == 302


def test_the_admin_chain_has_its_own_limit(tmp_path: Path, running_stack: RunningStack) -> None:
    with own_edge(tmp_path, running_stack, ADMIN_RATE_LIMIT_AVERAGE="2", ADMIN_RATE_LIMIT_BURST="2") as own:
        wait_routed(f"{own.http}/health", 200)
        with client_from(own.http, "127.0.0.1") as admin:
            statuses = [admin.get("/api/v1/qr", params={"limit": 1}).status_code for _ in range(10)]
            assert 429 in statuses
            assert statuses[0] == 200
            assert admin.get("/health").status_code == 200  # the public chain's bucket is another


def test_the_production_profile_sends_http_to_https(
    tmp_path: Path, running_stack: RunningStack, code_id: str
) -> None:
    closed = free_port()
    options = edge.EdgeOptions(
        https_only=True,
        grace_seconds=0,
        acme_storage=str(tmp_path / "acme.json"),
        acme_ca_server=f"https://127.0.0.1:{closed}/directory",  # never the real Let's Encrypt in a test
    )
    with own_edge(tmp_path, running_stack, options, EDGE_ACME_DOMAINS="qr.example.test") as own:
        wait_routed(f"{own.https}/health", 200)
        with httpx.Client(timeout=10) as client:
            moved = client.get(f"{own.http}/r/{code_id}?utm=1")
            assert moved.status_code == 301
            assert moved.headers["location"] == f"{own.https}/r/{code_id}?utm=1"
        verify = ssl.create_default_context(cafile=running_stack.certificate)
        with httpx.Client(base_url=own.https, verify=verify, timeout=10) as tls:
            # Until Let's Encrypt answers, the configured certificate is served.
            scanned = tls.get(f"/r/{code_id}")
            assert scanned.status_code == 302
            assert scanned.headers["strict-transport-security"] == "max-age=31536000"


def test_a_load_balancer_in_front_is_believed_and_only_it(
    tmp_path: Path, running_stack: RunningStack, code_id: str
) -> None:
    balancer = "127.0.0.3"
    options = edge.EdgeOptions(trusted_proxies=(f"{balancer}/32",), grace_seconds=0)
    with own_edge(
        tmp_path,
        running_stack,
        options,
        EDGE_TRUSTED_PROXIES=f"{balancer}/32",
        RATE_LIMIT_AVERAGE="3",
        RATE_LIMIT_BURST="3",
    ) as own:
        wait_routed(f"{own.http}/health", 200, source=balancer)
        port = int(own.http.rsplit(":", 1)[1])

        def admin_from(source: str, forwarded_for: str | None) -> Answer:
            headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
            return raw_get(port, "/api/v1/qr?limit=1", source=source, headers=headers)

        # Traefik's allowlist judges the client the balancer names; what passes reaches the service
        # (which does not trust the balancer here, so it may refuse in turn: its own, second rule).
        passed = admin_from(balancer, "127.0.0.1")
        assert passed.headers["content-type"] == "application/json"
        refused = admin_from(balancer, "203.0.113.9")
        assert refused.status == 403
        assert json.loads(refused.body)["error"]["message"].endswith("(ADMIN_ALLOWLIST)")  # the edge's
        assert admin_from(balancer, None).status == 403  # no client named: fail closed
        assert admin_from(OUTSIDER, "127.0.0.1").status == 403  # not the balancer: header dropped

        # The rate limit buckets the forwarded clients apart.
        first = [
            raw_get(
                port, f"/r/{code_id}", source=balancer, headers={"X-Forwarded-For": "198.51.100.1"}
            ).status
            for _ in range(10)
        ]
        assert 429 in first
        second = raw_get(port, f"/r/{code_id}", source=balancer, headers={"X-Forwarded-For": "198.51.100.2"})
        assert second.status == 302


# -- broken backends --------------------------------------------------------------------------------


@contextlib.contextmanager
def silent_backend() -> Iterator[str]:
    """Accepts connections and reads requests, never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_a_hung_backend_gives_504_in_time_a_down_one_fails_at_once(
    tmp_path: Path, running_stack: RunningStack
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with (
        silent_backend() as hung,
        own_edge(
            tmp_path, running_stack, redirect=hung, management=closed, REDIRECT_BACKEND_TIMEOUT="1"
        ) as own,
        httpx.Client(base_url=own.http, timeout=30) as client,
    ):
        deadline = time.monotonic() + 10
        while client.get("/health").status_code == 404:  # until the routers are loaded
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        down = client.get("/health")
        assert down.status_code in (502, 503)  # refused at once, or already out by its health check
        # (its page comes from the redirect service, hung here too: a second's wait for nothing)
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        response = client.get("/r/anything12")
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert 0.9 < elapsed < 2.5, elapsed  # REDIRECT_BACKEND_TIMEOUT, not a hang


def test_on_stop_ping_turns_503_while_requests_are_still_served(
    tmp_path: Path, running_stack: RunningStack, code_id: str
) -> None:
    with own_edge(tmp_path, running_stack, edge.EdgeOptions(grace_seconds=2)) as own:
        wait_routed(f"{own.http}/health", 200)
        with httpx.Client(timeout=5) as client:
            assert client.get(f"{own.admin}/ping").status_code == 200
            own.child.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            deadline = stopping + 1.0
            while client.get(f"{own.admin}/ping").status_code != 503:
                assert time.monotonic() < deadline, "ping never turned 503"
                time.sleep(0.02)
            assert client.get(f"{own.http}/r/{code_id}").status_code == 302  # still served
        own.child.process.wait(timeout=15)
        assert time.monotonic() - stopping >= 1.5  # it waited out the grace period


@pytest.mark.slow
def test_with_the_shipped_timeouts_a_hung_backend_gets_504_never_a_closed_connection(
    tmp_path: Path, running_stack: RunningStack
) -> None:
    """The shipped defaults, not short test values: each backend's timeout (5 s, 30 s) is clearly
    below the longest the edge lets a backend keep a client waiting (50 s)."""
    # The session's stack runs with the defaults, and its own edges take its settings.
    assert running_stack.settings.backend_timeouts == {
        "REDIRECT_BACKEND_TIMEOUT": 5,
        "MANAGEMENT_BACKEND_TIMEOUT": 30,
    }
    with (
        silent_backend() as hung,
        own_edge(tmp_path, running_stack, management=hung) as own,
        httpx.Client(base_url=own.http, timeout=90) as client,
    ):
        wait_routed(f"{own.http}/r/unknown123", 404)
        started = time.monotonic()
        response = client.get("/api/v1/qr")
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert 29 < elapsed < 35, elapsed  # MANAGEMENT_BACKEND_TIMEOUT's default, 30 s
        assert response.json()["error"]["code"] == "gateway_timeout"  # the edge's page, as JSON
        assert response.headers["x-content-type-options"] == "nosniff"
    with (
        silent_backend() as hung,
        own_edge(tmp_path / "second", running_stack, redirect=hung) as own,
        httpx.Client(base_url=own.http, timeout=90) as client,
    ):
        wait_routed(f"{own.http}/health", 200)
        started = time.monotonic()
        assert client.get("/r/anything12").status_code == 504
        assert 4.5 < time.monotonic() - started < 8  # REDIRECT_BACKEND_TIMEOUT's default, 5 s


# -- the edge's own answers -------------------------------------------------------------------------

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


def _assert_edge_json(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body)["error"]["code"] == code
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value, name
    assert "referrer-policy" in answer.headers
    assert "server" not in answer.headers


def test_the_edges_refusals_are_json_with_the_security_headers(running_stack: RunningStack) -> None:
    port = running_stack.settings.http_port
    _assert_edge_json(raw_get(port, "/api/v1/qr", source=OUTSIDER), 403, "forbidden")
    _assert_edge_json(raw_get(port, "/api/v1/qr", headers={"Host": "evil.example"}), 404, "not_found")
    _assert_edge_json(raw_get(port, "/metrics"), 404, "not_found")
    # A browser asking for a page gets one; an API path stays JSON for it too.
    page = raw_get(port, "/", source=OUTSIDER, headers={"Accept": "text/html,*/*"})
    assert page.status == 403
    assert page.headers["content-type"].startswith("text/html")
    assert b"<h1>Forbidden</h1>" in page.body
    assert page.headers["content-security-policy"] == "default-src 'none'"
    api = raw_get(port, "/api/v1/qr", source=OUTSIDER, headers={"Accept": "text/html,*/*"})
    assert api.headers["content-type"] == "application/json"
    # Over HTTPS the refusals carry HSTS like every other answer.
    verify = ssl.create_default_context(cafile=running_stack.certificate)
    with client_from(running_stack.edge_tls, OUTSIDER, verify=verify) as tls:
        refused = tls.get("/api/v1/qr")
        assert refused.status_code == 403
        assert refused.headers["strict-transport-security"] == "max-age=31536000"


def test_a_rate_limited_admin_client_gets_json_429_with_retry_after(
    tmp_path: Path, running_stack: RunningStack
) -> None:
    with own_edge(tmp_path, running_stack, ADMIN_RATE_LIMIT_AVERAGE="2", ADMIN_RATE_LIMIT_BURST="2") as own:
        wait_routed(f"{own.http}/health", 200)
        port = int(own.http.rsplit(":", 1)[1])
        answers = [raw_get(port, "/api/v1/qr?limit=1") for _ in range(8)]
        limited = [answer for answer in answers if answer.status == 429]
        assert limited, [answer.status for answer in answers]
        for answer in limited:
            _assert_edge_json(answer, 429, "too_many_requests")
            assert int(answer.headers["retry-after"]) >= 1


SSLYZE = [sys.executable, "-m", "sslyze"]


def test_tls_meets_mozillas_intermediate_profile_but_for_the_self_signed_path(
    running_stack: RunningStack,
) -> None:
    result = subprocess.run(
        [*SSLYZE, "--mozilla_config=intermediate", f"127.0.0.1:{running_stack.settings.https_port}"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = result.stdout.partition("COMPLIANCE AGAINST TLS CONFIGURATION")[2]
    assert report, result.stdout[-2000:] + result.stderr[-2000:]
    failures = {
        line.strip()[2:].split(":", 1)[0] for line in report.splitlines() if line.strip().startswith("* ")
    }
    assert failures <= {"certificate_path_validation"}, report  # a local self-signed certificate


def test_the_edges_pages_come_from_whichever_service_is_up(
    tmp_path: Path, running_stack: RunningStack
) -> None:
    """The refusal pages are the management service's, and the redirect service's while that is
    down: a refusal keeps its JSON page with either service stopped."""
    closed = f"http://127.0.0.1:{free_port()}"
    with own_edge(tmp_path / "no-redirect", running_stack, redirect=closed) as own:
        wait_routed(f"{own.http}/health", 200)
        port = int(own.http.rsplit(":", 1)[1])
        _assert_edge_json(raw_get(port, "/api/v1/qr", source=OUTSIDER), 403, "forbidden")
        _assert_edge_json(raw_get(port, "/metrics"), 404, "not_found")
    with own_edge(tmp_path / "no-management", running_stack, management=closed) as own:
        wait_routed(f"{own.http}/r/unknown123", 404)
        port = int(own.http.rsplit(":", 1)[1])
        deadline = time.monotonic() + 10
        while (answer := raw_get(port, "/api/v1/qr")).headers.get("content-type") != "application/json":
            assert answer.status in (502, 503), answer.status  # until the health check notices
            assert time.monotonic() < deadline, answer
            time.sleep(0.2)
        _assert_edge_json(answer, 502, "bad_gateway")


def test_request_headers_past_the_edges_limit_get_431(running_stack: RunningStack, code_id: str) -> None:
    port = running_stack.settings.http_port
    assert raw_get(port, f"/r/{code_id}", headers={"User-Agent": "x" * 16_000}).status == 302
    assert (
        raw_get(port, f"/r/{code_id}", headers={"User-Agent": "x" * (edge.MAX_HEADER_BYTES + 5000)}).status
        == 431
    )
    assert raw_get(port, "/api/v1/qr", headers={"Cookie": "a=" + "x" * 40_000}).status == 431


def test_traefik_logs_json_lines(running_stack: RunningStack) -> None:
    static = (running_stack.settings.ops.var_dir / "traefik" / "traefik.yml").read_text()
    assert "format: json" in static.split("entryPoints:")[0]
    for name in edge.STATIC_FILES:
        assert "  format: json\n" in (edge.INFRA_DIR / name).read_text(), name


def test_a_services_own_403_keeps_its_message_through_the_edge(running_stack: RunningStack) -> None:
    """The allowlist refuses with a status of its own that the edge turns into its 403 page; a 403
    from the service itself (a request another site's page made) passes with its own reason."""
    port = running_stack.settings.http_port
    refused = raw_get(port, "/api/v1/qr", source=OUTSIDER)
    _assert_edge_json(refused, 403, "forbidden")
    assert "ADMIN_ALLOWLIST" in json.loads(refused.body)["error"]["message"]
    cross_site = raw_get(port, "/api/v1/qr?limit=1", headers={"Sec-Fetch-Site": "cross-site"})
    _assert_edge_json(cross_site, 403, "forbidden")
    assert "another site" in json.loads(cross_site.body)["error"]["message"]
