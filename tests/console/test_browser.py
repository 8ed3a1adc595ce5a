"""The console in a real browser: Debian's Chromium driven by Playwright, through the real edge
(Traefik) in front of both services and PostgreSQL, as an administrator would use it.

Every page is watched for content-security-policy violations (the test fails on any) and for
dialogs (a hostile title that ran would open one); axe-core, injected by the tests only, checks
each page in light and dark schemes at phone and desktop widths.
"""

from __future__ import annotations

import http.server
import io
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
    page.locator("#f-title").fill(fields.get("title", "Spring poster"))  # (contacts, events: titles too)
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
    page.get_by_role("button", name="Save", exact=True).click()
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
    assert table_width
    assert main_width
    assert table_width["width"] > main_width["width"] * 0.8
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


def api_code(edge: str, **fields: Any) -> dict[str, Any]:
    with httpx.Client(base_url=edge, timeout=10) as admin:
        made = admin.post("/api/v1/qr", json={"target_url": "https://example.org/made", **fields})
        assert made.status_code == 201, made.text
        return dict(made.json())


def test_what_a_code_page_says_is_what_the_service_does(
    watched: Watched, running_stack: RunningStack
) -> None:
    """A code's state, said alike by the API, the list, the code page and /r/; switching off asks
    first; a save that stops a code says so; the history reads as the form; a logo's H shown; a
    deleted code's scans stay readable."""
    page, edge = watched.page, running_stack.edge
    past = api_code(edge, title="Last year's fair", tags=["state"], expires_at="2025-01-01T00:00:00Z")
    assert past["state"] == "expired"
    assert httpx.get(f"{edge}/r/{past['id']}", timeout=10).status_code == 410
    page.goto(f"{edge}/console/codes/{past['id']}")
    expect(page.locator("#state")).to_contain_text("Expired since 2025-01-01 00:00 UTC: it answers 410")
    expect(page.locator("#state")).not_to_contain_text("Switched on")
    page.goto(f"{edge}/console/?tag=state")
    expect(page.locator("table.codes tbody tr").first).to_contain_text("Expired")

    # A new code that would not redirect says so at once.
    page.goto(f"{edge}/console/new")
    page.get_by_label("Destination URL").fill("https://example.org/born-old")
    page.get_by_label("Expires (UTC)").fill("2025-03-01T09:30")
    page.get_by_role("button", name="Create the code", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("it does not redirect yet")
    expect(page.locator("#state")).to_contain_text("Expired since 2025-03-01 09:30 UTC")

    # A save that makes a working code stop says so.
    live = api_code(edge, title="Poster", target_url="https://example.org/poster")
    assert live["state"] == "on"
    page.goto(f"{edge}/console/codes/{live['id']}")
    page.get_by_label("Expires (UTC)").fill("2025-06-01T12:00")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("no longer redirects")
    expect(page.locator("#state")).to_contain_text("Expired")
    history = page.locator("table.history")
    expect(history).to_contain_text("Expires (UTC): — → 2025-06-01 12:00 UTC")
    expect(history).not_to_contain_text("expires_at")
    by = page.locator("table.history td.by").first
    assert by.evaluate("cell => getComputedStyle(cell).whiteSpace") == "nowrap"

    # Switching off asks first.
    on = api_code(edge, title="Menu")
    page.goto(f"{edge}/console/codes/{on['id']}")
    page.get_by_role("link", name="Switch off…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Switch off")
    assert httpx.get(f"{edge}/api/v1/qr/{on['id']}", timeout=10).json()["state"] == "on"
    page.get_by_role("button", name="Switch the code off").click()
    expect(page.locator("#state")).to_contain_text("Switched off: it answers 410")
    assert httpx.get(f"{edge}/api/v1/qr/{on['id']}", timeout=10).json()["state"] == "off"

    # With a logo the menu shows the H every image then uses.
    logo = io.BytesIO()
    Image.new("RGB", (64, 64), "#0b57d0").save(logo, "PNG")
    put = httpx.put(
        f"{edge}/api/v1/qr/{on['id']}/logo", content=logo.getvalue(), headers={"content-type": "image/png"}
    )
    assert put.status_code in (200, 204), put.text
    page.goto(f"{edge}/console/codes/{on['id']}?ecc=M")
    expect(page.locator("#f-ecc")).to_have_value("H")
    expect(page.locator("table.history")).to_contain_text("Logo: — → a logo")

    # A deleted code's scans page works, as its delete page promised.
    assert httpx.delete(f"{edge}/api/v1/qr/{on['id']}", timeout=10).status_code == 204
    page.goto(f"{edge}/console/codes/{on['id']}/scans")
    expect(page.locator("#state")).to_contain_text("Deleted")
    expect(page.locator("#total-scans")).to_have_text("0")


def test_the_preview_shows_what_the_server_refuses(watched: Watched, running_stack: RunningStack) -> None:
    page, edge = watched.page, running_stack.edge
    code = api_code(edge, title="Preview")
    page.goto(f"{edge}/console/codes/{code['id']}")
    expect(page.locator("#preview img")).to_have_count(1)
    # The label sheet says what it draws (the saved design, not these options), beside its link.
    expect(page.locator("#pdf-black")).to_contain_text("saved design")
    for name, value in (("size", "5000"), ("border", "20"), ("size_mm", "25.55")):
        page.locator(f"#f-{name}").fill(value)
        if name == "size_mm":
            # Two decimals are a width the server takes: the preview follows it.
            expect(page.locator("#preview img")).to_have_attribute("src", re.compile("size_mm=25.55"))
            continue
        expect(page.locator(f"#e-{name}")).to_be_visible()  # the server's words, beside the field
        expect(page.locator(f"#f-{name}")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#preview img")).to_have_count(0)  # never a stale preview
        expect(page.get_by_role("link", name="Download PNG")).to_have_count(0)
        page.locator(f"#f-{name}").fill("4" if name == "border" else "400")
        expect(page.locator(f"#e-{name}")).to_have_count(0)
        expect(page.locator("#preview img")).to_have_count(1)
    # A contrast failure is said once, in words, never naming an internal field.
    page.locator("#f-fg").fill("#dddddd")
    expect(page.locator("#verdict")).to_contain_text("will not be drawn")
    expect(page.locator("#preview")).not_to_contain_text("fg")
    assert page.locator("#preview").inner_text().count("contrast") <= 1


def test_forms_focus_their_summary_and_explain_what_to_type(
    watched: Watched, running_stack: RunningStack, tmp_path: Path
) -> None:
    page, edge = watched.page, running_stack.edge
    page.goto(f"{edge}/console/new")
    page.get_by_label("Destination URL").fill("example.com/menu")
    page.get_by_label("Tags").fill("print|menu")
    page.get_by_role("button", name="Create the code", exact=True).click()
    expect(page.locator("#e-target_url")).to_contain_text("did you mean https://example.com/menu?")
    expect(page.locator("#e-tags")).to_contain_text("must not contain |")
    assert page.evaluate("document.activeElement.id") == "error-summary"
    page.get_by_label("Destination URL").fill("https://example.com/our menu")
    page.get_by_label("Tags").fill("print, menu")
    page.get_by_role("button", name="Create the code", exact=True).click()
    expect(page.locator("#e-target_url")).to_contain_text("must not contain spaces")
    expect(page.locator("#e-tags")).to_have_count(0)
    # A file whose separator is not the comma gets its error, and no row called fine.
    upload = tmp_path / "semicolons.csv"
    upload.write_text("target_url;title\nhttps://example.org/a;A\n")
    page.get_by_label("CSV file", exact=True).set_input_files(upload)
    page.get_by_role("button", name="Create the codes", exact=True).click()
    expect(page.locator("#e-csv")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "e-csv"
    expect(page.locator("table.rows")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("fine")


def test_the_list_selects_exports_and_prints(
    watched: Watched, running_stack: RunningStack, tmp_path: Path
) -> None:
    page, edge = watched.page, running_stack.edge
    for n in (1, 2, 3):
        api_code(edge, title=f"Table {n}", tags=["print-run"])
    page.goto(f"{edge}/console/?tag=print-run")
    # Exporting with nothing selected says what to do, on the list.
    page.get_by_role("button", name="PDF label sheet").click()
    expect(page.locator("#error-summary")).to_contain_text("select codes first")
    assert page.evaluate("document.activeElement.id") == "error-summary"
    expect(page.locator("#f-tag")).to_have_value("print-run")  # the list as it was
    page.get_by_label("Select every code on this page").check()
    boxes = page.locator("table.codes tbody input[name='id']")
    expect(boxes).to_have_count(3)
    assert all(box.is_checked() for box in boxes.all())
    # Every code with a tag, as the API's export.
    page.get_by_label("Which codes").select_option("print-run")
    with page.expect_download() as download:
        page.get_by_role("button", name="PDF label sheet").click()
    assert download.value.url.endswith("/api/v1/qr/export.pdf?tag=print-run")
    # A copy button and a QR per row.
    row = page.locator("table.codes tbody tr").first
    expect(row.get_by_role("button", name=re.compile("^Copy URL of"))).to_be_visible()
    row.locator("summary").click()
    expect(row.locator("details.qr-pop img")).to_be_visible()
    # After a bulk upload, the new codes print from their page.
    upload = tmp_path / "two.csv"
    upload.write_text("target_url,title\nhttps://example.org/b1,B1\nhttps://example.org/b2,B2\n")
    page.goto(f"{edge}/console/new")
    page.get_by_label("CSV file", exact=True).set_input_files(upload)
    page.get_by_role("button", name="Create the codes", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("2 codes created")
    link = page.get_by_role("link", name="Print these: PDF label sheet")
    assert re.search(r"/api/v1/qr/export\.pdf\?ids=[\w-]+%2C[\w-]+$", link.get_attribute("href") or "")
    with page.expect_download() as sheet:
        link.click()
    assert sheet.value.path().read_bytes().startswith(b"%PDF")


def test_the_scans_page_keeps_and_says_what_was_asked(watched: Watched, running_stack: RunningStack) -> None:
    page, edge = watched.page, running_stack.edge
    code = api_code(edge, title="Scanned", tags=["scanned"])
    assert httpx.get(f"{edge}/r/{code['id']}", headers={"User-Agent": PERSON}, timeout=10).status_code == 302
    # Refused: 422, and the fields keep what was asked.
    answer = page.goto(f"{edge}/console/codes/{code['id']}/scans?from=2026-10-01&to=2026-11-02&interval=hour")
    assert answer is not None
    assert answer.status == 422
    expect(page.locator("#f-interval")).to_have_value("hour")
    expect(page.locator("#f-from")).to_have_value("2026-10-01")
    expect(page.locator("#f-to")).to_have_value("2026-11-02")
    expect(page.locator("#e-interval")).to_contain_text("hour covers at most")
    expect(page.locator("#error-summary")).to_contain_text("Shown instead: the last 30 days")
    answer = page.goto(f"{edge}/console/codes/{code['id']}/scans?tz=Mars/Olympus&interval=week")
    assert answer is not None
    assert answer.status == 422
    expect(page.locator("#f-tz")).to_have_value("Mars/Olympus")
    expect(page.locator("#f-interval")).to_have_value("week")
    # Empty fields say the range shown; times are in the zone chosen, in one format.
    page.goto(f"{edge}/console/codes/{code['id']}/scans?tz=Europe/Berlin")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", page.locator("#f-from").input_value())
    expect(page.locator("#range")).to_contain_text("Europe/Berlin")
    deadline = time.monotonic() + 15
    while not page.locator("#last-scan").inner_text().endswith("Europe/Berlin"):
        assert time.monotonic() < deadline, page.locator("#last-scan").inner_text()
        time.sleep(0.3)
        page.reload()
    expect(page.locator("#chart canvas")).to_have_count(1)
    page.locator("#chart .u-over").hover()  # the legend then names the bucket under the pointer
    bucket = page.locator("#chart .u-legend .u-series").first.locator(".u-value").inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", bucket), bucket
    # Presets, and a view of people alone.
    page.get_by_role("link", name="Last 7 days").click()
    expect(page.locator("#range")).to_contain_text("per day")
    page.get_by_label("People only (no bots)").check()
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#range")).to_contain_text("people only")
    expect(page.locator(".totals")).not_to_contain_text("Bots")
    # Every code's page breaks the scans down by tag.
    page.goto(f"{edge}/console/scans")
    expect(page.locator("table.by-tag")).to_contain_text("scanned")


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
            "/api/v1/qr",
            json={
                "target_url": "https://example.org/a/rather/long/path/that/a/phone/must/wrap?and=a&query=too",
                "title": "Axe",
                "tags": ["a"],
            },
        ).json()["id"]
    context = browser.new_context(viewport=viewport, color_scheme=scheme)  # type: ignore[arg-type]
    try:
        watched = Watched(context.new_page())
        page = watched.page
        found = {}
        wide = {}
        for path in (
            "/console/",
            "/console/new",
            f"/console/codes/{code}",
            f"/console/codes/{code}/scans",
            f"/console/codes/{code}/delete",
            f"/console/codes/{code}/switch-off",
            f"/console/codes/{code}?size=5000",
            f"/console/codes/{code}/scans?tz=Nowhere/Else",
            "/console/scans",
            "/console/?export=none",
            "/console/codes/no-such-code",
        ):
            page.goto(f"{edge}{path}")
            if findings := axe_findings(page):
                found[path] = findings
            # Nothing scrolls sideways, on a phone either.
            if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
                wide[path] = page.evaluate("document.documentElement.scrollWidth")
        assert not wide, wide
        if viewport == PHONE:  # the codes as cards, each under the other
            page.goto(f"{edge}/console/")
            assert (
                page.locator("table.codes tbody tr").first.evaluate("row => getComputedStyle(row).display")
                == "block"
            )
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
        page.get_by_role("button", name="Save", exact=True).click()
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
        "code-phone.png",
        "code.png",
        "codes-phone.png",
        "codes.png",
        "design.png",
        "new.png",
        "scans.png",
    ]
    for path in taken:
        with Image.open(path) as shot:
            if path.name.endswith("-phone.png"):
                assert shot.width == 390
            elif path.name != "design.png":
                assert shot.width == 1280
            assert shot.height >= 300
