"""Through the edge, as a user would: create a code, scan its image, follow it."""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
import zxingcpp
from PIL import Image

from tests.e2e.conftest import RunningStack

pytestmark = pytest.mark.e2e


@pytest.fixture
def admin(running_stack: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_stack.edge, timeout=10) as client:
        yield client


def outsider(base_url: str) -> httpx.Client:
    """A client connecting from 127.0.0.2, which the default allowlist leaves out."""
    return httpx.Client(
        base_url=base_url, timeout=10, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )


def test_create_render_decode_and_follow(admin: httpx.Client, running_stack: RunningStack) -> None:
    created = admin.post("/api/v1/qr", json={"target_url": "https://example.org/menu", "title": "Menu"})
    assert created.status_code == 201, created.text
    code = created.json()
    assert code["short_url"] == f"{running_stack.settings.public_base_url}/r/{code['id']}"

    image = admin.get(f"/api/v1/qr/{code['id']}/image.png")
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert "content-encoding" not in image.headers  # PNGs are not compressed again
    decoded = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(image.content)))]
    assert decoded == [code["short_url"]]

    # The decoded URL itself, as a phone would open it (localhost reaches the edge).
    scanned = httpx.get(decoded[0], follow_redirects=False, timeout=10)
    assert scanned.status_code == 302
    assert scanned.headers["location"] == "https://example.org/menu"
    assert scanned.headers["cache-control"] == "no-store"
    assert scanned.headers["x-content-type-options"] == "nosniff"  # the public chain's headers


def test_admin_is_refused_outside_the_allowlist_while_redirects_work(
    admin: httpx.Client, running_stack: RunningStack
) -> None:
    code = admin.post("/api/v1/qr", json={"target_url": "https://example.org/x"}).json()
    with outsider(running_stack.edge) as client:
        assert client.get(f"/api/v1/qr/{code['id']}").status_code == 403
        assert client.post("/api/v1/qr", json={"target_url": "https://example.org/"}).status_code == 403
        # A forged forwarding header does not make the edge believe another address.
        for header in ("X-Forwarded-For", "X-Real-Ip", "Forwarded"):
            value = "for=127.0.0.1" if header == "Forwarded" else "127.0.0.1"
            assert client.get("/api/v1/qr/x", headers={header: value}).status_code == 403
        # Path tricks land on the admin chain, never around it.
        assert client.get("/r/../api/v1/qr/" + code["id"]).status_code == 403
        redirect = client.get(f"/r/{code['id']}")
        assert redirect.status_code == 302
        assert redirect.headers["location"] == "https://example.org/x"
        assert client.get("/r/not-a-real-code").status_code == 404  # judged by the redirect service
        assert client.get("/health").status_code == 200


def test_bad_input_gets_json_errors_through_the_edge(admin: httpx.Client) -> None:
    response = admin.post("/api/v1/qr", json={"target_url": "javascript:alert(1)"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["details"] == {"field": "target_url"}
    response = admin.get("/api/v1/qr/unknown123")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert admin.get("/r/unknown123").status_code == 404


def test_https_serves_the_same_with_hsts(admin: httpx.Client, running_stack: RunningStack) -> None:
    code = admin.post("/api/v1/qr", json={"target_url": "https://example.org/tls"}).json()
    with httpx.Client(
        base_url=running_stack.edge_tls,
        verify=ssl.create_default_context(cafile=running_stack.certificate),
        timeout=10,
    ) as tls:
        response = tls.get(f"/r/{code['id']}")
        assert response.status_code == 302
        assert response.headers["location"] == "https://example.org/tls"
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert tls.get(f"/api/v1/qr/{code['id']}").json()["id"] == code["id"]


def test_changes_through_the_api_reach_the_redirect_at_once(
    admin: httpx.Client, running_stack: RunningStack
) -> None:
    code = admin.post("/api/v1/qr", json={"target_url": "https://example.org/before"}).json()
    path = f"/r/{code['id']}"
    assert admin.get(path).headers["location"] == "https://example.org/before"  # now cached

    def answer_within_a_second(status: int, location: str | None = None) -> None:
        deadline = time.monotonic() + 1.0
        while True:
            response = admin.get(path)
            if response.status_code == status and response.headers.get("location") == location:
                return
            assert time.monotonic() < deadline, (
                f"still {response.status_code} {response.headers.get('location')}"
            )
            time.sleep(0.02)

    assert (
        admin.patch(f"/api/v1/qr/{code['id']}", json={"target_url": "https://example.org/after"}).status_code
        == 200
    )
    answer_within_a_second(302, "https://example.org/after")
    assert admin.patch(f"/api/v1/qr/{code['id']}", json={"enabled": False}).status_code == 200
    answer_within_a_second(410)
    assert admin.delete(f"/api/v1/qr/{code['id']}").status_code == 204
    answer_within_a_second(404)


def test_international_names_and_case_through_the_edge(
    admin: httpx.Client, running_stack: RunningStack
) -> None:
    created = admin.post("/api/v1/qr", json={"target_url": "https://faß.de/x", "slug": "Speisekarte"})
    assert created.status_code == 201, created.text
    assert created.json()["target_url"] == "https://xn--fa-hia.de/x"
    for spelling in ("Speisekarte", "speisekarte"):  # printed, and typed from the poster
        scanned = httpx.get(f"{running_stack.edge}/r/{spelling}", timeout=10)
        assert scanned.status_code == 302
        assert scanned.headers["location"] == "https://xn--fa-hia.de/x"  # the browser's faß.de, not fass.de
    taken = admin.post("/api/v1/qr", json={"target_url": "https://example.org/", "slug": "SPEISEKARTE"})
    assert taken.status_code == 409
    # Every name a browser sends to this machine is this service: a loop is refused.
    port = running_stack.settings.http_port
    for loop in (f"http://menu.localhost:{port}/r/abc", f"http://127.1:{port}/r/abc"):
        refused = admin.post("/api/v1/qr", json={"target_url": loop})
        assert refused.status_code == 422, loop
        assert refused.json()["error"]["details"] == {"field": "target_url"}
