"""The console in a real browser: Debian's Chromium driven by Playwright, through the real edge
(Traefik) in front of both services and PostgreSQL, as an administrator would use it.

Every page is watched for content-security-policy violations (the test fails on any) and for
dialogs (a hostile title that ran would open one); axe-core, injected by the tests only, checks
each page in light and dark schemes at phone and desktop widths.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image

from tests.console.screenshots import fill, photograph
from tests.e2e.conftest import RunningStack

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "chromium not installed (apt-get install chromium): the browser tests", allow_module_level=True
    )

from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AXE = Path(__file__).with_name("vendor") / "axe-4.14.1.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""
PERSON = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses root
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            launched.close()


class Watched:
    """A page whose CSP violations, console errors and dialogs are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.add_init_script(WATCH_CSP)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on(
            "dialog", lambda dialog: (self.problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
        )

    def _console(self, message: ConsoleMessage) -> None:
        # Not "Failed to load resource": a form shown again with its errors is a 422 document.
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.problems.append(f"console: {message.text}")

    def check(self) -> None:
        violations = self.page.evaluate("window.__cspViolations || []")
        assert not violations, violations
        assert not self.problems, self.problems


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    try:
        watched = Watched(context.new_page())
        yield watched
        watched.check()
    finally:
        context.close()


def create_through_the_form(page: Page, edge: str, **fields: str) -> str:
    page.goto(f"{edge}/console/new")
    page.get_by_label("Destination URL").fill(fields.get("target_url", "https://example.org/poster"))
    page.get_by_label("Title").fill(fields.get("title", "Spring poster"))
    page.get_by_label("Tags").fill(fields.get("tags", "print"))
    page.get_by_role("button", name="Create the code", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("The code was created.")
    found = re.search(r"/console/codes/([A-Za-z0-9_-]+)", page.url)
    assert found, page.url
    return found[1]


def test_create_preview_download_edit_scan(
    watched: Watched, running_stack: RunningStack, tmp_path: Path
) -> None:
    page, edge = watched.page, running_stack.edge
    code = create_through_the_form(page, edge, target_url="https://example.org/before")
    short_url = page.locator("#short-url").input_value()
    assert short_url.endswith(f"/r/{code}")

    # The preview follows the colour (htmx asks for it again; no page load).
    image = page.locator("#preview img")
    first = image.get_attribute("src")
    page.locator("#f-fg").fill("#1a237e")
    expect(image).to_have_attribute("src", re.compile("fg=%231a237e"))
    assert image.get_attribute("src") != first
    expect(page.locator("#verdict")).to_contain_text("scans reliably")
    page.locator("#f-fg").fill("#dddddd")  # too light on white: the verdict says so first
    expect(page.locator("#verdict")).to_contain_text("will not be drawn")
    expect(page.locator("#preview img")).to_have_count(0)
    page.locator("#f-fg").fill("#1a237e")
    expect(page.locator("#preview img")).to_have_count(1)

    # The PNG download decodes to the short URL.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PNG").click()
    saved = tmp_path / "code.png"
    download.value.save_as(saved)
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(saved))] == [short_url]

    # A new destination, and the history beside it.
    page.get_by_label("Destination URL").fill("https://example.org/after")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").first).to_contain_text("The changes were saved.")
    history = page.locator("table.history")
    expect(history).to_contain_text("https://example.org/before")
    expect(history).to_contain_text("https://example.org/after")

    # A scan through the edge moves the count on the scans page.
    scan = httpx.get(f"{edge}/r/{code}", headers={"User-Agent": PERSON}, follow_redirects=False, timeout=10)
    assert scan.status_code == 302
    assert scan.headers["location"] == "https://example.org/after"
    page.get_by_role("link", name=re.compile(r"^Scans \(")).click()
    deadline = time.monotonic() + 15
    while page.locator("#total-scans").inner_text() != "1":
        assert time.monotonic() < deadline, "the scan never showed"
        time.sleep(0.3)
        page.reload()
    expect(page.locator("#total-people")).to_have_text("1")
    expect(page.locator("#chart canvas")).to_have_count(1)  # uPlot drew the series


def test_a_csv_of_fifty_rows_with_one_bad_row(
    watched: Watched, running_stack: RunningStack, tmp_path: Path
) -> None:
    page = watched.page
    lines = ["target_url,title,tags"] + [
        f"https://example.org/table/{n},Table {n},tables" for n in range(1, 51)
    ]
    lines[37] = "ftp://example.org/37,Table 37,tables"
    upload = tmp_path / "tables.csv"
    upload.write_text("\n".join(lines) + "\n")
    page.goto(f"{running_stack.edge}/console/new")
    page.get_by_label("CSV file", exact=True).set_input_files(upload)
    page.get_by_role("button", name="Create the codes", exact=True).click()
    expect(page.locator("#e-csv")).to_contain_text("nothing was created")
    bad = page.locator("tr.bad")
    expect(bad).to_have_count(1)
    expect(bad).to_have_id("row-37")
    expect(bad).to_contain_text("must be an absolute http or https URL")
    expect(bad.locator("th")).to_have_text("38")  # the file's line, its header line 1
    expect(page.locator("table.rows tbody tr")).to_have_count(1)  # the bad rows alone
    expect(page.locator("table.rows caption")).to_contain_text("the other 49 rows are fine")
    # The table has the page's width (its words whole), not a column's.
    table_width = page.locator("table.rows").bounding_box()
    main_width = page.locator("main").bounding_box()
    assert table_width and main_width and table_width["width"] > main_width["width"] * 0.8
    # Fixed, the same file makes fifty codes.
    lines[37] = "https://example.org/table/37,Table 37,tables"
    upload.write_text("\n".join(lines) + "\n")
    page.get_by_label("CSV file", exact=True).set_input_files(upload)
    page.get_by_role("button", name="Create the codes", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("50 codes created")


def test_a_hostile_title_is_text_on_every_page(watched: Watched, running_stack: RunningStack) -> None:
    page, edge = watched.page, running_stack.edge
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    code = create_through_the_form(page, edge, title=hostile)
    for path in (
        f"/console/codes/{code}",
        f"/console/?q={code}",
        f"/console/codes/{code}/scans",
        f"/console/codes/{code}/delete",
    ):
        page.goto(f"{edge}{path}")
        expect(page.locator("main")).to_contain_text(hostile)
        assert page.locator("main img[src='x']").count() == 0
    # watched.check() at the end fails on any dialog the title could have opened


@pytest.mark.parametrize(
    "attacker",
    [
        "127.0.0.1",  # same site, another origin: the session cookie goes along; Origin refuses it
        "localhost",  # another site: SameSite=Strict keeps the cookie home
    ],
)
def test_a_form_from_another_origin_is_refused(
    browser: Browser, running_stack: RunningStack, attacker: str
) -> None:
    """A page elsewhere that posts a form to the console as soon as it opens."""
    edge = running_stack.edge
    attack = f"""<!doctype html><html><body>
<form id="f" method="post" action="{edge}/console/new">
<input name="csrf" value="guessed"><input name="target_url" value="https://evil.example/">
</form><script>document.getElementById("f").submit();</script></body></html>""".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(attack)))
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{edge}/console/")  # the administrator has a session
        before = httpx.get(f"{edge}/api/v1/qr?q=evil.example", timeout=10).json()["items"]
        with page.expect_navigation(url=re.compile(r"/console/new$")):
            page.goto(f"http://{attacker}:{server.server_address[1]}/")
        expect(page.locator("main")).to_contain_text("This form was refused")
        after = httpx.get(f"{edge}/api/v1/qr?q=evil.example", timeout=10).json()["items"]
        assert after == before == []
    finally:
        context.close()
        server.shutdown()
        server.server_close()


def axe_findings(page: Page) -> list[str]:
    page.evaluate(AXE.read_text())  # through the debugger, so the page's CSP does not apply to it
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ["violations"]});
          return r.violations.filter(v => v.impact === "serious" || v.impact === "critical")
                             .map(v => v.id + ": " + v.nodes.map(n => n.target.join(" ")).join(", "));
        }"""
    )
    return list(result)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_no_serious_accessibility_violation_on_any_page(
    browser: Browser, running_stack: RunningStack, scheme: str, viewport: dict[str, int]
) -> None:
    edge = running_stack.edge
    with httpx.Client(base_url=edge, timeout=10) as admin:
        code = admin.post(
            "/api/v1/qr", json={"target_url": "https://example.org/axe", "title": "Axe", "tags": ["a"]}
        ).json()["id"]
    context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
    try:
        watched = Watched(context.new_page())
        page = watched.page
        found = {}
        for path in (
            "/console/",
            "/console/new",
            f"/console/codes/{code}",
            f"/console/codes/{code}/scans",
            f"/console/codes/{code}/delete",
            "/console/scans",
            "/console/codes/no-such-code",
        ):
            page.goto(f"{edge}{path}")
            if findings := axe_findings(page):
                found[path] = findings
        # A form with its errors shown, too.
        page.goto(f"{edge}/console/new")
        page.get_by_label("Destination URL").fill("javascript:alert(1)")
        page.get_by_role("button", name="Create the code", exact=True).click()
        expect(page.locator("#e-target_url")).to_be_visible()
        if findings := axe_findings(page):
            found["/console/new (errors)"] = findings
        assert not found, found
        watched.check()
    finally:
        context.close()


def test_the_pages_work_without_javascript(browser: Browser, running_stack: RunningStack) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        code = create_through_the_form(page, running_stack.edge, title="No script")
        page.get_by_label("Modules", exact=True).fill("#004d40")
        page.get_by_role("button", name="Show the preview").click()
        expect(page.locator("#preview img")).to_have_attribute("src", re.compile("fg=%23004d40"))
        page.get_by_label("Destination URL").fill("https://example.org/without-js")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("table.history")).to_contain_text("https://example.org/without-js")
        page.get_by_role("link", name="Delete…").click()
        page.get_by_role("button", name="Delete the code").click()
        expect(page.get_by_role("status").first).to_contain_text("The code was deleted.")
        assert httpx.get(f"{running_stack.edge}/api/v1/qr/{code}", timeout=10).status_code == 404
    finally:
        context.close()


def test_the_screenshots_of_every_page(browser: Browser, running_stack: RunningStack, tmp_path: Path) -> None:
    """What ``make screenshots`` takes for the README, here into a temporary folder."""
    code = fill(running_stack.edge)
    taken = photograph(browser, running_stack.edge, code, tmp_path)
    assert sorted(path.name for path in taken) == [
        "code-dark.png",
        "code.png",
        "codes.png",
        "new.png",
        "scans.png",
    ]
    for path in taken:
        with Image.open(path) as shot:
            assert shot.width == 1280
            assert shot.height >= 600
