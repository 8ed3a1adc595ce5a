"""Bodies through the edge: a JSON 413 every time past a limit, 10,000 codes in one request."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e

TRIES = 20


def _title_body(size: int) -> bytes:
    return b'{"target_url": "https://example.org/", "title": "' + b"x" * size + b'"}'


def _statuses(url: str, body: bytes, content_type: str, method: str = "POST") -> list[str]:
    """Each answer's status, with whether it is the API's JSON error (or what went wrong instead)."""
    seen = []
    with httpx.Client(timeout=30) as client:
        for _ in range(TRIES):
            try:
                response = client.request(method, url, content=body, headers={"content-type": content_type})
            except httpx.TransportError as exc:
                seen.append(type(exc).__name__)
                continue
            kind = response.headers.get("content-type", "")
            code = response.json()["error"]["code"] if kind.startswith("application/json") else kind
            seen.append(f"{response.status_code} {code}")
    return seen


@pytest.mark.parametrize(
    ("path", "method", "body", "content_type"),
    [
        # Past the edge's limit: the edge answers itself, before the service sees a byte.
        ("/api/v1/qr", "POST", _title_body(3_000_000), "application/json"),
        ("/api/v1/qr/edge-bodies/logo", "PUT", b"\x89PNG" + b"\x00" * 1_600_000, "image/png"),
        ("/api/v1/qr/bulk", "POST", b"target_url\n" + b"https://example.org/\n" * 900_000, "text/csv"),
        # Under the edge's limit, past the route's own: the service answers, having read it all.
        ("/api/v1/qr", "POST", _title_body(300_000), "application/json"),
    ],
    ids=["json-3MB", "logo-1.6MB", "bulk-18MB", "json-300kB"],
)
def test_a_body_past_its_limit_gets_a_json_413_every_time_through_the_edge(
    running_stack: RunningStack, path: str, method: str, body: bytes, content_type: str
) -> None:
    with httpx.Client(base_url=running_stack.edge, timeout=10) as client:
        if client.get("/api/v1/qr/edge-bodies").status_code == 404:
            client.post("/api/v1/qr", json={"target_url": "https://example.org/", "slug": "edge-bodies"})
    seen = _statuses(running_stack.edge + path, body, content_type, method)
    assert seen == ["413 payload_too_large"] * TRIES


def test_directly_on_the_service_too(running_stack: RunningStack) -> None:
    direct = f"http://127.0.0.1:{running_stack.settings.management_port}/api/v1/qr"
    assert _statuses(direct, _title_body(3_000_000), "application/json") == ["413 payload_too_large"] * TRIES


def test_ten_thousand_codes_in_one_request_through_the_edge(running_stack: RunningStack) -> None:
    rows = "".join(f"https://example.org/tent/{n},Table {n},tent-e2e\n" for n in range(10_000))
    body = ("target_url,title,tags\n" + rows).encode()
    with httpx.Client(base_url=running_stack.edge, timeout=120) as client:
        headers = {"content-type": "text/csv", "Idempotency-Key": "tents-e2e"}
        first = client.post("/api/v1/qr/bulk", content=body, headers=headers)
        assert first.status_code == 201, first.text[:500]
        created = first.json()["created"]
        assert len(created) == 10_000
        assert [c["title"] for c in created[:3]] == ["Table 0", "Table 1", "Table 2"]
        again = client.post("/api/v1/qr/bulk", content=body, headers=headers)
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert json.loads(again.content) == first.json()
        listed = client.get("/api/v1/qr", params={"tag": "tent-e2e", "limit": 500}).json()
        assert len(listed["items"]) == 500
        assert listed["next_cursor"]
        exported = client.get("/api/v1/qr/export.csv", params={"tag": "tent-e2e"})
        assert exported.status_code == 200
        assert exported.text.count("\n") == 10_001  # the header and every code, once
        # Every code redirects at once: one notification flushed what the redirect cache held.
        sample = created[4321]
        scan = client.get(f"/r/{sample['id']}")
        assert scan.status_code == 302
        assert scan.headers["location"] == "https://example.org/tent/4321"


def _management_requests(running_stack: RunningStack, method: str) -> float:
    """How many requests of ``method`` the management service has answered (its own metrics)."""
    import re

    text = httpx.get(f"http://127.0.0.1:{running_stack.settings.management_port}/metrics", timeout=10).text
    pattern = rf'^qr_http_requests_total\{{[^}}]*method="{method}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.M))


def _raw_request(port: int, method: str, body: bytes) -> bytes:
    """One request with the method's case as given (HTTP clients upper-case it), the body sent while
    the answer is read: the edge answers and closes before the whole body arrives. What was read
    before the connection was reset, if it was."""
    import contextlib
    import socket
    import threading

    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        head = (
            f"{method} /api/v1/qr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )

        def send() -> None:
            with contextlib.suppress(OSError):  # refused half-way, as it should be
                connection.sendall(head.encode() + body)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        sender.join(timeout=30)
    return answer


@pytest.mark.parametrize("method", ["post", "Post", "pOST", "put"])
def test_a_method_in_any_case_is_held_at_the_edge_too(running_stack: RunningStack, method: str) -> None:
    """Traefik matches methods exactly and the service upper-cases them: `post` is a POST to the
    service, so the edge reads every body whatever the method's case, and refuses one past its
    limit before the service sees a byte of it."""
    body = _title_body(2_000_000)
    port = int(running_stack.edge.rsplit(":", 1)[1])
    before = _management_requests(running_stack, method.upper())
    answers = [answer for answer in (_raw_request(port, method, body) for _ in range(5)) if answer]
    assert answers, "no answer was read before the edge closed"
    for answer in answers:
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"413", answer[:300]
        assert b'"payload_too_large"' in rest
    assert _management_requests(running_stack, method.upper()) == before  # never reached the service
