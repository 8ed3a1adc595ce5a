"""In a real browser through the real edge: a page of another site cannot make the administrator's
browser read the admin API (images, exports), while the console's own pages still show them."""

from __future__ import annotations

import http.server
import re
import threading
from typing import Any

import httpx
import pytest

from tests.console.test_browser import browser  # noqa: F401 - the module's browser, a fixture
from tests.e2e.conftest import RunningStack
from tests.metrics_checks import parse, value

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOADED = "(img) => img.complete && img.naturalWidth > 0"
# Refused at the door, before routing: counted as unmatched.
ROUTES = {
    "image": "/api/v1/qr/{code_id}/image.png",
    "export": "/api/v1/qr/export.pdf",
    "refused": "__unmatched__",
}


def answered(stack: RunningStack) -> dict[tuple[str, str], float]:
    """How often the management service answered the image and the export, by status."""
    scraped = httpx.get(f"http://127.0.0.1:{stack.settings.management_port}/metrics", timeout=10).text
    samples = parse(scraped)
    return {
        (name, status): value(samples, "qr_http_requests_total", method="GET", route=route, status=status)
        for name, route in ROUTES.items()
        for status in ("200", "403")
    }


@pytest.mark.parametrize(
    "attacker",
    [
        "127.0.0.1",  # another origin of the same site (Sec-Fetch-Site: same-site)
        "localhost",  # another site (cross-site)
    ],
)
def test_another_sites_page_cannot_load_images_or_exports(
    browser: Any,  # noqa: F811 - the fixture imported above
    running_stack: RunningStack,
    attacker: str,
) -> None:
    edge = running_stack.edge
    code = httpx.post(f"{edge}/api/v1/qr", json={"target_url": "https://example.org/"}, timeout=10).json()
    image = f"{edge}/api/v1/qr/{code['id']}/image.png?size=777"
    page_html = f"""<!doctype html><html><body>
<img id="image" src="{image}" alt="">
<img id="export" src="{edge}/api/v1/qr/export.pdf" alt="">
</body></html>""".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page_html)))
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        before = answered(running_stack)
        page.goto(f"http://{attacker}:{server.server_address[1]}/", wait_until="load")
        assert not page.eval_on_selector("#image", LOADED)
        after = answered(running_stack)
        # Both requests reached the service (the browser sent them) and were refused at its door
        # (their 403 bodies then blocked by the browser itself): nothing rendered or exported.
        assert after[("refused", "403")] == before[("refused", "403")] + 2
        assert after[("image", "200")] == before[("image", "200")]
        assert after[("export", "200")] == before[("export", "200")]
        # The console's own page shows the same image (same-origin).
        page.goto(f"{edge}/console/codes/{code['id']}", wait_until="load")
        preview = page.locator("main img").first
        assert re.search(rf"/api/v1/qr/{code['id']}/image\.", preview.get_attribute("src") or "")
        assert preview.evaluate(LOADED)
    finally:
        context.close()
        server.shutdown()
        server.server_close()
